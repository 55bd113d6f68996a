"""Which HTTP client can carry 1,000 sub-tasks at maxConcurrent 100 on a 50 ms provider (issue 12)?

The ideal is 500 ms (ten waves of 50 ms). Butler's sub-task loop cannot be faster than the HTTP client under it,
so this measures bare clients on the same fake provider (its own process, OpenAI wire format): Butler's lean client
(`adapters/providers/lean.py`, what its adapters use for real providers) alone and under Butler's own adapter
(request body, headers, rate-limit headers, usage: one `OpenAICompatClient.complete` per request), aiohttp with one
session (the client before, still the one for proxied URLs) alone and under the same adapter, httpx with Butler's
former sharded pools (8 connections each), httpx with one pool of 100, httpx's API over an aiohttp transport,
and a plain asyncio-streams HTTP/1.1 client written here (keep-alive pool, Content-Length bodies only, no TLS,
no proxy, no chunked answers: not a client anyone should ship, but the floor of what any Python client can cost).
Wall time of 1,000 POSTs, at most 100 in flight, the client's CPU time over the same window, and the fake
provider's CPU over it (`--server threaded` uses tests/servers/fake_llm.py, whose thread per connection costs
about 0.4 ms of CPU a request and slows every client alike; the default is tests/servers/fast_llm.py, one asyncio
loop); best and median of the rounds. Clients run in turn, each round of each client interleaved with the others.

Run: .venv/bin/python benchmarks/bench_clients.py [--n 1000] [--c 100] [--latency-ms 50] [--rounds 5]
     [--server fast|threaded] [--only "TEXT|TEXT"]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


async def httpx_sharded(url: str, c: int) -> tuple[Any, Any]:
    import httpx

    from butler_skill.subagents.clients import ShardedTransport

    client = httpx.AsyncClient(transport=ShardedTransport(), timeout=60)

    async def post() -> None:
        r = await client.post(url, json=BODY)
        r.json()

    return post, client.aclose


async def httpx_one_pool(url: str, c: int) -> tuple[Any, Any]:
    import httpx

    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    client = httpx.AsyncClient(limits=limits, timeout=60)

    async def post() -> None:
        r = await client.post(url, json=BODY)
        r.json()

    return post, client.aclose


async def aiohttp_session(url: str, c: int) -> tuple[Any, Any]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c))

    async def post() -> None:
        async with session.post(url, json=BODY) as r:
            await r.json()

    return post, session.close


async def butler_adapter(url: str, c: int) -> tuple[Any, Any]:
    """Butler's OpenAI-compatible adapter over its aiohttp backend: the client the sub-agent runner calls."""
    from butler_skill.adapters.providers.http import AiohttpBackend

    return _adapter_over(AiohttpBackend(max_connections=c), url)


def _adapter_over(backend: Any, url: str) -> tuple[Any, Any]:
    """Butler's OpenAI-compatible adapter over `backend`: one completion per post."""
    from butler_skill.adapters.providers.openai_compat import OpenAICompatClient

    client = OpenAICompatClient(backend, url.removesuffix("/chat/completions"), "sk-bench-not-a-secret")

    async def post() -> None:
        await client.complete("m", BODY["messages"], 16)

    return post, backend.aclose


async def lean_client(url: str, c: int) -> tuple[Any, Any]:
    """Butler's lean client (``adapters/providers/lean.py``: asyncio Protocol + llhttp) alone: POST, read, json."""
    from butler_skill.adapters.providers.lean import LeanBackend

    backend = LeanBackend(max_connections=c)
    body = json.dumps(BODY).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench-not-a-secret"}

    async def post() -> None:
        r = await backend.post(url, body, headers, 60.0)
        json.loads(r.content)

    return post, backend.aclose


async def butler_adapter_lean(url: str, c: int) -> tuple[Any, Any]:
    """Butler's OpenAI-compatible adapter over the lean client: what the sub-agent runner calls now."""
    from butler_skill.adapters.providers.lean import LeanBackend

    return _adapter_over(LeanBackend(max_connections=c), url)


