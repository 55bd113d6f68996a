"""Sub-agent figures (issue 3): Butler's overhead per sub-task next to LiteLLM's Router, and 1,000 sub-tasks at
maxConcurrent 100 against a provider that takes 50 ms to answer (wall time, peak memory, budget overshoot).

Run: .venv/bin/python benchmarks/bench_subagents.py [--n 400] [--reps 5] [--concurrency 1,10,100] [--load-reps 3]
       [--load-only] [--server fast|threaded] [--profile] [--floors aiohttp,lean,httpx]
LiteLLM is optional (`pip install -e '.[bench]'`): without it the LiteLLM rows are skipped.

How it measures
---------------
* One fake provider runs in its own process, so it never competes with the client being measured for the GIL.
  Every tool sends the same requests to it. By default it is tests/servers/fast_llm.py (fake_llm's answers from
  one asyncio loop: about 0.1 ms of server CPU a request); `--server threaded` uses fake_llm.py itself, whose
  thread per connection costs about 0.4 ms a request: at 100 in flight that is 40 ms of server CPU per wave of
  answers, so the provider itself answered in 50-90 ms instead of 50 and was part of what was measured. The
  server's CPU is printed beside each figure either way.
* Each tool runs in its own worker process (LiteLLM's background logging threads and caches cannot slow the
  others down, nor the others LiteLLM), is warmed up at every concurrency first, and is then measured in
  rounds interleaved across tools (the order rotates each repetition), so a noisy neighbour on the machine
  hits every tool alike. A round is N requests, at most C in flight, timed from the first request to the last
  answer; CPU is the worker's process time over the same window (all its threads).
* The tools: bare aiohttp (the floor: one `aiohttp.ClientSession`, the client Butler's adapters use), bare httpx
  (plain `httpx.AsyncClient`s, one per 8 requests in flight, as httpcore's pool does per-request bookkeeping
  quadratic in its connections), bare httpx with one pool sized to C (for reference), Butler (`plan_task` then
  `run_task` over a warm `ClientFactory`: reserve every share, call, settle usage, record the attempt, release,
  set the status, all durable in SQLite, group-committed), LiteLLM (`Router` with one deployment, `acompletion`;
  no callbacks, no telemetry, local cost map; its default transport).
* Overhead per request = (tool's round time - the floor's round time in the same repetition) / N, median over
  the repetitions.
* Goal 2 runs `spawn_agent` itself (fresh client pool, as a host call would) in a fresh process per
  repetition, interleaved with bare floors on the same server (`--floors`: aiohttp, Butler's own lean client alone,
  httpx; each floor's bodies encoded before its clock, its connections warm), after a 100-sub-task
  warm-up, against three keys whose daily limits only just fit the task budget; then it checks the ledger: per
  key granted and used+reserved against the limit, the task's usage against its budget. Peak memory: growth of
  ru_maxrss over the run, and tracemalloc's peak in one more run (traced separately: tracing slows allocation,
  so that run's time is not reported). Each phase (plan, run, the rest) is timed, wall and CPU.
* Any connection attempt outside loopback (LiteLLM fetching something) is counted by an audit hook and shown.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.servers.fake_llm
from _common import machine

ROOT = Path(__file__).resolve().parent.parent

LITELLM_ENV = {
    # Never fetch anything at import or first call: the bundled copies serve.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
}
PER_POOL = 8  # requests in flight per httpx pool for the floor (the same figure Butler's ShardedTransport uses)
TASK_NAME = "bench"
SHARE = 4_000  # tokens per sub-task in goal 1 (keys there have room for everything)
WORKER_TIMEOUT_S = 900


def item_text(i: int) -> str:
    return f"Item {i}: say ok"


def description(n: int) -> str:
    return "\n".join(f"- {item_text(i)}" for i in range(n))


# ---- processes ----------------------------------------------------------------------------------
def serve(delay_s: float, prompt_tokens: int, completion_tokens: int, kind: str = "fast") -> None:
    """Run the fake provider until stdin closes; print its base URL first."""
    from tests.servers.fake_llm import slow, start_fake_llm
    from tests.servers.fast_llm import start_fast_llm

    reply = slow(delay_s, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, text="ok")
    server = start_fast_llm(reply) if kind == "fast" else start_fake_llm(reply)
    print(server.base_url, flush=True)
    sys.stdin.read()
    server.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process of this script speaking one JSON line per answer on stdout."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child; closed in close())
        self.p = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, cwd=ROOT, env={**os.environ, **(env or {})})

    def line(self, timeout_s: float = WORKER_TIMEOUT_S) -> str:
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], timeout_s)
        text = self.p.stdout.readline() if ready else ""
        if not text:
            self.err.seek(0)
            tail = self.err.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"child {self.p.args[2:]} gave no answer (exit {self.p.poll()}):\n{tail}")
        return text.strip()

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        return dict(json.loads(self.line()))

    def close(self) -> None:
        if self.p.stdin is not None and not self.p.stdin.closed:
            self.p.stdin.close()
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.err.close()


def network_guard() -> list[str]:
    """Record every connection attempt or name lookup that leaves loopback."""
    seen: list[str] = []
    local = ("127.", "localhost", "::1")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            address = args[1]
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            if not host.startswith(local) and not host.startswith("/"):
                seen.append(f"connect {host}")
        elif event == "socket.getaddrinfo" and args and args[0] is not None:
            host = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            if not host.startswith(local):
                seen.append(f"lookup {host}")

    sys.addaudithook(hook)
    return seen


def protocol_out() -> Any:
    """The real stdout for answers; anything else printed (libraries included) goes to stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


