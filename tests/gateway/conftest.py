"""The gateway under test: a real uvicorn on 127.0.0.1 (random port) in a thread, in front of the loopback
fake provider (tests/servers/fake_llm.py), with its own keys file and ledger."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from butler_skill.gateway.app import create_app
from butler_skill.gateway.server import BackgroundServer
from butler_skill.gateway.service import GatewaySettings
from butler_skill.gateway.tokens import create_token
from butler_skill.host.context import Context
from tests.conftest import write_keys
from tests.servers.fake_llm import FakeLLM, start_fake_llm

OA_SECRET = "sk-proj-" + "Gw4Nx8Qm1Lk7Jh3Gf6Ds9Aw2Ez5Cv0Ty" + "T3BlbkFJ" + "Pp9Oo8Ii7Uu6Yy5Tt4Rr"
OA_SECRET_2 = "sk-proj-" + "Hw5Nx8Qm1Lk7Jh3Gf6Ds9Aw2Ez5Cv0Ty" + "T3BlbkFJ" + "Qq9Oo8Ii7Uu6Yy5Tt4Rr"
AN_SECRET = "sk-ant-api03-" + "Gw1Xx2Cc3Vv4Bb5Nn6Mm7Ll8Kk9Jj0Hh1Gg2Ff3Dd4Ss5Aa6" + "-Qq7Ww8AA"
ALL_SECRETS = (OA_SECRET, OA_SECRET_2, AN_SECRET)


def gateway_keys(server: FakeLLM, *, limit: int = 100_000, limit_2: int | None = None) -> list[dict[str, Any]]:
    """Two OpenAI-format keys in two accounts (so a rate limit can move), one Anthropic key."""
    return [
        {"id": "oa-1", "provider": "openai", "scope": "acct-1", "key": OA_SECRET, "base_url": server.base_url,
         "model": "gpt-test", "price_in_per_m": 1.0, "price_out_per_m": 2.0, "limits": {"tokens_per_day": limit}},
        {"id": "oa-2", "provider": "openai", "scope": "acct-2", "key": OA_SECRET_2, "base_url": server.base_url,
         "model": "gpt-test", "price_in_per_m": 1.0, "price_out_per_m": 2.0,
         "limits": {"tokens_per_day": limit if limit_2 is None else limit_2}},
        {"id": "an-1", "provider": "anthropic", "scope": "acct-3", "key": AN_SECRET, "base_url": server.base_url,
         "model": "claude-test", "price_in_per_m": 3.0, "price_out_per_m": 15.0,
         "limits": {"tokens_per_day": limit}},
    ]


@dataclass
class Harness:
    ctx: Context
    fake: FakeLLM
    server: BackgroundServer
    token: str
    token_id: str

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.token}"}

    def post(self, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", None) or self.headers()
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30, **kw)

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self.ctx.db.read() as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def counters(self) -> dict[str, dict[str, int]]:
        return {r["key_id"]: {"used": r["used"], "reserved": r["reserved"]}
                for r in self.rows("SELECT key_id, used, reserved FROM key_day_counters")}


def start_harness(tmp_path: Path, fake: FakeLLM, keys: list[dict[str, Any]], *, daily_budget: int = 1_000_000,
                  settings: GatewaySettings | None = None) -> Harness:
    write_keys(tmp_path / "keys.json", keys)
    ctx = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")
    token, secret = create_token(ctx, "test agent", daily_budget=daily_budget)
    settings = settings or GatewaySettings(policy=GatewaySettings().policy.model_copy(
        update={"base_delay_s": 0.01, "max_delay_s": 0.05}))
    server = BackgroundServer(create_app(ctx, settings=settings))
    return Harness(ctx, fake, server, secret, token.id)


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with start_fake_llm() as s:
        yield s


@pytest.fixture
def gw(tmp_path: Path, fake: FakeLLM) -> Iterator[Harness]:
    h = start_harness(tmp_path, fake, gateway_keys(fake))
    try:
        yield h
    finally:
        h.server.close()
        h.ctx.close()
