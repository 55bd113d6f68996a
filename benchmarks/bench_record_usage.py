"""One settlement's cost: `record_usage` (the handler, in process, durable SQLite commit) per call, wall and CPU.

Run: .venv/bin/python benchmarks/bench_record_usage.py [--calls 2000] [--runs 8] [--compare main]

Each run is a fresh process: 20 sessions allocated with room to spare, one warm-up report, then `--calls` reports
of 150 tokens round-robin over them (never a rotation, never a close), each timed (perf_counter) with this thread's
CPU time (thread_time: what waiting for a core cannot inflate). With `--compare GIT_REF`, GIT_REF's code
(`git archive` of the package and what its manifest links to) runs in processes interleaved with this tree's, so a
busy neighbour slows both alike; medians of the runs' medians side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(calls: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from butler_skill.config import write_keys_file
    from butler_skill.handlers import tokens as t
    from butler_skill.host.context import Context

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keys = folder / "keys.json"
        write_keys_file(keys, [{"id": "k1", "provider": "groq", "limits": {"tokens_per_day": 10**12}},
                               {"id": "k2", "provider": "openai", "limits": {"tokens_per_day": 10**12}}])
        ctx = Context(env={"HOME": str(folder)}, keys_path=keys, state_path=folder / "state.db")
        sids = [t.allocate_tokens(ctx, t.AllocateTokensInput(prd_text="x", tokens=10**8)).session_id
                for _ in range(20)]
        t.record_usage(ctx, t.RecordUsageInput(session_id=sids[0], request_id="warm", input_tokens=10,
                                               output_tokens=5))
        inputs = [t.RecordUsageInput(session_id=sids[i % 20], request_id=f"r{i}", input_tokens=100, output_tokens=50)
                  for i in range(calls)]
        wall, cpu = [], []
        for inp in inputs:
            w0, c0 = time.perf_counter(), time.thread_time()
            t.record_usage(ctx, inp)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
        ctx.close()
    print(json.dumps({"wall": statistics.median(wall), "cpu": statistics.median(cpu)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--compare", metavar="GIT_REF", help="also GIT_REF's code, interleaved")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return
    from _common import machine

    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        variants: list[tuple[str, str | None]] = [("this tree", None)]
        if args.compare:
            ref = Path(tmp) / "ref"
            ref.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.compare, "butler_skill", "schemas",
                                      "skill.yaml"], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(ref)], input=archive, check=True)
            variants.insert(0, (args.compare, str(ref)))
        got: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
        for _ in range(args.runs):
            for name, path in variants:
                env = {**os.environ, **({"PYTHONPATH": path} if path else {})}
                done = subprocess.run([sys.executable, __file__, "--worker", str(args.calls)], env=env,
                                      capture_output=True, text=True, check=True)
                got[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"record_usage, {args.calls:,} calls a run, {args.runs} runs (a fresh process each)"
          + (", interleaved" if args.compare else "") + f"; load average at the end {os.getloadavg()[0]:.2f}")
    for name, runs in got.items():
        wall = statistics.median(r["wall"] for r in runs) * 1e6
        cpu = statistics.median(r["cpu"] for r in runs) * 1e6
        each = ", ".join(f"{r['cpu'] * 1e6:.0f}" for r in runs)
        print(f"  {name}: median {wall:.1f} µs wall, {cpu:.1f} µs CPU per call (runs' CPU medians: {each})")


if __name__ == "__main__":
    main()
