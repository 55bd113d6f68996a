"""Memory of the MCP server and of the gateway after 10,000 calls (issue 12): RSS sampled every 1,000 calls,
goal flat.

MCP: a real `butler-mcp` is started over stdio with the official MCP client; the calls cycle through
allocate_tokens, record_usage (closing the session), get_status and monitor_usage, so the ledger grows while the
server runs. Gateway: a real `butler serve` (uvicorn, its own process) in front of the loopback provider of
bench_gateway.py (its own process); one keep-alive client sends chat completions, every other one streamed,
unbound (each opens, settles and closes a session of its own). RSS is read from /proc/<pid>/status (Linux).

Run: .venv/bin/python benchmarks/bench_memory.py [--calls 10000] [--only mcp|gateway]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

from butler_skill.config import write_keys_file


def children() -> list[int]:
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--only", choices=("mcp", "gateway"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.only != "gateway":
        mcp(args.calls)
    if args.only != "mcp":
        gateway(args.calls)


def report(title: str, rows: list[tuple[int, int, float]]) -> None:
    print(f"\n{title}")
    print("| calls | RSS MiB | change since call 1,000 | elapsed s |")
    print("|---:|---:|---:|---:|")
    base = rows[1][1] if len(rows) > 1 else rows[0][1]
    for calls, kib, took in rows:
        print(f"| {calls:,} | {kib / 1024:.1f} | {(kib - base) / 1024:+.1f} | {took:.1f} |", flush=True)


def gateway(calls: int) -> None:
    import http.client
    import subprocess

    from bench_gateway import BODY, free_port, start_butler, wait_port

    folder = Path(tempfile.mkdtemp(prefix="butler-bench-mem-"))
    provider_port = free_port()
    provider = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bench_gateway.py")), "--provider",
                                 str(provider_port)])
    procs = [provider]
    try:
        wait_port(provider_port, provider)
        butler, port, token = start_butler(folder, provider_port)
        procs.append(butler)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
        bodies = [json.dumps(BODY).encode(),
                  json.dumps({**BODY, "stream": True, "stream_options": {"include_usage": True}}).encode()]
        rows: list[tuple[int, int, float]] = [(0, rss_kib(butler.pid), 0.0)]
        started = time.perf_counter()
        for i in range(1, calls + 1):
            conn.request("POST", "/v1/chat/completions", body=bodies[i % 2], headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200 or not data:
                raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
            if i % 1000 == 0:
                rows.append((i, rss_kib(butler.pid), time.perf_counter() - started))
        conn.close()
        report(f"butler serve RSS while serving {calls:,} chat completions (JSON and streamed in turn, unbound)",
               rows)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


def mcp(calls: int) -> None:
    import anyio
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    folder = Path(tempfile.mkdtemp())
    write_keys_file(folder / "keys.json", [
        {"id": f"k{i}", "provider": "groq", "limits": {"tokens_per_day": 10**12}} for i in range(8)])
    exe = shutil.which("butler-mcp", path=str(Path(sys.executable).parent))
    assert exe
    params = StdioServerParameters(command=exe, env={
        "HOME": str(folder), "BUTLER_KEYS_PATH": str(folder / "keys.json"),
        "BUTLER_STATE_PATH": str(folder / "state.db")})
    rows: list[tuple[int, int, float]] = []

    async def body() -> None:
        async with stdio_client(params) as (r, w), ClientSession(r, w) as session:
            await session.initialize()
            (pid,) = [p for p in children() if "butler-mcp" in Path(f"/proc/{p}/cmdline").read_text()]
            started = time.perf_counter()
            rows.append((0, rss_kib(pid), 0.0))
            session_id = None
            for i in range(1, calls + 1):
                step = i % 4
                if step == 1:
                    got = await session.call_tool("allocate_tokens", {"prd_text": "x", "tokens": 100})
                    session_id = json.loads(got.content[0].text)["result"]["session_id"]
                elif step == 2:
                    got = await session.call_tool("record_usage", {
                        "session_id": session_id, "request_id": f"r{i}", "input_tokens": 60, "output_tokens": 20,
                        "close": True})
                elif step == 3:
                    got = await session.call_tool("get_status", {})
                else:
                    got = await session.call_tool("monitor_usage", {})
                assert json.loads(got.content[0].text)["ok"]
                if i % 1000 == 0:
                    rows.append((i, rss_kib(pid), time.perf_counter() - started))

    anyio.run(body)
    shutil.rmtree(folder, ignore_errors=True)
    report(f"butler-mcp RSS while serving {calls:,} calls (allocate, record_usage+close, get_status, "
           "monitor_usage in turn)", rows)

if __name__ == "__main__":
    main()
