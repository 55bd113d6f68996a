"""Which HTTP client can carry 1,000 sub-tasks at maxConcurrent 100 on a 50 ms provider (issue 12)?

The ideal is 500 ms (ten waves of 50 ms). Butler's sub-task loop cannot be faster than the HTTP client under it,
so this measures bare clients on the same fake provider (its own process, OpenAI wire format): httpx with
Butler's sharded pools (8 connections each), httpx with one pool of 100, and aiohttp with one session (aiohttp is
not a Butler dependency: install it to see its row). Wall time of 1,000 POSTs, at most 100 in flight, and the
client's CPU time over the same window; best and median of the rounds.

Run: .venv/bin/python benchmarks/bench_clients.py [--n 1000] [--c 100] [--latency-ms 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


async def run_round(post: Any, n: int, c: int) -> None:
    gate = asyncio.Semaphore(c)

    async def one() -> None:
        async with gate:
            await post()

    await asyncio.gather(*(one() for _ in range(n)))


async def httpx_sharded(url: str, n: int, c: int, rounds: int) -> list[tuple[float, float]]:
    import httpx

    from butler_skill.subagents.clients import ShardedTransport

    async with httpx.AsyncClient(transport=ShardedTransport(), timeout=60) as client:
        async def post() -> None:
            r = await client.post(url, json=BODY)
            r.json()
        return await timed(post, n, c, rounds)


async def httpx_one_pool(url: str, n: int, c: int, rounds: int) -> list[tuple[float, float]]:
    import httpx

    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def post() -> None:
            r = await client.post(url, json=BODY)
            r.json()
        return await timed(post, n, c, rounds)


async def aiohttp_session(url: str, n: int, c: int, rounds: int) -> list[tuple[float, float]]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:
        async def post() -> None:
            async with session.post(url, json=BODY) as r:
                await r.json()
        return await timed(post, n, c, rounds)


async def timed(post: Any, n: int, c: int, rounds: int) -> list[tuple[float, float]]:
    await run_round(post, min(n, 2 * c), c)  # warm: connections open
    out = []
    for _ in range(rounds):
        cpu, wall = time.process_time(), time.perf_counter()
        await run_round(post, n, c)
        out.append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


async def httpx_over_aiohttp(url: str, n: int, c: int, rounds: int) -> list[tuple[float, float]]:
    """httpx's API (what Butler's adapters take) over an aiohttp connection pool, as a transport."""
    import aiohttp
    import httpx

    class AiohttpTransport(httpx.AsyncBaseTransport):
        def __init__(self, session: aiohttp.ClientSession) -> None:
            self.session = session

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            body = await request.aread()
            async with self.session.request(request.method, str(request.url), data=body,
                                            headers=request.headers) as r:
                content = await r.read()
                return httpx.Response(r.status, headers=list(r.headers.items()), content=content,
                                      request=request)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session, \
            httpx.AsyncClient(transport=AiohttpTransport(session), timeout=60) as client:
        async def post() -> None:
            r = await client.post(url, json=BODY)
            r.json()
        return await timed(post, n, c, rounds)


CLIENTS = {"httpx, Butler's sharded pools": httpx_sharded, "httpx, one pool": httpx_one_pool,
           "aiohttp, one session": aiohttp_session, "httpx API over an aiohttp transport": httpx_over_aiohttp}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--c", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "bench_subagents.py"), "--serve",
                               str(args.latency_ms / 1000), "10", "5"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        url = base.rstrip("/") + "/chat/completions"
        ideal = args.n / args.c * args.latency_ms
        print(f"\n{args.n:,} POSTs, at most {args.c} in flight, provider latency {args.latency_ms} ms "
              f"(ideal {ideal:.0f} ms), {args.rounds} rounds")
        print("| client | best ms | median ms | x ideal (median) | client CPU ms (median) |")
        print("|---|---:|---:|---:|---:|")
        for name, fn in CLIENTS.items():
            try:
                res = asyncio.run(fn(url, args.n, args.c, args.rounds))
            except ImportError as exc:
                print(f"| {name} | not installed ({exc.name}) | | | |")
                continue
            walls = [w * 1e3 for w, _ in res]
            cpus = [c * 1e3 for _, c in res]
            med = statistics.median(walls)
            print(f"| {name} | {min(walls):.0f} | {med:.0f} | {med / ideal:.2f} | {statistics.median(cpus):.0f} |",
                  flush=True)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
