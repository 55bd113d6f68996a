"""Where an allocation's time goes (issue 12): its SQL replayed bare step by step, then the ledger call, the handler
without the redaction hook and the handler itself, beside the bare `BEGIN IMMEDIATE`+`UPDATE`+`COMMIT` of
bench_spine.py. Every step runs once per round (each on its own database file), so a busy machine slows all alike;
the cost is cache pressure between the files, which inflates every step a little.

Run: .venv/bin/python benchmarks/bench_alloc_parts.py [--rounds 3000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine
from bench_spine import _bare_connection, _bare_once, _ctx

from butler_skill.core import selection
from butler_skill.handlers import tokens as t
from butler_skill.host.context import Context
from butler_skill.store import ledger as L
from butler_skill.store.db import Database

# (label, indexes dropped, whether the replay reads, whether it inserts the session row)
REPLAYS = (
    ("SQL: the update on the ledger", (), False, False),
    ("SQL: + the one read", (), True, False),
    ("SQL: + the session row (key only)", ("sessions_open_lease", "sessions_created"), True, True),
    ("SQL: + its open-lease index", ("sessions_created",), True, True),
    ("SQL: + its created index (all SQL)", (), True, True),
)


def replay(folder: Path, label: str, drops: tuple[str, ...], reads: bool, inserts: bool,
           ctx: Context) -> Callable[[], None]:
    db = Database(folder / f"replay-{len(drops)}-{reads}-{inserts}.db")
    conn = db._connection()
    for name in drops:
        conn.execute(f"DROP INDEX {name}")
    day = L.utc_day(ctx.now())
    conn.execute("INSERT INTO key_day_counters(key_id, day) VALUES ('k1', ?)", (day,))
    # Without the open-lease index the lease probe would read every session: the replay then reads without it.
    views = L._VIEWS_DUE if "sessions_open_lease" not in drops else L._VIEWS

    def once() -> None:
        now = ctx.now()
        stamp, lease = L.ts(now), L.ts(now + timedelta(seconds=3600))
        conn.execute("BEGIN IMMEDIATE")
        if reads:
            conn.execute(views, (day, stamp, stamp) if views is L._VIEWS_DUE else (day, stamp)).fetchall()
        conn.execute(L._RESERVE, (10, "k1", day, 10, 10**12))
        if inserts:
            conn.execute(L._INSERT_SESSION, (ctx.new_id("ses"), None, None, "k1", 10, 0.75, day, 10, 10, lease,
                                             stamp, stamp))
        conn.execute("COMMIT")

    return once


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    inp = t.AllocateTokensInput(prd_text="x", tokens=10)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = _bare_connection(folder)
        ctxs = []
        for name in ("handler", "nohook", "ledger"):
            (folder / name).mkdir()
            ctx = _ctx(folder / name, 10**12)
            t.allocate_tokens(ctx, inp)  # warm: config, connection, migrations
            ctxs.append(ctx)
        handler, nohook, led = ctxs
        nohook.db.redact = led.db.redact = None
        keys = led.config.resolved()

        def ledger_call() -> None:
            now = led.now()
            led.ledger.open_session(keys=keys, pick=lambda v: selection.choose_key(v, 10, now), need=10,
                                    session_id=led.new_id("ses"), label=None, task_id=None, threshold_ratio=0.75,
                                    now=now, lease_seconds=3600)

        steps: dict[str, Callable[[], None]] = {"bare BEGIN IMMEDIATE+UPDATE+COMMIT": lambda: _bare_once(bare)}
        for label, drops, reads, inserts in REPLAYS:
            steps[label] = replay(folder, label, drops, reads, inserts, handler)
        steps["Ledger.open_session (no hook)"] = ledger_call
        steps["handler, no redaction hook"] = lambda: t.allocate_tokens(nohook, inp)
        steps["handler (allocate_tokens)"] = lambda: t.allocate_tokens(handler, inp)
        samples: dict[str, list[float]] = {k: [] for k in steps}
        for i in range(args.rounds + 300):
            for label, step in steps.items():
                start = time.perf_counter()
                step()
                if i >= 300:
                    samples[label].append(time.perf_counter() - start)
        for ctx in ctxs:
            ctx.close()
    base = statistics.median(samples["bare BEGIN IMMEDIATE+UPDATE+COMMIT"])
    print(f"medians of {args.rounds:,} rounds, every step once per round; load average {os.getloadavg()[0]:.2f}")
    previous = None
    for label, values in samples.items():
        median = statistics.median(values)
        added = "" if previous is None else f"{(median - previous) * 1e6:+8.1f} µs"
        print(f"{label:38s} {median * 1e6:8.1f} µs  {median / base:5.2f}x {added}")
        previous = median


if __name__ == "__main__":
    main()