# ---- goal 1: one worker per tool -------------------------------------------------------------------
def prompts(n: int) -> list[list[dict[str, str]]]:
    from butler_skill.core.prompts import subtask_prompt

    desc = description(n)
    return [[{"role": "user", "content": subtask_prompt(
        task_name=TASK_NAME, task_description=desc, subtask_id=f"st-{i + 1}", subtask_text=item_text(i),
        depends_on=(), outputs={}, share=SHARE)}] for i in range(n)]


def max_tokens(messages: list[dict[str, str]]) -> int:
    from butler_skill.adapters.providers.base import estimate_prompt_tokens

    return SHARE - estimate_prompt_tokens(messages)  # what Butler asks for: the share less the prompt


class HttpxPools:
    """The floor: bare POSTs, one AsyncClient per PER_POOL requests in flight."""

    def __init__(self, base_url: str, per_pool: int | None = PER_POOL) -> None:
        import httpx

        self.httpx = httpx
        self.url = base_url + "/chat/completions"
        self.per_pool = per_pool
        self.pools: dict[int, list[Any]] = {}
        self.headers = {"authorization": "Bearer sk-bench-not-a-secret", "content-type": "application/json"}
        self.bodies: dict[int, list[dict[str, Any]]] = {}
        self.failed = 0

    def _pools(self, c: int) -> list[Any]:
        if c not in self.pools:
            size = self.per_pool or c
            count = math.ceil(c / size)
            limits = self.httpx.Limits(max_connections=size, max_keepalive_connections=size)
            self.pools[c] = [self.httpx.AsyncClient(limits=limits, timeout=60.0) for _ in range(count)]
        return self.pools[c]

    def _bodies(self, n: int) -> list[dict[str, Any]]:
        if n not in self.bodies:
            self.bodies[n] = [{"model": "fake-model", "messages": m, "max_tokens": max_tokens(m), "stream": False}
                              for m in prompts(n)]
        return self.bodies[n]

    async def round(self, n: int, c: int) -> None:
        pools, bodies = self._pools(c), self._bodies(n)
        slots = asyncio.Semaphore(c)
        self.failed = 0

        async def one(i: int) -> None:
            async with slots:
                resp = await pools[i % len(pools)].post(self.url, json=bodies[i], headers=self.headers)
                data = resp.json()
                if resp.status_code != 200 or not data.get("choices"):
                    self.failed += 1

        await asyncio.gather(*(one(i) for i in range(n)))

    def failures(self) -> int:
        return self.failed

    async def close(self) -> None:
        for pools in self.pools.values():
            for client in pools:
                await client.aclose()


