"""Gateway figures (issue 9): added latency per request through `butler serve` (median, p99; non-streaming, and
time to first byte when streaming) against a zero-latency loopback provider, throughput, and the same through a
LiteLLM proxy with a budget when one is installed.

Run: .venv/bin/python benchmarks/bench_gateway.py [--n 2000] [--throughput-n 5000] [--concurrency 32]
LiteLLM's proxy is optional: it runs from its own virtualenv (`--litellm /path/to/venv/bin/litellm`, default
/tmp/litellm-venv/bin/litellm; install with `python -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip
install 'litellm[proxy]'`), since its pinned web stack must not replace Butler's. Without it its rows are skipped.

How it measures
---------------
* The provider: a minimal asyncio HTTP/1.1 server in its own process answering `POST /v1/chat/completions`
  at once (JSON, or SSE with a usage chunk when `stream` is set), so any latency above it is the proxy's.
* Butler: the real `butler serve` (uvicorn, one worker) in its own process, on a fresh ledger, one key with a
  daily limit far above the run, an access token. Every request is authenticated, reserved, forwarded,
  settled and released in SQLite (WAL), as in production.
* LiteLLM: `litellm --config` (one worker) with the same model on the same provider, a master key and a
  global `max_budget`, in its own process.
* Latency: one client, one keep-alive connection, requests one after another (http.client); first `--warm`
  requests are discarded. Added latency = through-proxy minus direct-to-provider, median and p99 of each
  (the difference of the percentiles). TTFB: time from sending to the first body byte of a stream.
* Throughput: `--concurrency` keep-alive connections (asyncio, raw HTTP/1.1) sending `--throughput-n`
  non-streaming requests in all; requests per second of wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, pct

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "gpt-bench", "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 32}


# ---- the zero-latency provider ---------------------------------------------------------------------
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "gpt-bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, nice to meet."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21},
}).encode()


def _sse() -> bytes:
    def chunk(choices: list[Any], usage: Any = None) -> bytes:
        return b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
                                       "model": "gpt-bench", "choices": choices, "usage": usage}).encode() + b"\n\n"
    parts = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    for word in ("Hello ", "there, ", "nice ", "to ", "meet."):
        parts.append(chunk([{"index": 0, "delta": {"content": word}, "finish_reason": None}]))
    parts.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    parts.append(chunk([], {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


STREAM = _sse()


async def _serve_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET"):
                payload, ctype = b'{"object":"list","data":[]}', b"application/json"
            elif b'"stream": true' in body or b'"stream":true' in body:
                payload, ctype = STREAM, b"text/event-stream"
            else:
                payload, ctype = ANSWER, b"application/json"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
                         + str(len(payload)).encode() + b"\r\nx-request-id: req-bench\r\n\r\n" + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def run_provider(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_serve_conn, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---- processes --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {port}")


# `butler serve` with uvicorn forced to its pure-Python parts (h11, asyncio): how the gateway ran before httptools
# and uvloop were dependencies. Only this benchmark patches uvicorn.run; the command is otherwise the real one.
_SERVE_H11 = ("import sys, uvicorn; run = uvicorn.run; "
              "uvicorn.run = lambda *a, **k: run(*a, **{**k, 'http': 'h11', 'loop': 'asyncio'}); "
              "from butler_skill.host.cli import main; sys.argv[0] = 'butler'; sys.exit(main())")


_SERVE = "import sys; from butler_skill.host.cli import main; sys.argv[0] = 'butler'; sys.exit(main())"


def start_butler(folder: Path, provider_port: int, *, source: Path | None = None,
                 server: str = "auto") -> tuple[subprocess.Popen[bytes], int, str]:
    """A real `butler serve` on its own ledger in `folder`. `source`: a folder holding another checkout's
    butler_skill package to run instead of this one (put first on PYTHONPATH); `server`: "auto" (uvicorn picks
    httptools and uvloop when installed) or "h11" (uvicorn's pure-Python HTTP/1.1 and asyncio's loop)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {"keys": [{"id": "bench", "provider": "custom", "scope": "acct", "key": "sk-bench-" + "x" * 32,
                      "base_url": f"http://127.0.0.1:{provider_port}/v1", "model": "gpt-bench",
                      "price_in_per_m": 0.15, "price_out_per_m": 0.6, "limits": {"tokens_per_day": 10**12}}]}
    (folder / "keys.json").write_text(json.dumps(keys))
    (folder / "keys.json").chmod(0o600)
    env = {**os.environ, "BUTLER_KEYS_PATH": str(folder / "keys.json"), "BUTLER_STATE_PATH": str(folder / "s.db"),
           "HOME": str(folder)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    python = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
    butler = [python, "-c", _SERVE_H11 if server == "h11" else _SERVE]
    out = subprocess.run([*butler, "token", "create", "--name", "bench", "--daily-budget", str(10**12), "--json"],
                         env=env, capture_output=True, check=True)
    token = json.loads(out.stdout)["token"]
    port = free_port()
    proc = subprocess.Popen([*butler, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port, token


def cpu_ms(pid: int) -> float:
    """User + system CPU a process has used so far, in ms (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def export_ref(ref: str, into: Path) -> Path:
    """`git archive` of `ref`'s butler_skill package into `into` (run with PYTHONPATH=into)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "butler_skill"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start_litellm(litellm: str, folder: Path, provider_port: int) -> tuple[subprocess.Popen[bytes], int, str]:
    master = "sk-litellm-bench-master"
    config = (
        "model_list:\n"
        "  - model_name: gpt-bench\n"
        "    litellm_params:\n"
        "      model: openai/gpt-bench\n"
        f"      api_base: http://127.0.0.1:{provider_port}/v1\n"
        "      api_key: sk-bench-provider\n"
        "litellm_settings:\n"
        "  max_budget: 1000000\n"
        "  budget_duration: 1d\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {master}\n"
    )
    (folder / "litellm.yaml").write_text(config)
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "LITELLM_LOG": "ERROR", "HOME": str(folder)}
    proc = subprocess.Popen([litellm, "--config", str(folder / "litellm.yaml"), "--port", str(port),
                             "--num_workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, 300)
    return proc, port, master


# ---- clients ----------------------------------------------------------------------------------------
def latencies(port: int, token: str | None, n: int, warm: int, stream: bool) -> list[float]:
    body = json.dumps({**BODY, "stream": stream}).encode()
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port)
    out: list[float] = []
    for i in range(n + warm):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        if stream:
            first = resp.read1(65536)
            took = time.perf_counter() - start
            rest = resp.read()
            data = first + rest
        else:
            data = resp.read()
            took = time.perf_counter() - start
        if resp.status != 200 or not data:
            raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
        if i >= warm:
            out.append(took)
    conn.close()
    return out


async def _throughput(port: int, token: str | None, total: int, concurrency: int) -> float:
    body = json.dumps(BODY).encode()
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}content-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    left = total

    async def worker() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left > 0:
            left -= 1
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key == b"content-length":
                    length = int(value.strip())
                elif key == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:100])
            if chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.readexactly(length)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


