"""Growth (issue 12): per-call latency of every tool whose cost could depend on the ledger, and of one gateway
request, as history and the key count grow.

A ledger is seeded directly with SQL (sessions, usage records, events and alerts spread over the last 30
days, half of the sessions belonging to planned tasks with their sub-tasks, a few treasury top-ups, counters for
every key and day). Seeded ledgers are built once into a cache folder (default /tmp/butler-growth-cache,
`--cache`) and copied for each run, so a 1,000,000-session ledger is built once per UTC day (history is dated
relative to the day it was built; the gateway reads the real clock). Each tool is then called in process
through the host's dispatch (input and output validation included, as over MCP); the gateway row is a real
`butler serve` (uvicorn, its own process) on the same ledger in front of a loopback provider (the one of
bench_gateway.py, its own process): one non-streaming chat completion per sample over a keep-alive connection.

Every key points at that loopback provider, so `spawn_agent` runs its sub-agents over real HTTP too. Not timed:
`scan_secrets` (it reads files, never the ledger, so it cannot grow with history or keys) and
`treasury_autobuy` beyond a dry-run evaluation (executing needs a wallet; see bench-free tests).

Goal: flat in history; the key count costs what the answer itself costs (one row per key).

Run: .venv/bin/python benchmarks/bench_growth.py [--history 10,1000,100000,1000000] [--keys 8,100,1000,10000]
     [--calls 200] [--max-seconds 6] [--no-gateway] [--explain]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, pct
from bench_gateway import BODY, free_port, wait_port

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.store.db import Database

ROOT = Path(__file__).resolve().parent.parent
DAYS = 30
SEED_VERSION = 3  # bump when seed() changes: cached ledgers of another version are rebuilt
PROVIDERS = ("groq", "openai", "nvidia", "custom")  # OpenAI wire format: the gateway's /v1/chat/completions
TOOLS = ("allocate_tokens", "record_usage", "rotate_key", "get_available_keys", "monitor_usage", "get_status",
         "plan_agents", "submit_result", "aggregate_task_results", "retry_failed_tasks", "spawn_agent",
         "treasury_status", "treasury_autobuy", "gateway")


def today_noon() -> datetime:
    """The moment the in-process tools see: noon of the real UTC day (the gateway reads the real clock)."""
    return datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


SECRET_ENV = "BUTLER_GROWTH_KEY"  # every loopback key's secret, by reference (keeps 10,000 keys under 1 MB)
SECRET = "sk-growth-" + "x" * 32
LOOPBACK_KEYS = 1_000  # keys past this many run on the built-in demo provider (no network, no secret)


def keys_file(path: Path, n: int, provider_port: int) -> None:
    """`n` keys: the first 1,000 on the loopback provider (model gpt-bench, the gateway's), the rest on the
    demo provider (a keys file is at most 1 MB; 10,000 keys with URLs would not fit). Compact JSON, 0600."""
    keys: list[dict[str, Any]] = []
    for i in range(n):
        if i < LOOPBACK_KEYS:
            keys.append({"id": f"k{i:05d}", "provider": PROVIDERS[i % 4], "scope": f"a{i // 2}", "key_env": SECRET_ENV,
                         "model": "gpt-bench", "base_url": f"http://127.0.0.1:{provider_port}/v1",
                         "limits": {"tokens_per_day": 10**12}})
        else:
            keys.append({"id": f"k{i:05d}", "provider": "demo", "limits": {"tokens_per_day": 10**12}})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"keys": keys}, fh, separators=(",", ":"))


def seed(db: Path, keys: int, history: int, now: datetime) -> None:
    """`history` closed sessions with one usage record and one event each, an alert per 10, over 30 days; every
    other session belongs to a planned task (10 sub-tasks a task, one session each); one treasury top-up per
    1,000 sessions."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    start = (now - timedelta(days=DAYS)).timestamp()
    step = DAYS * 86_400 / max(1, history)
    # One SQL statement per table (the rows differ by their number i): a million rows take seconds, not minutes.
    series = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    stamp = "strftime('%Y-%m-%dT%H:%M:%S.000000Z', ? + i * ?, 'unixepoch')"
    day = "strftime('%Y-%m-%d', ? + i * ?, 'unixepoch')"
    key = "printf('k%05d', i % ?)"
    task = "CASE WHEN i % 2 = 0 THEN printf('tsk_old%09d', i / 20) END"
    label = "CASE WHEN i % 2 = 0 THEN printf('st%d', (i / 2) % 10) ELSE printf('agent-%d', i % 7) END"
    conn.execute(
        series + "INSERT INTO sessions(id, label, task_id, key_id, allocated, used, cost_usd, cost_pusd,"
        " threshold_ratio, leg_day, leg_granted, leg_held, leg_used, lease_expires_at, state, created_at,"
        " updated_at, closed_at)"
        f" SELECT printf('ses_old%09d', i), {label}, {task}, {key}, 1000, 900, 0.001, 1000000000, 0.75, {day},"
        f" 1000, 0, 900, {stamp}, 'closed', {stamp}, {stamp}, {stamp} FROM n",
        (history - 1, keys, start, step, start, step, start, step, start, step, start, step))
    conn.execute(
        series + "INSERT INTO tasks(id, name, description, budget, mode, options, created_at, updated_at)"
        f" SELECT printf('tsk_old%09d', i / 20), 'old task', '1. a\n2. b', 10000, 'plan', '{{}}', {stamp}, {stamp}"
        " FROM n WHERE i % 20 = 0", (history - 1, start, step, start, step))
    conn.execute(
        series + "INSERT INTO subtasks(task_id, id, position, title, text, kind, priority, weight_bp,"
        " estimated_tokens, share, depends_on, session_id, status, output, attempts, updated_at)"
        " SELECT printf('tsk_old%09d', i / 20), printf('st%d', (i / 2) % 10), (i / 2) % 10, 'step', 'do it',"
        f" 'general', 'normal', 1000, 1000, 1000, '[]', printf('ses_old%09d', i), 'success', 'done', 1, {stamp}"
        " FROM n WHERE i % 2 = 0", (history - 1, start, step))
    conn.execute(
        series + "INSERT INTO usage_records(request_id, session_id, key_id, day, input_tokens, output_tokens,"
        " total_tokens, cost_usd, cost_pusd, recorded_at)"
        f" SELECT printf('req_old%09d', i), printf('ses_old%09d', i), {key}, {day}, 600, 300, 900, 0.001,"
        f" 1000000000, {stamp} FROM n", (history - 1, keys, start, step, start, step))
    conn.execute(
        series + "INSERT INTO events(at, kind, session_id, key_id, data)"
        f" SELECT {stamp}, CASE WHEN i % 5 = 0 THEN 'rotation' ELSE 'closed' END, printf('ses_old%09d', i), {key},"
        " '{}' FROM n", (history - 1, start, step, keys))
    conn.execute(
        series + "INSERT INTO alerts(id, session_id, key_id, kind, message, created_at, resolved_at)"
        f" SELECT printf('alr_old%09d', i), printf('ses_old%09d', i), {key}, 'rotation_threshold', 'old', {stamp},"
        f" {stamp} FROM n WHERE i % 10 = 0", (history - 1, keys, start, step, start, step))
    conn.execute(
        series + "INSERT INTO treasury_intents(id, idempotency_key, provider, destination, amount, reason, state,"
        " created_at, updated_at, sent_at, settled_at)"
        " SELECT printf('int_old%09d', i), printf('idem-%09d', i), 'openrouter', '0xabc', '5', 'top-up', 'complete',"
        f" {stamp}, {stamp}, {stamp}, {stamp} FROM n WHERE i % 1000 = 999",
        (history - 1, start, step, start, step, start, step, start, step))
    for d in range(DAYS + 1):
        the_day = (now - timedelta(days=DAYS - d)).strftime("%Y-%m-%d")
        conn.execute(series + "INSERT INTO key_day_counters(key_id, day, used, reserved, cost_usd, cost_pusd)"
                     " SELECT printf('k%05d', i), ?, 1000, 0, 0.01, 10000000000 FROM n WHERE 1"
                     " ON CONFLICT DO NOTHING", (keys - 1, the_day))
    conn.execute("INSERT INTO key_cooldowns(key_id, until, reason, strikes, updated_at)"
                 " SELECT key_id, ?, 'rate_limit', 1, ? FROM key_day_counters WHERE day = ? ON CONFLICT DO NOTHING",
                 ((now - timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                  (now - timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                  (now - timedelta(days=DAYS)).strftime("%Y-%m-%d")))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the seed's WAL must not be flushed inside a timed call
    conn.close()


def cached_ledger(cache: Path, keys: int, history: int, now: datetime) -> Path:
    """The seeded ledger for (keys, history), built once per UTC day into `cache`, migrated to the current schema."""
    path = cache / f"growth-v{SEED_VERSION}-{now:%Y%m%d}-{keys}k-{history}h.db"
    if not path.exists():
        for stale in cache.glob(f"growth-*-{keys}k-{history}h.db*"):
            stale.unlink()
        building = path.with_suffix(".building")
        for old in cache.glob(f"{building.name}*"):
            old.unlink()
        print(f"  building the ledger: {keys:,} keys, {history:,} past sessions ...", flush=True)
        started = time.perf_counter()
        db = Database(building)
        db.migrate()
        db.close()
        seed(building, keys, history, now)
        building.rename(path)
        print(f"  built in {time.perf_counter() - started:.1f} s -> {path}", flush=True)
    # A cached ledger older than the code's schema gets the new migrations once, in place.
    db = Database(path)
    applied = db.migrate()
    db.close()
    if applied:
        with sqlite3.connect(path) as conn:
            conn.execute("ANALYZE")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"  migrated the cached ledger to {applied}", flush=True)
    return path


def timed(calls: int, max_s: float, fn: Callable[[int], object],
          prepare: Callable[[int], object] | None = None) -> tuple[float, float, int]:
    """Median and p99 ms of `fn(i)` over `calls` samples, or fewer when they take more than `max_s` (at least
    5); `prepare(i)` runs untimed before each sample. A warm-up call (i=-1) comes first."""
    if prepare:
        prepare(-1)
    fn(-1)
    samples: list[float] = []
    spent = time.perf_counter()
    for i in range(calls):
        if prepare:
            prepare(i)
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1e3)
        if len(samples) >= 5 and time.perf_counter() - spent > max_s:
            break
    return statistics.median(samples), pct(samples, 0.99), len(samples)


def ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["ok"], envelope
    return envelope["result"]


def tool_samples(ctx: Context, calls: int, max_s: float) -> dict[str, tuple[float, float, int]]:
    def call(tool: str, args: dict[str, Any]) -> dict[str, Any]:
        return ok(call_tool(tool, args, ctx))

    out: dict[str, tuple[float, float, int]] = {}
    sessions: list[str] = []
    out["allocate_tokens"] = timed(calls, max_s, lambda i: sessions.append(
        call("allocate_tokens", {"prd_text": "x", "tokens": 1_000})["session_id"]))
    out["record_usage"] = timed(len(sessions) - 1, max_s, lambda i: call("record_usage", {
        "session_id": sessions[i + 1], "request_id": f"r{i}", "input_tokens": 500, "output_tokens": 100,
        "close": True}))
    fresh: list[str] = []
    out["rotate_key"] = timed(calls, max_s, lambda i: call("rotate_key", {"session_id": fresh[-1]}),
                              prepare=lambda i: fresh.append(call("allocate_tokens", {"prd_text": "x",
                                                                                      "tokens": 1_000})["session_id"]))
    for tool in ("get_available_keys", "monitor_usage", "get_status"):
        out[tool] = timed(calls, max_s, lambda i, tool=tool: call(tool, {}))
    plans: list[dict[str, Any]] = []
    plan = {"name": "growth", "description": "1. Write the intro\n2. Write the body\n3. Review both", "budget": 6_000}
    out["plan_agents"] = timed(calls, max_s, lambda i: plans.append(call("plan_agents", plan)))
    out["submit_result"] = timed(len(plans) - 1, max_s, lambda i: call("submit_result", {
        "session_id": plans[i + 1]["agents"][0]["session_id"], "status": "success", "output": "ok",
        "usage": {"input_tokens": 300, "output_tokens": 200}}))
    old_task = "tsk_old000000000"
    out["aggregate_task_results"] = timed(calls, max_s, lambda i: call("aggregate_task_results",
                                                                       {"task_id": old_task}))
    failing: list[str] = []

    def fail_one(i: int) -> None:
        planned = call("plan_agents", plan)
        call("submit_result", {"session_id": planned["agents"][0]["session_id"], "status": "failed",
                               "error": "boom", "usage": {"input_tokens": 100, "output_tokens": 10}})
        failing.append(planned["task_id"])

    out["retry_failed_tasks"] = timed(calls, max_s, lambda i: call("retry_failed_tasks", {"task_id": failing[-1]}),
                                      prepare=fail_one)
    spawn = {"name": "growth", "description": "1. Say hello\n2. Say goodbye", "budget": 2_000,
             "options": {"maxConcurrent": 2, "backoffBaseMs": 1}}
    out["spawn_agent"] = timed(calls, max_s, lambda i: call("spawn_agent", spawn))
    out["treasury_status"] = timed(calls, max_s, lambda i: call("treasury_status", {"refresh": False}))
    out["treasury_autobuy"] = timed(calls, max_s, lambda i: call("treasury_autobuy", {"mode": "evaluate"}))
    return out


def gateway_samples(folder: Path, state: Path, keys_path: Path, ctx: Context, calls: int,
                    max_s: float) -> tuple[float, float, int]:
    """One non-streaming chat completion per sample through a real `butler serve` on this ledger."""
    from butler_skill.gateway.tokens import create_token

    _, secret = create_token(ctx, "growth", daily_budget=10**15)
    env = {**os.environ, "BUTLER_KEYS_PATH": str(keys_path), "BUTLER_STATE_PATH": str(state), "HOME": str(folder),
           SECRET_ENV: SECRET}
    port = free_port()
    butler = str(ROOT / ".venv/bin/butler") if (ROOT / ".venv/bin/butler").exists() else "butler"
    proc = subprocess.Popen([butler, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        body = json.dumps(BODY).encode()
        headers = {"content-type": "application/json", "authorization": f"Bearer {secret}"}

        def request(i: int) -> None:
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"gateway answered {resp.status}: {data[:300]!r}")

        for i in range(20):  # warm: imports, first connections to the provider
            request(i)
        result = timed(calls, max_s, request)
        conn.close()
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(work: Path, cache: Path, keys: int, history: int, args: argparse.Namespace, provider_port: int,
            now: datetime) -> dict[str, tuple[float, float, int]]:
    source = cached_ledger(cache, keys, history, now)
    for old in work.glob("state.db*"):
        old.unlink()
    state, keys_path = work / "state.db", work / "keys.json"
    shutil.copyfile(source, state)
    # Flushed before timing: else the first WAL checkpoint's fsync writes the whole fresh copy (0.4 s for the
    # 1,000,000-session ledger), a cost of this benchmark's copying, not of the tools.
    fd = os.open(state, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    keys_file(keys_path, keys, provider_port)
    started = time.perf_counter()
    ctx = Context(env={"HOME": str(work), SECRET_ENV: SECRET}, keys_path=keys_path, state_path=state,
                  clock=lambda: now)
    results = tool_samples(ctx, args.calls, args.max_seconds)
    if args.explain:
        explain(ctx)
    if not args.no_gateway:
        results["gateway"] = gateway_samples(work, state, keys_path, ctx, args.calls, args.max_seconds)
    ctx.close()
    print(f"  (keys {keys:,}, history {history:,}: measured in {time.perf_counter() - started:.0f} s; load average "
          f"{os.getloadavg()[0]:.1f})", flush=True)
    return results


def explain(ctx: Context) -> None:
    """Print the plan of every statement the ledger ran that scans a table (SQLite's trace of this process)."""
    conn = sqlite3.connect(ctx.config.state_path)
    seen: set[str] = set()
    trace = ctx.db._connection()  # a benchmark looks inside
    statements: list[str] = []
    trace.set_trace_callback(statements.append)
    for tool in ("allocate_tokens", "get_available_keys", "monitor_usage", "get_status", "treasury_status"):
        args: dict[str, Any] = {"prd_text": "x", "tokens": 10} if tool == "allocate_tokens" else {}
        call_tool(tool, {**args, **({"refresh": False} if tool == "treasury_status" else {})}, ctx)
    trace.set_trace_callback(None)
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "WITH", "DELETE")) or sql in seen:
            continue
        seen.add(sql)
        try:
            plan = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
        except sqlite3.Error:
            continue
        scans = [p[3] for p in plan if p[3].startswith("SCAN") and "USING" not in p[3]]
        if scans:
            print(f"    SCAN: {sql[:160]} -> {scans}")
    conn.close()


def table(title: str, label: str, rows: list[tuple[int, dict[str, tuple[float, float, int]]]]) -> None:
    tools = [t for t in TOOLS if t in rows[0][1]]
    print(f"\n{title} - median ms per call (p99 ms; samples)")
    print(f"| {label} | " + " | ".join(tools) + " |")
    print("|---:|" + "---:|" * len(tools))
    for n, res in rows:
        print(f"| {n:,} | " + " | ".join(f"{res[t][0]:.2f} ({res[t][1]:.2f}; {res[t][2]})" for t in tools) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", default="10,1000,100000,1000000")
    parser.add_argument("--keys", default="8,100,1000,10000")
    parser.add_argument("--keys-history", type=int, default=1000, help="past sessions of the keys curve")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=6.0, help="per tool and size; at least 5 samples")
    parser.add_argument("--cache", default="/tmp/butler-growth-cache")
    parser.add_argument("--no-gateway", action="store_true")
    parser.add_argument("--explain", action="store_true", help="print every full-table scan the read tools run")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f"work-{os.getpid()}"
    work.mkdir()
    now = today_noon()
    provider_port = free_port()
    provider = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bench_gateway.py")), "--provider",
                                 str(provider_port)])
    try:
        wait_port(provider_port, provider)
        by_history = []
        for h in map(int, args.history.split(",")):
            by_history.append((h, measure(work, cache, 8, h, args, provider_port, now)))
            table("History (8 keys; past sessions = usage records = events, over 30 days)", "past sessions",
                  by_history)
        by_keys = []
        for k in map(int, args.keys.split(",")):
            by_keys.append((k, measure(work, cache, k, args.keys_history, args, provider_port, now)))
            table(f"Keys ({args.keys_history:,} past sessions)", "keys", by_keys)
    finally:
        provider.terminate()
        provider.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