class AiohttpSession:
    """The floor: bare POSTs through one aiohttp session (the client Butler's adapters use for real providers)."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url + "/chat/completions"
        self.headers = {"authorization": "Bearer sk-bench-not-a-secret", "content-type": "application/json"}
        self.bodies: dict[int, list[bytes]] = {}
        self.session: Any = None
        self.failed = 0

    async def round(self, n: int, c: int) -> None:
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        if n not in self.bodies:
            self.bodies[n] = [json.dumps({"model": "fake-model", "messages": m, "max_tokens": max_tokens(m),
                                          "stream": False}).encode() for m in prompts(n)]
        bodies, slots = self.bodies[n], asyncio.Semaphore(c)
        self.failed = 0

        async def one(i: int) -> None:
            async with slots, self.session.post(self.url, data=bodies[i], headers=self.headers) as resp:
                data = json.loads(await resp.read())
                if resp.status != 200 or not data.get("choices"):
                    self.failed += 1

        await asyncio.gather(*(one(i) for i in range(n)))

    def failures(self) -> int:
        return self.failed

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class LeanSession:
    """The floor Butler's own client sets: bare POSTs through one `LeanBackend` (adapters/providers/lean.py), the
    bodies encoded before the clock as the aiohttp floor's are (no adapter, no ledger)."""

    def __init__(self, base_url: str) -> None:
        from butler_skill.adapters.providers.lean import LeanBackend

        self.url = base_url + "/chat/completions"
        self.headers = {"authorization": "Bearer sk-bench-not-a-secret", "content-type": "application/json"}
        self.bodies: dict[int, list[bytes]] = {}
        self.backend = LeanBackend()
        self.failed = 0

    async def round(self, n: int, c: int) -> None:
        if n not in self.bodies:
            self.bodies[n] = [json.dumps({"model": "fake-model", "messages": m, "max_tokens": max_tokens(m),
                                          "stream": False}).encode() for m in prompts(n)]
        bodies, slots = self.bodies[n], asyncio.Semaphore(c)
        self.failed = 0

        async def one(i: int) -> None:
            async with slots:
                resp = await self.backend.post(self.url, bodies[i], self.headers, 60.0)
                data = json.loads(resp.content)
                if resp.status_code != 200 or not data.get("choices"):
                    self.failed += 1

        await asyncio.gather(*(one(i) for i in range(n)))

    def failures(self) -> int:
        return self.failed

    async def close(self) -> None:
        await self.backend.aclose()


class HttpxOnePool(HttpxPools):
    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, per_pool=None)


class ButlerTool:
    """plan_task (reserve every share in one transaction) + run_task (call, settle, persist) per round."""

    def __init__(self, base_url: str) -> None:
        from butler_skill.config import write_keys_file
        from butler_skill.host.context import Context
        from butler_skill.subagents.clients import ClientFactory

        folder = Path(tempfile.mkdtemp(prefix="bench-subagents-"))
        keys = folder / "keys.json"
        write_keys_file(keys, [{"id": "fake-1", "provider": "openai", "base_url": base_url, "model": "fake-model",
                                "key": "sk-bench-not-a-secret", "limits": {"tokens_per_day": 10**12}}])
        self.folder = folder
        self.ctx = Context(env={"HOME": str(folder)}, keys_path=keys, state_path=folder / "state.db")
        self.factory = ClientFactory(self.ctx.config)
        self.task_id = ""

    async def round(self, n: int, c: int) -> None:
        from butler_skill.subagents.planning import plan_task
        from butler_skill.subagents.runner import SpawnOptions, run_task

        options = SpawnOptions(maxConcurrent=c)
        self.task_id, _ = plan_task(self.ctx, name=TASK_NAME, description=description(n), budget=n * SHARE,
                                    mode="spawn", options=options.model_dump(exclude_none=True))
        await run_task(self.ctx, self.task_id, options, self.factory)

    def failures(self) -> int:  # read after the clock stops: not part of a sub-task's path
        from butler_skill.store.tasks import TaskStore

        return sum(1 for r in TaskStore(self.ctx.db).subtasks(self.task_id) if r.status != "success")

    async def close(self) -> None:
        await self.factory.aclose()
        self.ctx.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class LiteLLMTool:
    def __init__(self, base_url: str) -> None:
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        litellm.set_verbose = False
        litellm.turn_off_message_logging = True
        litellm.callbacks = []
        litellm.success_callback = []
        litellm.failure_callback = []
        litellm.input_callback = []
        self.router = litellm.Router(model_list=[{"model_name": "bench", "litellm_params": {
            "model": "openai/fake-model", "api_base": base_url, "api_key": "sk-bench-not-a-secret"}}])
        self.messages: dict[int, list[list[dict[str, str]]]] = {}
        self.failed = 0

    async def round(self, n: int, c: int) -> None:
        if n not in self.messages:
            self.messages[n] = prompts(n)
        messages = self.messages[n]
        slots = asyncio.Semaphore(c)
        self.failed = 0

        async def one(i: int) -> None:
            async with slots:
                resp = await self.router.acompletion(model="bench", messages=messages[i],
                                                     max_tokens=max_tokens(messages[i]))
                if not resp.choices:
                    self.failed += 1

        await asyncio.gather(*(one(i) for i in range(n)))

    def failures(self) -> int:
        return self.failed

    async def close(self) -> None:
        return None


