"""Where an allocation's time goes (issue 12): its SQL replayed bare step by step, then the ledger call, the handler
without the redaction hook and the handler itself, beside the bare `BEGIN IMMEDIATE`+`UPDATE`+`COMMIT` of
bench_spine.py. Every step runs once per round (each on its own database file), so a busy machine slows all alike;
the cost is cache pressure between the files, which inflates every step a little.

`--floor`: the floor of any allocation design (the fewest statements and the Python it cannot drop; see `_floor`)
beside the bare transaction and the handler, one for one and in warm blocks.

`--profile`: a perf_counter_ns line profile of one allocation instead, step by step as `allocate_tokens` ->
`sessions.open_session` -> `Ledger.open_session` run them (a replica of their lines, with the redaction hook on),
medians per step: what each part of the path costs where it runs (between SQLite calls, with cold caches, a line
costs several times what it costs in a tight `timeit` loop).

Run: .venv/bin/python benchmarks/bench_alloc_parts.py [--rounds 3000] [--profile | --floor]
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
# (sessions_created, the third index an allocation wrote, is gone since migration 0015.)
REPLAYS = (
    ("SQL: the update on the ledger", (), False, False),
    ("SQL: + the one read", (), True, False),
    ("SQL: + the session row (key only)", ("sessions_open_lease",), True, True),
    ("SQL: + its open-lease index (all SQL)", (), True, True),
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
    views = L._VIEWS_LEASE if "sessions_open_lease" not in drops else L._VIEWS

    def once() -> None:
        now = ctx.now()
        stamp, lease = L.ts(now), L.ts(now + timedelta(seconds=3600))
        conn.execute("BEGIN IMMEDIATE")
        if reads:
            conn.execute(views, (day, stamp)).fetchall()
        conn.execute(L._RESERVE, (10, "k1", day, 10, 10**12))
        if inserts:
            conn.execute(L._INSERT_SESSION, (ctx.new_id("ses"), None, None, "k1", 10, 0.75, day, 10, 10, lease,
                                             stamp, stamp))
        conn.execute("COMMIT")

    return once


def line_profile(ctx: Context, rounds: int) -> None:
    """Each step of one allocation timed where it runs; the steps mirror handler -> sessions -> Ledger."""
    from butler_skill.core import estimate as est
    from butler_skill.models import SessionInfo
    from butler_skill.store.db import execute_last, execute_own, redact_values
    from butler_skill.store.protocol import Grant
    from butler_skill.trusted import trusted

    clock = time.perf_counter_ns
    led = ctx.ledger
    steps: dict[str, list[int]] = {}

    def lap(name: str, t0: int) -> int:
        t1 = clock()
        steps.setdefault(name, []).append(t1 - t0)
        return t1

    bare = _bare_connection(Path(tempfile.mkdtemp()))
    for _ in range(rounds + 300):
        t0 = clock()
        _bare_once(bare)
        t0 = lap("(bare BEGIN IMMEDIATE+UPDATE+COMMIT)", t0)
        inp = t.AllocateTokensInput(prd_text="x", tokens=10)
        t0 = lap("input model (the host validates it)", t0)
        estimate = est.given_estimate(inp.tokens or 0)
        keys = ctx.config.resolved()
        t0 = lap("estimate model, key list", t0)
        now = ctx.now()
        sid = ctx.new_id("ses")
        t0 = lap("clock, session id", t0)
        stamp = L.ts(now)
        day, lease = stamp[:10], L.later(stamp, 3600)
        t0 = lap("timestamps", t0)
        w = led.db.write()
        conn = w.__enter__()
        t0 = lap("SQL: BEGIN IMMEDIATE", t0)
        found = w.found  # the figures the last allocation left (store/ledger.py `_Seen`), or the read
        version = execute_own(conn, L._DATA_VERSION, ()).fetchone()[0] if found is not None else None
        seen = found if found is not None and found.holds(version, day, stamp) else None
        if seen is None:
            seen = L._read_seen(conn, day, stamp, version)
        views = L._build_views(keys, seen.counters, seen.cooldowns)
        t0 = lap("SQL: data version or read, key views", t0)
        chosen = selection.choose_key(views, 10, now, input_share=0.5)
        assert chosen is not None
        t0 = lap("choice rule", t0)
        label, task, key_id = redact_values(conn, (None, None, chosen.key_id))
        t0 = lap("redaction hook", t0)
        assert execute_own(conn, L._RESERVE, (10, key_id, day, 10, chosen.tokens_per_day)).rowcount == 1
        t0 = lap("SQL: reserve", t0)
        execute_last(conn, L._INSERT_SESSION, (sid, label, task, key_id, 10, 0.75, day, 10, 10, lease, stamp, stamp))
        t0 = lap("SQL: session insert", t0)
        seen.counters[key_id] = (chosen.used, chosen.reserved + 10)
        seen.lease = min(seen.lease or lease, lease)
        w.memo = seen
        threshold = L._threshold(10, 0.75)

        def info() -> SessionInfo:
            return SessionInfo(session_id=sid, label=None, task_id=None, key_id=key_id, allocated=10, used=0,  # noqa: B023
                               held=10, rotation_threshold=threshold, cost=0.0, state="open", created_at=now)  # noqa: B023

        grant = Grant(key=chosen, session_id=sid, rotation_threshold=threshold, session=info)
        t0 = lap("Grant (its SessionInfo built when read)", t0)
        w.__exit__(None, None, None)
        t0 = lap("SQL: COMMIT", t0)
        key = next(k for k in keys if k.id == grant.key.key_id)
        trusted(t.AllocateTokensOutput, {
            "success": True, "session_id": sid, "key_id": key.id, "provider": key.provider, "model": key.model,
            "allocated": 10, "rotation_threshold": grant.rotation_threshold,
            "available_capacity": grant.key.remaining - 10,
            "cost_estimate": est.estimate_cost(estimate, key.price_in_per_m, key.price_out_per_m),
            "estimate": estimate})
        lap("output model", t0)
    bare.close()
    print(f"line profile, medians of {rounds:,} allocations (µs); load average {os.getloadavg()[0]:.2f}")
    total = 0.0
    for name, values in steps.items():
        median = statistics.median(values[300:]) / 1000
        if not name.startswith("("):
            total += median
        print(f"{name:40s} {median:8.1f}")
    print(f"{'sum of the allocation steps':40s} {total:8.1f}")


# The floor (issue 12: can any design reach 3x?): an allocation that keeps only what it cannot drop. Its SQL: the
# data version (the figures from memory), the conditional reserve, and one row appended to a grant log (an INTEGER
# rowid table with no index: the cheapest record of a hold there is); its Python: the estimate, the clock, an id,
# two stamps, the choice, and the answer. It leaves out the redaction hook, the lease-expiry look, the session row
# every other path reads (and its open-lease index), the Grant, and every check of the handler, so a real ledger
# built on a grant log would cost more than this, never less.
_GRANT_LOG = ("CREATE TABLE grant_log (seq INTEGER PRIMARY KEY, key_id TEXT NOT NULL, day TEXT NOT NULL,"
              " tokens INTEGER NOT NULL, threshold_ratio REAL NOT NULL, label TEXT, task_id TEXT,"
              " created_at TEXT NOT NULL, lease_expires_at TEXT NOT NULL)")
_LOG = ("INSERT INTO grant_log(key_id, day, tokens, threshold_ratio, label, task_id, created_at, lease_expires_at)"
        " VALUES (?,?,?,?,?,?,?,?)")


def _floor(folder: Path, python: bool) -> Callable[[], object]:
    from datetime import UTC, datetime

    from butler_skill.core import estimate as est
    from butler_skill.host.context import uuid_ids
    from butler_skill.trusted import trusted

    ctx = _ctx(folder, 10**12)
    inp = t.AllocateTokensInput(prd_text="x", tokens=10)
    t.allocate_tokens(ctx, inp)
    conn = ctx.db._connection()
    conn.execute(_GRANT_LOG)
    keys = ctx.config.resolved()
    memo: dict[int, list[selection.KeyView]] = {}
    if not python:  # the SQL alone, its parameters made once
        now = datetime.now(UTC)
        stamp = L.ts(now)
        day, lease = stamp[:10], L.later(stamp, 3600)

        def sql() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("PRAGMA data_version").fetchone()
            conn.execute(L._RESERVE, (10, "k1", day, 10, 10**12))
            conn.execute(_LOG, ("k1", day, 10, 0.75, None, None, stamp, lease))
            conn.execute("COMMIT")

        return sql

    def once() -> object:
        estimate = est.given_estimate(10)
        now = datetime.now(UTC)
        stamp = L.ts(now)
        day, lease = stamp[:10], L.later(stamp, 3600)
        sid = uuid_ids("ses")
        need = estimate.total
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        views = memo.get(version)
        if views is None:
            views = L._views(conn, keys, day, stamp)
        chosen = selection.choose_key(views, need, now, input_share=0.5)
        assert chosen is not None
        conn.execute(L._RESERVE, (need, chosen.key_id, day, need, chosen.tokens_per_day))
        conn.execute(_LOG, (chosen.key_id, day, need, 0.75, None, None, stamp, lease))
        conn.execute("COMMIT")
        memo.clear()
        memo[version] = [v._replace(reserved=v.reserved + need) if v is chosen else v for v in views]
        key = next(k for k in keys if k.id == chosen.key_id)
        return trusted(t.AllocateTokensOutput, {
            "success": True, "session_id": sid, "key_id": key.id, "provider": key.provider, "model": key.model,
            "allocated": need, "rotation_threshold": L._threshold(need, 0.75),
            "available_capacity": chosen.remaining - need,
            "cost_estimate": est.estimate_cost(estimate, key.price_in_per_m, key.price_out_per_m),
            "estimate": estimate})

    return once


def floor(rounds: int) -> None:
    """The floor beside the bare transaction and the handler, one for one (as bench_spine.py) and in warm blocks."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = _bare_connection(folder)
        inp = t.AllocateTokensInput(prd_text="x", tokens=10)
        for name in ("sql", "floor", "handler"):
            (folder / name).mkdir()
        handler = _ctx(folder / "handler", 10**12)
        steps: dict[str, Callable[[], object]] = {
            "bare BEGIN IMMEDIATE+UPDATE+COMMIT": lambda: _bare_once(bare),
            "floor SQL: version+reserve+grant log": _floor(folder / "sql", python=False),
            "floor: that SQL + the Python it needs": _floor(folder / "floor", python=True),
            "handler (allocate_tokens)": lambda: t.allocate_tokens(handler, inp),
        }
        for _ in range(300):
            for step in steps.values():
                step()
        wall, cpu = time.perf_counter, time.thread_time
        one: dict[str, list[float]] = {k: [] for k in steps}
        one_cpu: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(rounds):
            for label, step in steps.items():
                w0, c0 = wall(), cpu()
                step()
                one[label].append(wall() - w0)
                one_cpu[label].append(cpu() - c0)
        print(f"one for one, medians of {rounds:,} rounds (µs, wall and thread CPU); load average "
              f"{os.getloadavg()[0]:.2f}")
        base, base_cpu = (statistics.median(one[next(iter(steps))]), statistics.median(one_cpu[next(iter(steps))]))
        for label in steps:
            m, c = statistics.median(one[label]), statistics.median(one_cpu[label])
            print(f"  {label:40s} {m * 1e6:7.1f} {m / base:5.2f}x   CPU {c * 1e6:7.1f} {c / base_cpu:5.2f}x")
        blocks: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(10):
            for label, step in steps.items():
                for _ in range(50):
                    step()
                for _ in range(rounds // 10):
                    w0 = wall()
                    step()
                    blocks[label].append(wall() - w0)
        print(f"in alternating warm blocks of {rounds // 10:,} (µs); load average {os.getloadavg()[0]:.2f}")
        base = statistics.median(blocks[next(iter(steps))])
        for label in steps:
            m = statistics.median(blocks[label])
            print(f"  {label:40s} {m * 1e6:7.1f} {m / base:5.2f}x")
        handler.close()
        bare.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3_000)
    parser.add_argument("--profile", action="store_true", help="a line profile of one allocation instead")
    parser.add_argument("--floor", action="store_true", help="the floor of any design beside bare and the handler")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.floor:
        floor(args.rounds)
        return
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = _ctx(Path(tmp), 10**12)
            t.allocate_tokens(ctx, t.AllocateTokensInput(prd_text="x", tokens=10))  # warm
            line_profile(ctx, args.rounds)
            ctx.close()
        return
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
                                    now=now, lease_seconds=3600, minted_id=True)

        steps: dict[str, Callable[[], None]] = {"bare BEGIN IMMEDIATE+UPDATE+COMMIT": lambda: _bare_once(bare)}
        for label, drops, reads, inserts in REPLAYS:
            steps[label] = replay(folder, label, drops, reads, inserts, handler)
        steps["Ledger.open_session (no hook)"] = ledger_call
        steps["handler, no redaction hook"] = lambda: t.allocate_tokens(nohook, inp)
        (folder / "reads").mkdir()
        reads = _ctx(folder / "reads", 10**12)
        t.allocate_tokens(reads, inp)
        ctxs.append(reads)

        def reading() -> None:  # the figures read in every allocation (no memo: the ledger before 2026-12-04 12:40)
            L._REUSE = False
            try:
                t.allocate_tokens(reads, inp)
            finally:
                L._REUSE = True

        steps["handler, figures read every time"] = reading
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
    print(f"load average after: {os.getloadavg()[0]:.2f}")
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
