"""Two gateways (two processes' worth: each its own Context, pool and HTTP server) in front of one PostgreSQL
ledger, and calls spread over both against a key with room for fifty: exactly fifty go through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from butler_skill.core import admission
from butler_skill.gateway.app import create_app
from butler_skill.gateway.server import BackgroundServer
from butler_skill.gateway.service import GatewaySettings
from butler_skill.gateway.tokens import create_token
from butler_skill.host.context import Context
from tests.conftest import write_keys
from tests.gateway.conftest import OA_SECRET
from tests.servers.fake_llm import FakeLLM, ok, start_fake_llm

CALLS = 200
ROOM_FOR = 50
MAX_TOKENS = 64
CHAT = "/v1/chat/completions"


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with start_fake_llm() as s:
        yield s


def test_two_gateways_on_one_ledger_never_overspend(tmp_path: Path, pg_url: str, fake: FakeLLM) -> None:
    raw = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "count to three"}],
                      "max_tokens": MAX_TOKENS}).encode()
    need = admission.need(admission.prompt_estimate(len(raw)), MAX_TOKENS)
    limit = ROOM_FOR * need
    fake.set_default(ok(prompt_tokens=need - MAX_TOKENS, completion_tokens=MAX_TOKENS))
    write_keys(tmp_path / "keys.json", [
        {"id": "only", "provider": "openai", "scope": "acct-1", "key": OA_SECRET, "base_url": fake.base_url,
         "model": "gpt-test", "price_in_per_m": 1.0, "price_out_per_m": 2.0, "limits": {"tokens_per_day": limit}}])
    contexts = [Context(env={"HOME": str(tmp_path), "BUTLER_DATABASE_URL": pg_url}, keys_path=tmp_path / "keys.json",
                        state_path=tmp_path / f"host{i}.db") for i in range(2)]
    _, secret = create_token(contexts[0], "agent", daily_budget=10 * CALLS * need)  # seen by both: one ledger
    settings = GatewaySettings(policy=GatewaySettings().policy.model_copy(update={"base_delay_s": 0.01,
                                                                                   "max_delay_s": 0.05}))
    servers = [BackgroundServer(create_app(ctx, settings=settings)) for ctx in contexts]
    try:
        def request() -> bytes:
            return (f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {secret}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(raw)}\r\nconnection: close\r\n\r\n"
                    ).encode() + raw

        async def call(port: int) -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request())
            await writer.drain()
            answer = await reader.read()
            writer.close()
            return int(answer.split(b" ", 2)[1])

        async def run() -> list[int]:
            return await asyncio.gather(*(call(servers[i % 2].port) for i in range(CALLS)))

        statuses = asyncio.run(run())
        assert statuses.count(200) == ROOM_FOR and statuses.count(429) == CALLS - ROOM_FOR
        assert len(fake.requests) == ROOM_FOR
        for ctx in contexts:  # both hosts read the same figures
            with ctx.db.read() as conn:
                row = conn.execute("SELECT used, reserved FROM key_day_counters WHERE key_id = 'only'").fetchone()
            assert (row["used"], row["reserved"]) == (limit, 0)
    finally:
        for server in servers:
            server.close()
        for ctx in contexts:
            ctx.close()