TOOLS: dict[str, Any] = {"aiohttp": AiohttpSession, "httpx": HttpxPools, "httpx-1pool": HttpxOnePool,
                         "butler": ButlerTool, "litellm": LiteLLMTool, "lean": LeanSession}


def worker(tool: str, base_url: str) -> None:
    out = protocol_out()
    outside = network_guard()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        runner = TOOLS[tool](base_url)
        out.write(json.dumps({"ready": True}) + "\n")
        while True:
            # Read the next command off the loop's thread: background tasks keep running between rounds.
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            gc.collect()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await runner.round(cmd["n"], cmd["c"])
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            out.write(json.dumps({"wall": wall, "cpu": cpu, "failures": runner.failures(),
                                  "outside": list(outside)}) + "\n")
        await runner.close()

    asyncio.run(main())


# ---- goal 2: 1,000 sub-tasks through spawn_agent ------------------------------------------------------
def rss_now_kb() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def load(base_url: str, n: int, c: int, trace: bool, limit_per_key: int, budget: int, profile: bool = False) -> None:
    out = protocol_out()
    outside = network_guard()
    import tracemalloc

    from butler_skill.config import write_keys_file
    from butler_skill.handlers.agents import SpawnAgentInput, spawn_agent
    from butler_skill.host.context import Context
    from butler_skill.store.timestamps import ts
    from butler_skill.subagents.runner import SpawnOptions

    folder = Path(tempfile.mkdtemp(prefix="bench-load-"))

    def context(name: str, limit: int) -> Context:
        keys = folder / f"{name}.json"
        write_keys_file(keys, [{"id": f"fake-{k}", "provider": "openai", "scope": f"acct-{k}", "base_url": base_url,
                                "model": "fake-model", "key": "sk-bench-not-a-secret",
                                "limits": {"tokens_per_day": limit}} for k in (1, 2, 3)])
        return Context(env={"HOME": str(folder)}, keys_path=keys, state_path=folder / f"{name}.db")

    def spawn(ctx: Context, items: int, tokens: int) -> Any:
        return spawn_agent(ctx, SpawnAgentInput(name=TASK_NAME, description=description(items), budget=tokens,
                                                options=SpawnOptions(maxConcurrent=c)))

    warm = context("warm", 10**12)
    spawn(warm, 100, 100 * 1_000)  # imports, code paths, the SSL context: what a long-lived host has warm
    warm.close()

    # Where the time goes: plan (decompose, split, reserve every share), run (calls and settlements), the rest
    # (read back and aggregate). The plan is written inside the run's event loop while the first connections open
    # (runner.plan_and_run): "plan" is that call, "run" the rest of the loop's time. Timed by wrapping the two
    # steps; the wrappers cost nothing measurable.
    from butler_skill.handlers import agents
    from butler_skill.subagents import runner

    phases: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kw: Any) -> Any:
            c, t = time.process_time(), time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                phases[name] = [time.perf_counter() - t, time.process_time() - c]
        return wrapper

    runner.plan = timed("plan", runner.plan)
    agents.run_in_loop = timed("loop", agents.run_in_loop)

    ctx = context("run", limit_per_key)
    # Open (create and migrate) the run's ledger and read its keys before the clock starts: a host that runs
    # sub-agents has its ledger open already (creating one was 11-20 ms of the plan phase).
    ctx.ledger.totals(ctx.now())
    gc.collect()
    maxrss0, rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_now_kb()
    if trace:
        tracemalloc.start()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = spawn(ctx, n, budget)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    profiled = ""
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        profiled = text.getvalue()
    phases["run"] = [phases["loop"][0] - phases["plan"][0], phases["loop"][1] - phases["plan"][1]]
    traced_peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    maxrss1, rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_now_kb()

    day = ts(ctx.now())[:10]
    with ctx.db.read() as conn:
        keys = [dict(r) for r in conn.execute(
            "SELECT k.key_id, k.used, k.reserved,"
            " (SELECT COALESCE(SUM(s.allocated), 0) FROM sessions s WHERE s.key_id = k.key_id AND s.task_id = ?)"
            " AS granted FROM key_day_counters k WHERE k.day = ? ORDER BY k.key_id", (result.task_id, day))]
        ledger_used = conn.execute("SELECT COALESCE(SUM(u.total_tokens), 0) FROM usage_records u"
                                   " JOIN sessions s ON s.id = u.session_id WHERE s.task_id = ?",
                                   (result.task_id,)).fetchone()[0]
        open_sessions = conn.execute("SELECT COUNT(*) FROM sessions WHERE task_id = ? AND state = 'open'",
                                     (result.task_id,)).fetchone()[0]
    statuses: dict[str, int] = {}
    for r in result.results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    out.write(json.dumps({
        "wall": wall, "cpu": cpu, "maxrss_delta_kb": maxrss1 - maxrss0, "maxrss_kb": maxrss1,
        "rss_delta_kb": rss1 - rss0, "traced_peak": traced_peak, "statuses": statuses, "keys": keys,
        "limit": limit_per_key, "budget": budget, "task_used": sum(r.tokensUsed for r in result.results),
        "ledger_used": ledger_used, "open_sessions": open_sessions, "outside": outside, "phases": phases,
        "profile": profiled,
    }) + "\n")
    ctx.close()
    shutil.rmtree(folder, ignore_errors=True)