def throughput(port: int, token: str | None, total: int, concurrency: int) -> float:
    return asyncio.run(_throughput(port, token, total, concurrency))


def ms(x: float) -> str:
    return f"{x * 1000:7.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", type=int, help=argparse.SUPPRESS)  # internal: run the provider
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--throughput-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--litellm", default="/tmp/litellm-venv/bin/litellm")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="latency samples are taken in this many interleaved "
                        "rounds over the targets")
    parser.add_argument("--compare", metavar="GIT_REF", help="also run the gateway of GIT_REF (e.g. main) and this "
                        "one, both on h11 + asyncio, beside this one as installed (same run, interleaved)")
    args = parser.parse_args()
    if args.provider:
        run_provider(args.provider)
        return 0

    print(f"machine: {machine()}")
    folder = Path(tempfile.mkdtemp(prefix="butler-bench-gw-"))
    provider_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        provider = subprocess.Popen([sys.executable, __file__, "--provider", str(provider_port)])
        procs.append(provider)
        wait_port(provider_port, provider)
        targets: list[tuple[str, int, str | None]] = [("direct", provider_port, None)]
        pids: dict[str, int] = {}
        variants: list[tuple[str, Path | None, str]] = [("butler", None, "auto")]
        if args.compare:
            before = export_ref(args.compare, folder / "ref")
            variants = [(f"{args.compare}+h11", before, "h11"), ("h11", None, "h11"), ("butler", None, "auto")]
        for name, source, server in variants:
            proc, port, tok = start_butler(folder / name, provider_port, source=source, server=server)
            procs.append(proc)
            pids[name] = proc.pid
            targets.append((name, port, tok))
        litellm = (args.litellm if Path(args.litellm).exists() else shutil.which("litellm")) if not args.no_litellm \
            else None
        if litellm:
            lproc, lport, master = start_litellm(litellm, folder, provider_port)
            procs.append(lproc)
            targets.append(("litellm", lport, master))
        else:
            print("litellm proxy: not run here; its rows are skipped")
        results: dict[str, dict[str, list[float]]] = {name: {"json": [], "ttfb": []} for name, _, _ in targets}
        cpu_seq: dict[str, float] = dict.fromkeys(pids, 0.0)  # gateway CPU over the timed sequential JSON calls
        rounds = max(1, args.rounds)
        for r in range(rounds):  # interleaved: every target sees the same share of the machine's load
            for name, port, tok in targets:
                warm = args.warm if r == 0 else 10
                latencies(port, tok, 0, warm, False)
                before = cpu_ms(pids[name]) if name in pids else 0.0
                results[name]["json"] += latencies(port, tok, args.n // rounds, 0, False)
                if name in pids:
                    cpu_seq[name] += cpu_ms(pids[name]) - before
                results[name]["ttfb"] += latencies(port, tok, args.n // rounds, warm, True)
        direct = results["direct"]
        print(f"latency, sequential, n={args.n} each (after {args.warm} warm-up):")
        for name in results:
            r = results[name]
            line = (f"  {name:<12} json median {ms(statistics.median(r['json']))} p99 {ms(pct(r['json'], 0.99))}"
                    f"   stream TTFB median {ms(statistics.median(r['ttfb']))} p99 {ms(pct(r['ttfb'], 0.99))}")
            print(line)
        for name in results:
            if name == "direct":
                continue
            r = results[name]
            added = {k: (statistics.median(r[k]) - statistics.median(direct[k]), pct(r[k], 0.99) - pct(direct[k], 0.99))
                     for k in ("json", "ttfb")}
            cpu = f"   gateway CPU {cpu_seq[name] / len(r['json']):.2f} ms per call" if name in cpu_seq else ""
            print(f"  added by {name:<12}: json median {ms(added['json'][0])} p99 {ms(added['json'][1])}   "
                  f"TTFB median {ms(added['ttfb'][0])} p99 {ms(added['ttfb'][1])}{cpu}")
        print(f"throughput, {args.throughput_n} non-streaming requests over {args.concurrency} keep-alive connections "
              f"({rounds} interleaved rounds):")
        for _name, port, tok in targets:
            throughput(port, tok, min(500, args.throughput_n), args.concurrency)  # warm-up
        spent = dict.fromkeys(results, 0.0)
        cpu_tp = dict.fromkeys(pids, 0.0)
        share = max(args.concurrency, args.throughput_n // rounds)
        for _ in range(rounds):  # interleaved rounds, as for latency
            for name, port, tok in targets:
                before = cpu_ms(pids[name]) if name in pids else 0.0
                start = time.perf_counter()
                throughput(port, tok, share, args.concurrency)
                spent[name] += time.perf_counter() - start
                if name in pids:
                    cpu_tp[name] += cpu_ms(pids[name]) - before
        for name in spent:
            per_call = f"   gateway CPU {cpu_tp[name] / (share * rounds):.2f} ms per call" if name in cpu_tp else ""
            print(f"  {name:<12} {share * rounds / spent[name]:9.0f} requests/s{per_call}")
        for name in pids:
            where = folder / name
            with_usage = subprocess.run([str(ROOT / ".venv/bin/butler"), "status", "--json"], capture_output=True,
                                        env={**os.environ, "BUTLER_KEYS_PATH": str(where / "keys.json"),
                                             "BUTLER_STATE_PATH": str(where / "s.db"), "HOME": str(where)})
            if with_usage.returncode == 0:
                status = json.loads(with_usage.stdout)
                total = status.get("tokens", {}).get("keys_by_provider", {}).get("custom", {})
                print(f"{name} ledger after the run: used {total.get('used_today')}, reserved "
                      f"{total.get('reserved')}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
