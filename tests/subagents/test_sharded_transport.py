"""The sharded connection pool keeps an honest count of requests in flight, whatever happens to them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from butler_skill.subagents.clients import ShardedTransport
from tests.servers.fake_llm import FakeLLM, dropped, ok, server_error, slow, start_fake_llm


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with start_fake_llm() as s:
        yield s


def in_flight(t: ShardedTransport) -> list[int]:
    return [s.in_flight for s in t._shards]


def test_counts_return_to_zero_after_success_errors_drops_timeouts_and_cancellation(server: FakeLLM) -> None:
    server.script(ok(), server_error(500), dropped(after_chunks=1), slow(2.0), slow(2.0))
    transport = ShardedTransport(per_shard=2, max_shards=3)

    async def run() -> None:
        async with httpx.AsyncClient(transport=transport, base_url=server.base_url) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            assert (await client.post("/chat/completions", json=body)).status_code == 200
            assert (await client.post("/chat/completions", json=body)).status_code == 500
            with pytest.raises(httpx.HTTPError):
                async with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as r:
                    async for _ in r.aiter_bytes():
                        pass
            with pytest.raises(httpx.TimeoutException):
                await client.post("/chat/completions", json=body, timeout=0.2)
            task = asyncio.create_task(client.post("/chat/completions", json=body))
            await asyncio.sleep(0.1)
            assert sum(in_flight(transport)) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert in_flight(transport) and all(n == 0 for n in in_flight(transport))

    asyncio.run(run())


def test_spreads_load_over_small_pools_up_to_the_cap(server: FakeLLM) -> None:
    server.set_default(slow(0.3))
    transport = ShardedTransport(per_shard=2, max_shards=3)
    seen: list[list[int]] = []

    async def run() -> None:
        async with httpx.AsyncClient(transport=transport, base_url=server.base_url) as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            calls = [asyncio.create_task(client.post("/chat/completions", json=body)) for _ in range(8)]
            await asyncio.sleep(0.1)
            seen.append(in_flight(transport))
            assert all(r.status_code == 200 for r in await asyncio.gather(*calls))
            seen.append(in_flight(transport))

    asyncio.run(run())
    during, after = seen
    assert len(during) == 3 and sum(during) == 8  # three pools, never a fourth; the rest queue in them
    assert after == [0, 0, 0]