# ---- the report ---------------------------------------------------------------------------------------
LABELS = {
    "aiohttp": "bare aiohttp (floor)",
    "httpx": "bare httpx",
    "httpx-1pool": "bare httpx, one pool",
    "butler": "Butler plan+run_task",
    "litellm": "LiteLLM Router",
}


def goal1(n: int, reps: int, levels: list[int], have_litellm: bool, server_kind: str) -> tuple[bool, list[str]]:
    tools = ["aiohttp", "httpx", "httpx-1pool", "butler"] + (["litellm"] if have_litellm else [])
    server = Proc("--serve", "0", "11", "7", server_kind)
    outside: set[str] = set()
    try:
        url = server.line(60)
        workers = {t: Proc("--worker", t, url, env=LITELLM_ENV if t == "litellm" else None) for t in tools}
        try:
            for w in workers.values():
                assert json.loads(w.line(300))["ready"]
            for c in levels:  # warm-up: every tool, every concurrency, discarded
                for w in workers.values():
                    w.ask(n=n, c=c)
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {(t, c): [] for t in tools for c in levels}
            for rep in range(reps):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                for c in levels:
                    for t in order:
                        answer = workers[t].ask(n=n, c=c)
                        outside.update(answer["outside"])
                        runs[(t, c)].append(answer)
        finally:
            for w in workers.values():
                w.close()
    finally:
        server.close()

    print(f"\nGoal 1: Butler's overhead per sub-task vs LiteLLM's Router — {n} requests a round, {reps} rounds "
          f"each, zero-latency loopback provider (OpenAI format), median over rounds")
    print(f"  {'tool':<22} {'conc':>4}  {'wall/req':>9}  {'CPU/req':>9}  {'overhead/req':>12}  "
          f"{'CPU overhead/req':>16}  failures")
    met = []
    for c in levels:
        floor = runs[("aiohttp", c)]
        overhead: dict[str, float] = {}
        for t in tools:
            rs = runs[(t, c)]
            wall = statistics.median(r["wall"] for r in rs) / n * 1e3
            cpu = statistics.median(r["cpu"] for r in rs) / n * 1e3
            fails = sum(r["failures"] for r in rs)
            extra = ""
            if t in ("butler", "litellm"):
                pairs = list(zip(rs, floor, strict=True))
                overhead[t] = statistics.median(r["wall"] - f["wall"] for r, f in pairs) / n * 1e3
                cpu_over = statistics.median(r["cpu"] - f["cpu"] for r, f in pairs) / n * 1e3
                extra = f"{overhead[t]:+9.3f} ms  {cpu_over:+13.3f} ms"
            print(f"  {LABELS[t]:<22} {c:>4}  {wall:6.3f} ms  {cpu:6.3f} ms  {extra:>31}  {fails}")
        if "litellm" in overhead:
            met.append(overhead["butler"] < overhead["litellm"])
            ratio = overhead["litellm"] / overhead["butler"] if overhead["butler"] > 0 else math.inf
            print(f"  {'':<22} {c:>4}  Butler overhead {overhead['butler']:.3f} ms vs LiteLLM "
                  f"{overhead['litellm']:.3f} ms per request ({ratio:.1f}x less)")
    print(f"  connection attempts outside loopback (all workers): {len(outside)} {sorted(outside)[:5] or ''}")
    if not have_litellm:
        return False, ["GOAL 1 (less overhead per request than LiteLLM): not measured — litellm is not installed "
                       "(pip install -e '.[bench]')"]
    verdict = "MET" if all(met) else "NOT MET"
    where = ", ".join(f"c={c}" for c, ok in zip(levels, met, strict=True) if ok) or "none"
    return all(met), [f"GOAL 1 (less overhead per request than LiteLLM): {verdict} at {where} "
                      f"of c={','.join(map(str, levels))}"]


