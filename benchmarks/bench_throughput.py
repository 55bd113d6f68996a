"""Throughput (issue 12): 1, 2, 4 and 8 processes allocating and settling on one SQLite ledger.

Each process runs allocate_tokens then record_usage (closing the session) through the host's dispatch, as fast
as it can, for a fixed number of rounds. Reported: operations per second over all processes (one operation =
one tool call), the p99 of one call, and every error (a lock error would show here: `database is locked`).

Run: .venv/bin/python benchmarks/bench_throughput.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, pct

from butler_skill.config import write_keys_file
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool


def worker(folder: str, rounds: int, start_at: float, out: mp.Queue) -> None:
    base = Path(folder)
    ctx = Context(env={"HOME": folder}, keys_path=base / "keys.json", state_path=base / "state.db")
    call_tool("get_status", {}, ctx)  # warm: config, connection, validators
    samples: list[float] = []
    errors: list[str] = []
    while time.time() < start_at:
        time.sleep(0.001)
    begin = time.perf_counter()
    for i in range(rounds):
        t0 = time.perf_counter()
        got = call_tool("allocate_tokens", {"prd_text": "x", "tokens": 100}, ctx)
        t1 = time.perf_counter()
        if not got["ok"]:
            errors.append(got["error"]["code"] + ": " + got["error"]["message"])
            continue
        settled = call_tool("record_usage", {"session_id": got["result"]["session_id"],
                                             "request_id": f"r{os.getpid()}-{i}", "input_tokens": 60,
                                             "output_tokens": 20, "close": True}, ctx)
        t2 = time.perf_counter()
        if not settled["ok"]:
            errors.append(settled["error"]["code"] + ": " + settled["error"]["message"])
        samples += [t1 - t0, t2 - t1]
    out.put((samples, errors, time.perf_counter() - begin))
    ctx.close()


def run(processes: int, rounds: int) -> tuple[float, float, float, int, list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_keys_file(folder / "keys.json", [
            {"id": f"k{i}", "provider": "groq", "limits": {"tokens_per_day": 10**12}} for i in range(8)])
        Context(env={}, keys_path=folder / "keys.json", state_path=folder / "state.db").db.close()
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        start_at = time.time() + 3 + processes * 0.5  # every process warm before the first call
        procs = [ctx.Process(target=worker, args=(tmp, rounds, start_at, out)) for _ in range(processes)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        check = Context(env={}, keys_path=folder / "keys.json", state_path=folder / "state.db")
        totals = check.ledger.totals(check.now())
        check.close()
    samples = [s for r in results for s in r[0]]
    errors = [e for r in results for e in r[1]]
    wall = max(r[2] for r in results)
    ms = [s * 1e3 for s in samples]
    assert totals["reserved"] == 0, totals  # every session closed: nothing may stay held
    return len(samples) / wall, statistics.median(ms), pct(ms, 0.99), len(errors), errors[:3]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"\n{args.rounds} rounds of allocate_tokens + record_usage(close) per process, one SQLite ledger")
    print("| processes | ops/s | median ms | p99 ms | errors |")
    print("|---:|---:|---:|---:|---:|")
    for n in (1, 2, 4, 8):
        ops, med, p99, n_err, sample = run(n, args.rounds)
        print(f"| {n} | {ops:,.0f} | {med:.2f} | {p99:.2f} | {n_err} |", flush=True)
        for e in sample:
            print(f"    error: {e}")


if __name__ == "__main__":
    main()
