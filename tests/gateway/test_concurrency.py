"""1,000 concurrent calls through the gateway against a key with room for 50: exactly 50 go through, not one
token is granted past the key's limit, and every other call gets a clear budget error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from butler_skill.core import admission
from tests.gateway.conftest import OA_SECRET, start_harness
from tests.gateway.test_relay import CHAT, no_holds
from tests.servers.fake_llm import FakeLLM, ok

CALLS = 1_000
ROOM_FOR = 50
MAX_TOKENS = 64


def test_a_thousand_concurrent_calls_against_room_for_fifty(tmp_path: Path, fake: FakeLLM) -> None:
    raw = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "count to three"}],
                      "max_tokens": MAX_TOKENS}).encode()
    need = admission.need(admission.prompt_estimate(len(raw)), MAX_TOKENS)
    limit = ROOM_FOR * need
    # The provider reports exactly what each call reserved, so a finished call frees nothing a later one
    # could take: the number that fits is exactly ROOM_FOR whatever the order of arrival.
    fake.set_default(ok(prompt_tokens=need - MAX_TOKENS, completion_tokens=MAX_TOKENS))
    keys = [{"id": "only", "provider": "openai", "scope": "acct-1", "key": OA_SECRET, "base_url": fake.base_url,
             "model": "gpt-test", "price_in_per_m": 1.0, "price_out_per_m": 2.0,
             "limits": {"tokens_per_day": limit}}]
    h = start_harness(tmp_path, fake, keys, daily_budget=10 * CALLS * need)
    try:
        # A bare HTTP/1.1 client (one connection per call): httpx's pool bookkeeping grows with the square of
        # its connections and would make the client, not the gateway, the slow part at 1,000 at once.
        request = (f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {h.token}\r\n"
                   f"content-type: application/json\r\ncontent-length: {len(raw)}\r\nconnection: close\r\n\r\n"
                   ).encode() + raw

        async def call() -> tuple[int, dict[str, object]]:
            reader, writer = await asyncio.open_connection("127.0.0.1", h.server.port)
            writer.write(request)
            await writer.drain()
            answer = await reader.read()
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            return int(head.split(b" ")[1]), json.loads(body)

        async def run() -> list[tuple[int, dict[str, object]]]:
            return await asyncio.gather(*(call() for _ in range(CALLS)))

        responses = asyncio.run(run())
        statuses = [status for status, _ in responses]
        assert statuses.count(200) == ROOM_FOR
        assert statuses.count(429) == CALLS - ROOM_FOR
        refusals = [body["error"] for status, body in responses if status == 429]
        assert {e["code"] for e in refusals} == {"butler_budget_exhausted"}
        assert all(f"can take {need} tokens" in e["message"] for e in refusals)
        assert len(fake.requests) == ROOM_FOR
        assert h.counters() == {"only": {"used": limit, "reserved": 0}}
        assert h.rows("SELECT COUNT(*) AS n, SUM(total_tokens) AS t FROM usage_records")[0] == {"n": ROOM_FOR,
                                                                                               "t": limit}
        no_holds(h)
    finally:
        h.server.close()
        h.ctx.close()
