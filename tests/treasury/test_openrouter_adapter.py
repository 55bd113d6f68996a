"""The OpenRouter adapter against a real HTTP server on loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from butler_skill.adapters.openrouter import OpenRouterClient
from butler_skill.errors import ProviderError
from tests.servers.fake_openrouter import FakeOpenRouter
from tests.treasury.conftest import MANAGEMENT_KEY, http_client

API_KEY = "sk-or-v1-" + "0f1e2d3c4b5a69788796a5b4c3d2e1f0" + "a1b2c3d4e5f60718293a4b5c6d7e8f90"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake_openrouter: FakeOpenRouter, sleeps: list[float]) -> Iterator[OpenRouterClient]:
    fake_openrouter.api_keys[API_KEY] = {"label": "sk-or-v1-0f1...f90", "limit": 50, "usage": 12.25,
                                         "limit_reset": "monthly", "usage_daily": 1.5}
    with http_client(0.5) as http:
        yield OpenRouterClient(http, base_url=fake_openrouter.base_url, sleep=sleeps.append)


def test_credits_are_exact(client: OpenRouterClient, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.total_credits, fake_openrouter.total_usage = Decimal("100.1"), Decimal("25.35")
    c = client.credits(MANAGEMENT_KEY)
    assert (c.total_credits, c.total_usage, c.remaining) == (Decimal("100.1"), Decimal("25.35"), Decimal("74.75"))


def test_key_info(client: OpenRouterClient) -> None:
    k = client.key_info(API_KEY)
    assert (k.limit, k.limit_remaining, k.limit_reset) == (Decimal("50"), Decimal("37.75"), "monthly")
    assert k.usage == Decimal("12.25") and k.usage_daily == Decimal("1.5")


def test_credits_need_a_management_key(client: OpenRouterClient) -> None:
    with pytest.raises(ProviderError) as info:
        client.credits(API_KEY)
    assert info.value.details["status"] == 403
    with pytest.raises(ProviderError) as info:
        client.credits("sk-or-v1-" + "0" * 64)
    assert info.value.details["status"] == 401


def test_429_then_answer(client: OpenRouterClient, fake_openrouter: FakeOpenRouter, sleeps: list[float]) -> None:
    fake_openrouter.add_fault("status", status=429, retry_after="3")
    assert client.credits(MANAGEMENT_KEY).remaining == Decimal("74.5")
    assert sleeps == [3.0]


def test_5xx_and_timeouts_retry_then_give_up(client: OpenRouterClient, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.add_fault("delay", seconds=2.0)
    fake_openrouter.add_fault("status", status=502)
    assert client.key_info(API_KEY).limit == Decimal("50")
    for _ in range(3):
        fake_openrouter.add_fault("status", status=500)
    with pytest.raises(ProviderError) as info:
        client.credits(MANAGEMENT_KEY)
    assert info.value.details["status"] == 500


def test_no_key_in_logs(client: OpenRouterClient, fake_openrouter: FakeOpenRouter,
                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_openrouter.add_fault("status", status=500)
    client.credits(MANAGEMENT_KEY)
    with pytest.raises(ProviderError) as info:
        client.credits(API_KEY)
    text = caplog.text + str(info.value) + repr(info.value.details) + repr(client)
    assert MANAGEMENT_KEY not in text and API_KEY not in text