async def httpx_over_aiohttp(url: str, c: int) -> tuple[Any, Any]:
    """httpx's API over an aiohttp connection pool, as a transport (what wrapping aiohttp in httpx would cost)."""
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

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c))
    client = httpx.AsyncClient(transport=AiohttpTransport(session), timeout=60)

    async def post() -> None:
        r = await client.post(url, json=BODY)
        r.json()

    async def close() -> None:
        await client.aclose()
        await session.close()

    return post, close


async def asyncio_streams(url: str, c: int) -> tuple[Any, Any]:
    """A plain HTTP/1.1 client on asyncio streams: a pool of keep-alive connections, one request at a time on
    each, Content-Length answers only. The floor of what any Python HTTP client costs here."""
    parts = urlsplit(url)
    body = json.dumps(BODY).encode()
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post() -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(head + body)
        headers = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        status = int(headers[9:12])
        answer = json.loads(await reader.readexactly(length))
        if status != 200 or not answer.get("choices"):
            raise RuntimeError(f"bad answer {status}")
        idle.append((reader, writer))

    async def close() -> None:
        for _, writer in idle:
            writer.close()

    return post, close


async def run_client(make: Any, url: str, n: int, c: int, rounds: int) -> list[tuple[float, float, float]]:
    post, close = await make(url, c)
    try:
        await run_round(post, min(n, 2 * c), c)  # warm: connections open
        out = []
        for _ in range(rounds):
            s0, cpu, wall = SERVER_CPU(), time.process_time(), time.perf_counter()
            await run_round(post, n, c)
            out.append((time.perf_counter() - wall, time.process_time() - cpu, SERVER_CPU() - s0))
        return out
    finally:
        await close()


CLIENTS = {
    "Butler's lean client (asyncio Protocol + llhttp)": lean_client,
    "Butler's OpenAI adapter over the lean client (Butler's client)": butler_adapter_lean,
    "aiohttp, one session": aiohttp_session,
    "Butler's OpenAI adapter over aiohttp (Butler's client before)": butler_adapter,
    "plain asyncio streams, HTTP/1.1 (floor)": asyncio_streams,
    "httpx, Butler's former sharded pools": httpx_sharded,
    "httpx, one pool": httpx_one_pool,
    "httpx API over an aiohttp transport": httpx_over_aiohttp,
}
SERVER_CPU: Any = lambda: 0.0  # noqa: E731 (set in main: the fake provider's CPU so far)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    global SERVER_CPU
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000)
    parser.add_argument("--c", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", choices=("fast", "threaded"), default="fast")
    parser.add_argument("--only", default="", help="run only the clients whose name contains one of these "
                        "texts, separated by |")
    args = parser.parse_args()
    wanted = [w.strip().lower() for w in args.only.split("|")]
    clients = {name: make for name, make in CLIENTS.items() if any(w in name.lower() for w in wanted)}
    print(f"machine: {machine()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "bench_subagents.py"), "--serve",
                               str(args.latency_ms / 1000), "10", "5", args.server], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    SERVER_CPU = lambda: cpu_seconds(server.pid)  # noqa: E731
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        url = base.rstrip("/") + "/chat/completions"
        ideal = args.n / args.c * args.latency_ms
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):  # one round of each client in turn, so load on the machine hits all alike
            for name, make in clients.items():
                results[name] += asyncio.run(run_client(make, url, args.n, args.c, 1))
        print(f"\n{args.n:,} POSTs, at most {args.c} in flight, provider latency {args.latency_ms} ms "
              f"(ideal {ideal:.0f} ms), {args.rounds} rounds, {args.server} fake provider")
        print("| client | best ms | median ms | x ideal (median) | client CPU ms (median) | server CPU ms (median) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, res in results.items():
            walls = [w * 1e3 for w, _, _ in res]
            med = statistics.median(walls)
            print(f"| {name} | {min(walls):,.0f} | {med:,.0f} | {med / ideal:.2f} | "
                  f"{statistics.median(c * 1e3 for _, c, _ in res):,.0f} | "
                  f"{statistics.median(s * 1e3 for _, _, s in res):,.0f} |", flush=True)
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
