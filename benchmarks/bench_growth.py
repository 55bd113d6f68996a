"""Growth (issue 12): per-call latency of the token tools as history and the key count grow.

A ledger is seeded directly with SQL (sessions, usage records, events and alerts spread over the last 30
days, counters for every key and day), then each tool is called in process through the host's dispatch
(input and output validation included, as over MCP). Goal: flat in history; the key count costs what the
answer itself costs (one row per key).

Run: .venv/bin/python benchmarks/bench_growth.py [--history 10,1000,100000,1000000] [--keys 8,100,1000,10000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, pct

from butler_skill.config import write_keys_file
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
DAYS = 30


def keys_file(path: Path, n: int) -> None:
    providers = ("groq", "openai", "anthropic", "nvidia")
    write_keys_file(path, [{"id": f"k{i:05d}", "provider": providers[i % 4], "scope": f"acct-{i // 2}",
                            "limits": {"tokens_per_day": 10**12}} for i in range(n)], force=True)


def seed(db: Path, keys: int, history: int) -> None:
    """`history` closed sessions with one usage record, one event each, an alert per 10, over 30 days."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    start = (NOW - timedelta(days=DAYS)).timestamp()
    step = DAYS * 86_400 / max(1, history)
    # One SQL statement per table (the rows differ by their number i): a million rows take seconds, not minutes.
    series = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    stamp = "strftime('%Y-%m-%dT%H:%M:%S.000000Z', ? + i * ?, 'unixepoch')"
    day = "strftime('%Y-%m-%d', ? + i * ?, 'unixepoch')"
    key = "printf('k%05d', i % ?)"
    conn.execute(
        series + "INSERT INTO sessions(id, label, task_id, key_id, allocated, used, cost_usd, threshold_ratio, leg_day,"
        f" leg_granted, leg_held, leg_used, lease_expires_at, state, created_at, updated_at, closed_at)"
        f" SELECT printf('ses_old%09d', i), NULL, NULL, {key}, 1000, 900, 0.001, 0.75, {day}, 1000, 0, 900,"
        f" {stamp}, 'closed', {stamp}, {stamp}, {stamp} FROM n",
        (history - 1, keys, start, step, start, step, start, step, start, step, start, step))
    conn.execute(
        series + "INSERT INTO usage_records(request_id, session_id, key_id, day, input_tokens, output_tokens,"
        " total_tokens, cost_usd, recorded_at)"
        f" SELECT printf('req_old%09d', i), printf('ses_old%09d', i), {key}, {day}, 600, 300, 900, 0.001, {stamp}"
        " FROM n", (history - 1, keys, start, step, start, step))
    conn.execute(
        series + "INSERT INTO events(at, kind, session_id, key_id, data)"
        f" SELECT {stamp}, CASE WHEN i % 5 = 0 THEN 'rotation' ELSE 'closed' END, printf('ses_old%09d', i), {key},"
        " '{}' FROM n", (history - 1, start, step, keys))
    conn.execute(
        series + "INSERT INTO alerts(id, session_id, key_id, kind, message, created_at, resolved_at)"
        f" SELECT printf('alr_old%09d', i), printf('ses_old%09d', i), {key}, 'rotation_threshold', 'old', {stamp},"
        f" {stamp} FROM n WHERE i % 10 = 0", (history - 1, keys, start, step, start, step))
    for d in range(DAYS + 1):
        the_day = (NOW - timedelta(days=DAYS - d)).strftime("%Y-%m-%d")
        conn.execute(series + "INSERT INTO key_day_counters(key_id, day, used, reserved, cost_usd)"
                     " SELECT printf('k%05d', i), ?, 1000, 0, 0.01 FROM n WHERE 1 ON CONFLICT DO NOTHING",
                     (keys - 1, the_day))
    conn.execute("INSERT INTO key_cooldowns(key_id, until, reason, strikes, updated_at)"
                 " SELECT key_id, '2026-06-01T00:00:00.000000Z', 'rate_limit', 1, '2026-06-01T00:00:00.000000Z'"
                 " FROM key_day_counters WHERE day = ? ON CONFLICT DO NOTHING",
                 ((NOW - timedelta(days=DAYS)).strftime("%Y-%m-%d"),))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the seed's WAL must not be flushed inside a timed call
    conn.close()


def timed(calls: int, fn: Callable[[int], object]) -> tuple[float, float]:
    fn(-1)  # warm
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    ms = [s * 1e3 for s in samples]
    return statistics.median(ms), pct(ms, 0.99)


def ok(envelope: dict) -> dict:
    assert envelope["ok"], envelope
    return envelope["result"]


def measure(folder: Path, keys: int, history: int, calls: int) -> dict[str, tuple[float, float]]:
    keys_path, state = folder / f"keys-{keys}.json", folder / f"state-{keys}-{history}.db"
    keys_file(keys_path, keys)
    for old in folder.glob(f"{state.name}*"):
        old.unlink()
    ctx = Context(env={"HOME": str(folder)}, keys_path=keys_path, state_path=state, clock=lambda: NOW)
    ctx.db.migrate()
    started = time.perf_counter()
    seed(state, keys, history)
    seeded = time.perf_counter() - started
    sessions: list[str] = []

    def allocate(i: int) -> None:
        sessions.append(ok(call_tool("allocate_tokens", {"prd_text": "x", "tokens": 1_000}, ctx))["session_id"])

    def settle(i: int) -> None:
        ok(call_tool("record_usage", {"session_id": sessions[i + 1], "request_id": f"r{i}", "input_tokens": 500,
                                      "output_tokens": 100, "close": True}, ctx))

    results = {
        "allocate_tokens": timed(calls, allocate),
        "record_usage": timed(calls, settle),
        "get_available_keys": timed(calls, lambda i: ok(call_tool("get_available_keys", {}, ctx))),
        "monitor_usage": timed(calls, lambda i: ok(call_tool("monitor_usage", {}, ctx))),
        "get_status": timed(calls, lambda i: ok(call_tool("get_status", {}, ctx))),
    }
    ctx.close()
    print(f"  (keys {keys:,}, history {history:,}: seeded in {seeded:.1f} s)", flush=True)
    return results


def table(title: str, label: str, rows: list[tuple[int, dict[str, tuple[float, float]]]]) -> None:
    tools = list(rows[0][1])
    print(f"\n{title} - median ms (p99 ms) per call")
    print(f"| {label} | " + " | ".join(tools) + " |")
    print("|---:|" + "---:|" * len(tools))
    for n, res in rows:
        print(f"| {n:,} | " + " | ".join(f"{res[t][0]:.2f} ({res[t][1]:.2f})" for t in tools) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", default="10,1000,100000,1000000")
    parser.add_argument("--keys", default="8,100,1000,10000")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        by_history = [(h, measure(folder, 8, h, args.calls)) for h in map(int, args.history.split(","))]
        table("History (8 keys; past sessions = usage records = events, over 30 days)", "past sessions", by_history)
        by_keys = [(k, measure(folder, k, 1000, args.calls)) for k in map(int, args.keys.split(","))]
        table("Keys (1,000 past sessions)", "keys", by_keys)


if __name__ == "__main__":
    main()
