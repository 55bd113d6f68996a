"""Treasury fixtures: fake Circle and OpenRouter on loopback, a policy file, a service wired to both."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from butler_skill.store.db import Database
from butler_skill.treasury.service import TreasuryService
from tests.conftest import Clock, Ids
from tests.servers.fake_circle import FakeCircle, start_fake_circle
from tests.servers.fake_openrouter import FakeOpenRouter, start_fake_openrouter

# Realistic shapes, random values: none of them may ever leave Butler.
CIRCLE_API_KEY = "TEST_API_KEY:" + "5b1e0c9a7d3f42e8b6a1c0d9e8f7a6b5" + ":" + "c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9"
ENTITY_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0" + "0a1b2c3d4e5f60718293a4b5c6d7e8f9"  # butler:allow (test fixture)
MANAGEMENT_KEY = "sk-or-v1-" + "7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29" + "1807f6e5d4c3b2a19f8e7d6c5b4a3928"
SECRETS = (CIRCLE_API_KEY, ENTITY_SECRET, MANAGEMENT_KEY)
WALLET_ID = "0b9a1f5e-3c2d-4e6f-8a7b-9c0d1e2f3a4b"
TOKEN_ID = "usdc-token-0001"
OR_DEST = "0x1111111111111111111111111111111111111111"
ACME_DEST = "0x2222222222222222222222222222222222222222"
START = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
# One TLS context for every test client: building one reads the CA bundle (tens of milliseconds). The fakes
# speak plain HTTP on loopback, so it is never used for a handshake; verification stays on.
TLS = ssl.create_default_context()


def http_client(read_timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(5.0, read=read_timeout), verify=TLS)


def policy(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "enabled": True,
        "threshold": "50",
        "amount": "200",
        "caps": {"per_transaction": "250", "daily": "500", "monthly": "1000"},
        "min_wallet_reserve": "100",
        "auto_approve_max": "0",
        "providers": {"openrouter": {"destinations": [OR_DEST]}},
        "circle": {"token_id": TOKEN_ID, "fee_level": "MEDIUM"},
    }
    base.update(overrides)
    return base


def write_policy(folder: Path, data: dict[str, Any], name: str = "treasury-policy.yaml") -> Path:
    path = folder / name
    path.write_text(json.dumps(data, indent=2), "utf-8")  # JSON is YAML too
    return path


def make_env(circle: FakeCircle | None, openrouter: FakeOpenRouter | None, **extra: str) -> dict[str, str]:
    env: dict[str, str] = {"HOME": "/nonexistent"}
    if circle is not None:
        env.update(CIRCLE_API_KEY=CIRCLE_API_KEY, CIRCLE_ENTITY_SECRET=ENTITY_SECRET, CIRCLE_WALLET_ID=WALLET_ID,
                   BUTLER_CIRCLE_BASE_URL=circle.base_url)
    if openrouter is not None:
        env.update(OPENROUTER_MANAGEMENT_KEY=MANAGEMENT_KEY, BUTLER_OPENROUTER_BASE_URL=openrouter.base_url)
    env.update(extra)
    return env


@dataclass
class Harness:
    folder: Path
    circle: FakeCircle
    openrouter: FakeOpenRouter
    clock: Clock
    ids: Ids = field(default_factory=Ids)
    sleeps: list[float] = field(default_factory=list)
    costs: dict[str, Decimal] = field(default_factory=dict)
    _db: Database | None = None
    _clients: list[httpx.Client] = field(default_factory=list)

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.folder / "state.db")
        return self._db

    def env(self, **extra: str) -> dict[str, str]:
        return make_env(self.circle, self.openrouter, **extra)

    def set_policy(self, **overrides: Any) -> None:
        write_policy(self.folder, policy(**overrides))

    def set_credit(self, remaining: Decimal | str) -> None:
        """OpenRouter's account credit left, as /credits will report it."""
        self.openrouter.total_usage = self.openrouter.total_credits - Decimal(str(remaining))

    def service(self, *, read_timeout: float = 5.0, env: dict[str, str] | None = None,
                **options: Any) -> TreasuryService:
        http = http_client(read_timeout)
        self._clients.append(http)
        options.setdefault("poll_attempts", 3)
        options.setdefault("poll_interval", 0.0)
        return TreasuryService.open(self.db, env if env is not None else self.env(), clock=self.clock,
                                    new_id=self.ids, http=http, sleep=self.sleeps.append,
                                    recorded_costs=self.costs, **options)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self._db is not None:
            self._db.close()


@pytest.fixture
def fake_circle() -> Iterator[FakeCircle]:
    server = start_fake_circle(api_key=CIRCLE_API_KEY, entity_secret=ENTITY_SECRET, wallet_id=WALLET_ID,
                               usdc=Decimal("1000"), token_id=TOKEN_ID)
    yield server
    server.close()


@pytest.fixture
def fake_openrouter() -> Iterator[FakeOpenRouter]:
    server = start_fake_openrouter(management_key=MANAGEMENT_KEY, total_credits=Decimal("100"),
                                   total_usage=Decimal("25.5"))
    yield server
    server.close()


@pytest.fixture
def harness(tmp_path: Path, fake_circle: FakeCircle, fake_openrouter: FakeOpenRouter) -> Iterator[Harness]:
    h = Harness(folder=tmp_path, circle=fake_circle, openrouter=fake_openrouter, clock=Clock(START))
    h.set_policy()
    yield h
    h.close()


def ledger_is_balanced(service: TreasuryService) -> bool:
    from butler_skill.core.treasury import EntryDraft, imbalance

    entries = service.store.entries()
    return not imbalance(EntryDraft(account=e.account, currency=e.currency, amount=e.amount) for e in entries)


def transfer_bodies(circle: FakeCircle) -> list[dict[str, Any]]:
    return [r.body for r in circle.transfer_posts()]


Factory = Callable[..., TreasuryService]
