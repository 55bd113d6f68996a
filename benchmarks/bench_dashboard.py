"""What one dashboard refresh costs: the live-update fingerprint (read every poll of the event stream), the
snapshot and the 30-day history, on a ledger seeded through the tools with a month of work.

Run: .venv/bin/python benchmarks/bench_dashboard.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from butler_skill.gateway import dashboard_data as data
from butler_skill.host.context import Context
from tests.dashboard.conftest import TODAY
from tests.dashboard.seed import MovingClock, env_for, seed_month


def timed(fn, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    runs.sort()
    return statistics.median(runs), runs[int(len(runs) * 0.99) - 1]


def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="butler-bench-dash-") as scratch:
        clock = MovingClock(TODAY)
        ctx = Context(env=env_for(Path(scratch)), clock=clock)
        seed_month(ctx, clock, TODAY)
        for name, fn in (("version (event stream poll)", lambda: data.version(ctx)),
                         ("snapshot", lambda: data.snapshot(ctx).model_dump_json()),
                         ("history (30 days)", lambda: data.history(ctx).model_dump_json())):
            median, p99 = timed(fn, n)
            print(f"dashboard {name}: median {median:.2f} ms, p99 {p99:.2f} ms (n={n})")
        ctx.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