def goal2(n: int, c: int, latency_ms: int, reps: int, server_kind: str, profile: bool = False,
          floor_tools: tuple[str, ...] = ("aiohttp", "lean")) -> list[str]:
    prompt_tokens, completion_tokens = 600, 300  # what each answer reports: 900 of a 1,000-token share
    budget = n * 1_000
    limit = math.ceil(budget / 3 / 1_000) * 1_000 + 1_000  # three keys that together only just hold the budget
    server = Proc("--serve", str(latency_ms / 1000), str(prompt_tokens), str(completion_tokens), server_kind)
    floors: dict[str, list[dict[str, Any]]] = {tool: [] for tool in floor_tools}
    try:
        url = server.line(60)
        args = [url, str(n), str(c), str(limit), str(budget)]
        workers = {tool: Proc("--worker", tool, url) for tool in floors}
        runs = []
        try:
            for w in workers.values():
                assert json.loads(w.line(300))["ready"]
                w.ask(n=n, c=c)
            for _ in range(reps):  # interleaved: each floor, then Butler, in every repetition
                for tool, w in workers.items():
                    s0 = cpu_seconds(server.p.pid)
                    floors[tool].append({**w.ask(n=n, c=c), "server_cpu": cpu_seconds(server.p.pid) - s0})
                p = Proc("--load", *args, "0")
                try:
                    s0 = cpu_seconds(server.p.pid)
                    runs.append({**json.loads(p.line()), "server_cpu": cpu_seconds(server.p.pid) - s0})
                finally:
                    p.close()
        finally:
            for w in workers.values():
                w.close()
        p = Proc("--load", *args, "1")
        try:
            traced = json.loads(p.line())
        finally:
            p.close()
        if profile:  # one more run under cProfile (the loop's thread only; its time is not reported)
            p = Proc("--load", *args, "profile")
            try:
                profiled = json.loads(p.line())["profile"]
            finally:
                p.close()
    finally:
        server.close()
    if profile:
        print(f"\ncProfile of one more load run, the event loop's thread (SQLite writes run on the writer "
              f"thread and are not in it), top 30 by own time:\n{profiled}")

    ideal = n / c * latency_ms / 1000
    wall = statistics.median(r["wall"] for r in runs)
    print(f"\nGoal 2: {n:,} sub-tasks through spawn_agent at maxConcurrent {c}, provider latency {latency_ms} ms, "
          f"{reps} runs (fresh process each)")
    each = ", ".join(f"{r['wall'] * 1e3:,.0f}" for r in runs)
    print(f"  wall: median {wall * 1e3:,.0f} ms (runs: {each} ms); "
          f"ideal {n:,} / {c} x {latency_ms} ms = {ideal * 1e3:,.0f} ms -> {wall / ideal:.2f}x ideal")
    print(f"  CPU in Butler's process: median {statistics.median(r['cpu'] for r in runs) * 1e3:,.0f} ms "
          f"({statistics.median(r['cpu'] for r in runs) / n * 1e3:.2f} ms per sub-task)")
    phase = {k: [statistics.median(r["phases"][k][i] for r in runs) * 1e3 for i in (0, 1)] for k in ("plan", "run")}
    rest = [wall * 1e3 - phase["plan"][0] - phase["run"][0],
            statistics.median(r["cpu"] for r in runs) * 1e3 - phase["plan"][1] - phase["run"][1]]
    print(f"  where it goes (median wall / CPU ms): plan (split, reserve every share, while the first connections "
          f"open) {phase['plan'][0]:,.0f} / {phase['plan'][1]:,.0f}; run (the rest of the "
          f"event loop: decompose, connect, calls, group-committed settlements) "
          f"{phase['run'][0]:,.0f} / {phase['run'][1]:,.0f}; read back and aggregate {rest[0]:,.0f} / {rest[1]:,.0f}")
    print(f"  fake provider's CPU during Butler's runs: median "
          f"{statistics.median(r['server_cpu'] for r in runs) * 1e3:,.0f} ms ({server_kind} server)")
    main_floor = "lean" if "lean" in floors else next(iter(floors))
    floor_wall = statistics.median(r["wall"] for r in floors[main_floor])
    for tool, rs in floors.items():
        fw = statistics.median(r["wall"] for r in rs)
        each = ", ".join(f"{r['wall'] * 1e3:,.0f}" for r in rs)
        print(f"  same {n:,} requests, bare {tool}, same concurrency: median {fw * 1e3:,.0f} ms ({fw / ideal:.2f}x "
              f"ideal; runs {each}), client CPU "
              f"{statistics.median(r['cpu'] for r in rs) * 1e3:,.0f} ms, server CPU "
              f"{statistics.median(r['server_cpu'] for r in rs) * 1e3:,.0f} ms")
    for tool, rs in floors.items():
        # Each Butler run against the floor's run just before it (interleaved: a busy spell hits both alike).
        pairs = list(zip(runs, rs, strict=True))
        print(f"  Butler adds {(wall - statistics.median(r['wall'] for r in rs)) / n * 1e3:.2f} ms per sub-task over "
              f"the bare {tool} floor (medians); run by run, Butler / floor: median "
              f"{statistics.median(b['wall'] / f['wall'] for b, f in pairs):.3f}")
    print(f"  memory: ru_maxrss grew {statistics.median(r['maxrss_delta_kb'] for r in runs) / 1024:.1f} MiB "
          f"(median; peak RSS {statistics.median(r['maxrss_kb'] for r in runs) / 1024:.0f} MiB after a 100-sub-task "
          f"warm-up), tracemalloc peak {traced['traced_peak'] / 2**20:.1f} MiB "
          f"({traced['traced_peak'] / n / 1024:.1f} KiB per sub-task)")
    overshoot_keys = 0
    overshoot_task = 0
    problems = []
    for i, r in enumerate([*runs, traced], start=1):
        for k in r["keys"]:
            overshoot_keys += max(0, k["granted"] - r["limit"]) + max(0, k["used"] + k["reserved"] - r["limit"])
        overshoot_task += max(0, r["task_used"] - r["budget"])
        if r["statuses"] != {"success": n}:
            problems.append(f"run {i}: {r['statuses']}")
        if r["open_sessions"] or r["ledger_used"] != r["task_used"] or any(k["reserved"] for k in r["keys"]):
            problems.append(f"run {i}: open sessions {r['open_sessions']}, ledger {r['ledger_used']:,} vs "
                            f"results {r['task_used']:,}, reserved left {[k['reserved'] for k in r['keys']]}")
    last = runs[-1]
    per_key = "; ".join(f"{k['key_id']} granted {k['granted']:,} used {k['used']:,} reserved {k['reserved']:,}"
                        for k in last["keys"])
    print(f"  budget: task {budget:,} tokens, three keys of {limit:,}/day; last run: {per_key}; "
          f"sub-task usage {last['task_used']:,} (ledger {last['ledger_used']:,})")
    print(f"  overshoot over {reps + 1} runs: keys {overshoot_keys:,} tokens, task {overshoot_task:,} tokens; "
          f"sub-tasks: {last['statuses']}; {'; '.join(problems) or 'no open sessions or reservations left'}")
    outside = {x for r in [*runs, traced] for x in r["outside"]}
    print(f"  connection attempts outside loopback: {len(outside)}")
    zero = overshoot_keys == 0 and overshoot_task == 0 and not problems
    return [f"GOAL 2 ({n:,} sub-tasks at maxConcurrent {c}, {latency_ms} ms provider): zero overshoot "
            f"{'MET' if zero else 'NOT MET'}; wall {wall * 1e3:,.0f} ms = {wall / ideal:.2f}x the "
            f"{ideal * 1e3:,.0f} ms ideal (the bare {main_floor} floor alone: {floor_wall / ideal:.2f}x); memory "
            f"+{statistics.median(r['maxrss_delta_kb'] for r in runs) / 1024:.0f} MiB RSS, "
            f"tracemalloc peak {traced['traced_peak'] / 2**20:.0f} MiB"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, n, c, limit, budget, mode = sys.argv[2:8]
        load(url, int(n), int(c), mode == "1", int(limit), int(budget), profile=mode == "profile")
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400, help="requests per round in goal 1")
    parser.add_argument("--reps", type=int, default=5, help="measured rounds per tool and concurrency in goal 1")
    parser.add_argument("--concurrency", default="1,10,100", help="goal 1's concurrency levels")
    parser.add_argument("--load-n", type=int, default=1_000)
    parser.add_argument("--load-concurrency", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--load-reps", type=int, default=3)
    parser.add_argument("--load-only", action="store_true", help="skip goal 1 (the per-request overhead)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one more load run")
    parser.add_argument("--floors", default="aiohttp,lean",
                        help="bare clients run beside Butler in goal 2: aiohttp, lean (Butler's own client), httpx")
    parser.add_argument("--server", choices=("fast", "threaded"), default="fast",
                        help="the fake provider: one asyncio loop (default) or fake_llm's thread per connection")
    args = parser.parse_args()
    try:
        import importlib.metadata as md

        have_litellm = True
        litellm_version = md.version("litellm")
    except md.PackageNotFoundError:
        have_litellm, litellm_version = False, "not installed"
    import aiohttp
    import httpx

    print(f"machine: {machine()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; aiohttp {aiohttp.__version__}, "
          f"httpx {httpx.__version__}, litellm {litellm_version}; fake provider: {args.server}")
    levels = [int(x) for x in args.concurrency.split(",")]
    verdicts = [] if args.load_only else goal1(args.n, args.reps, levels, have_litellm, args.server)[1]
    verdicts += goal2(args.load_n, args.load_concurrency, args.latency_ms, args.load_reps, args.server,
                      args.profile, tuple(args.floors.split(",")))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
