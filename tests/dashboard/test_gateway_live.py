"""The dashboard as `butler serve` mounts it: on the gateway's app and token check, in front of the loopback fake
provider. A call through the gateway shows up on an open page without a reload, and nothing the dashboard
serves carries the gateway's provider keys or the access token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from butler_skill.gateway.app import authenticate_request, create_app
from butler_skill.gateway.dashboard import dashboard_routes
from butler_skill.gateway.server import BackgroundServer
from butler_skill.gateway.tokens import create_token
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import write_keys
from tests.dashboard.seed import ok
from tests.gateway.conftest import ALL_SECRETS, gateway_keys
from tests.servers.fake_llm import FakeLLM, start_fake_llm


class Served:
    def __init__(self, tmp_path: Path, fake: FakeLLM) -> None:
        write_keys(tmp_path / "keys.json", gateway_keys(fake))
        self.ctx = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json",
                           state_path=tmp_path / "s.db")
        _, self.token = create_token(self.ctx, "dashboard test")
        app = create_app(self.ctx, extra_routes=dashboard_routes(lambda: self.ctx, authenticate_request))
        self.server = BackgroundServer(app)
        self.url = self.server.url

    def chat(self, max_tokens: int = 100) -> httpx.Response:
        return httpx.post(self.url + "/v1/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {self.token}"},
                          json={"model": "gpt-test", "max_tokens": max_tokens,
                                "messages": [{"role": "user", "content": "Say hello."}]})


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Served]:
    with start_fake_llm() as fake:
        served = Served(tmp_path, fake)
        try:
            yield served
        finally:
            served.server.close()
            served.ctx.close()


def test_the_dashboard_follows_calls_through_the_gateway(gateway: Served, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{gateway.url}/dashboard?token={gateway.token}")
    page.wait_for_selector("#live:not(.off)")
    assert page.get_attribute("[data-card=used_today] [data-field=used_today]", "data-value") == "0"
    for n in range(3):
        assert gateway.chat().status_code == 200, n
        usage = ok(call_tool("monitor_usage", {}, gateway.ctx))
        assert usage["total"]["used_today"] > 0
        page.wait_for_function(
            "want => document.querySelector('[data-card=used_today] [data-field=used_today]').dataset.value == want",
            arg=str(usage["total"]["used_today"]), timeout=15_000)
    for provider, figures in usage["keys_by_provider"].items():
        card = f"[data-provider={provider}]"
        assert int(page.get_attribute(f"{card} [data-field=used_today]", "data-value")) == figures["used_today"]
        assert float(page.get_attribute(f"{card} [data-field=cost_today]", "data-value")) == figures["cost_today"]
    page.wait_for_selector("#chart rect.seg-bar")
    assert errors == []
    page.close()


def test_gateway_tokens_guard_the_dashboard_and_nothing_leaks(gateway: Served) -> None:
    assert gateway.chat().status_code == 200
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        assert client.get("/dashboard/api/snapshot").status_code == 401
        assert client.get("/dashboard", params={"token": "bt_not-a-token"}).status_code == 401
        assert client.get("/dashboard", params={"token": gateway.token}, follow_redirects=False).status_code == 303
        bodies = [client.get(p).text for p in ("/dashboard", "/dashboard/api/snapshot", "/dashboard/api/history",
                                               "/dashboard/api/history.csv", "/dashboard/api/spend.csv")]
    assert "oa-1" in bodies[1] or "oa-2" in bodies[1]
    for body in bodies:
        assert not any(secret in body or secret[10:30] in body for secret in ALL_SECRETS)
        assert gateway.token not in body
    # The gateway's own routes still answer beside the dashboard's.
    assert httpx.get(gateway.url + "/healthz", timeout=10).status_code == 200
