"""The ledger at its edges: usage reported after a lease expired, usage across 00:00 UTC, and the budget
invariants as properties over random sequences of allocations, reports, closes and clock jumps.

Rules under test (store/ledger.py, sessions.py, core/reporting.py):
- late usage is counted honestly (the provider spent it); a key-day that ends up past its limit shows an
  `overrun` figure in get_status and monitor_usage and leaves a pending `overrun` alert, never silence;
- usage belongs to the UTC day it is reported on; a leg reserved yesterday gives yesterday's hold back when
  it is settled (or expires, or closes) and is held again today only when it fits under today's limit.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.core.days import utc_day
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import SECRETS, Clock, Ids, write_keys

LIMIT = 10_000
ONE_KEY = [{"id": "solo", "provider": "groq", "key_env": "TEST_GROQ_KEY_1", "price_in_per_m": 0.05,
            "price_out_per_m": 0.08, "limits": {"tokens_per_day": LIMIT}}]


def one_key_ctx(tmp_path: Path, clock: Clock) -> Context:
    keys = write_keys(tmp_path / "solo-keys.json", ONE_KEY)
    env = {"HOME": str(tmp_path), **SECRETS, "BUTLER_KEYS_PATH": str(keys),
           "BUTLER_STATE_PATH": str(tmp_path / "edges.db")}
    return Context(env=env, clock=clock, ids=Ids())


@pytest.fixture
def solo(tmp_path: Path, clock: Clock) -> Iterator[Context]:
    ctx = one_key_ctx(tmp_path, clock)
    yield ctx
    ctx.close()


def ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["ok"], envelope
    return dict(envelope["result"])


def allocate(ctx: Context, n: int) -> str:
    return str(ok(call_tool("allocate_tokens", {"tokens": n}, ctx))["session_id"])


def report(ctx: Context, sid: str, rid: str, n: int, **kw: Any) -> dict[str, Any]:
    return ok(call_tool("record_usage", {"session_id": sid, "request_id": rid, "input_tokens": n,
                                         "output_tokens": 0, **kw}, ctx))


def counter(ctx: Context, day: str) -> tuple[int, int]:
    with ctx.db.read() as conn:
        row = conn.execute("SELECT used, reserved FROM key_day_counters WHERE key_id = 'solo' AND day = ?",
                           (day,)).fetchone()
    return (int(row["used"]), int(row["reserved"])) if row else (0, 0)


# ---- late usage ----------------------------------------------------------------------------------
def test_usage_after_the_lease_expired_is_counted_and_raises_an_overrun(solo: Context, clock: Clock) -> None:
    late = allocate(solo, 8_000)
    clock.advance(seconds=solo.config.lease_seconds + 1)
    allocate(solo, 8_000)  # A's hold was released by expiry and granted again to B
    assert solo.ledger.session(late).state == "expired"
    out = report(solo, late, "late-1", 8_000)
    # Counted honestly: the provider did spend those tokens.
    assert out["session"]["used"] == 8_000 and counter(solo, utc_day(clock.now)) == (8_000, 8_000)
    assert out["alert"]["kind"] == "overrun" and "after its lease expired" in out["alert"]["message"]
    status = ok(call_tool("get_status", {}, solo))
    assert status["tokens"]["keys_over_limit"] == {"solo": 6_000}
    assert status["tokens"]["keys_by_provider"]["groq"]["overrun"] == 6_000
    assert any(a["kind"] == "overrun" and a["key_id"] == "solo" for a in status["alerts"])
    usage = ok(call_tool("monitor_usage", {}, solo))
    assert usage["keys_by_provider"]["groq"]["overrun"] == 6_000 and usage["total"]["overrun"] == 6_000
    # A key past its limit grants nothing more.
    assert call_tool("allocate_tokens", {"tokens": 1}, solo)["error"]["code"] == "no_capacity"


def test_within_the_limit_there_is_no_overrun(solo: Context) -> None:
    sid = allocate(solo, 4_000)
    out = report(solo, sid, "r1", 4_000, close=True)
    assert out["alert"] is None or out["alert"]["kind"] != "overrun"
    status = ok(call_tool("get_status", {}, solo))
    assert status["tokens"]["keys_over_limit"] == {} and status["tokens"]["keys_by_provider"]["groq"]["overrun"] == 0


# ---- bounded figures ----------------------------------------------------------------------------
@pytest.mark.parametrize("figures", [
    {"input_tokens": 9 * 10**18}, {"output_tokens": 10_000_001}, {"cost": 1e308}, {"cost": 10_000.01},
    {"cache_read_tokens": -1},
])
def test_figures_past_their_bounds_are_invalid_and_change_nothing(solo: Context, tmp_path: Path,
                                                                  figures: dict[str, Any]) -> None:
    sid = allocate(solo, 1_000)
    shot = snapshot(tmp_path / "edges.db")
    env = call_tool("record_usage", {"session_id": sid, "request_id": "big", "input_tokens": 1, "output_tokens": 1,
                                     **figures}, solo)
    assert env["error"]["code"] == "invalid_input" and snapshot(tmp_path / "edges.db") == shot


def test_implausible_provider_usage_is_refused_before_the_ledger(solo: Context, tmp_path: Path) -> None:
    from butler_skill import sessions
    from butler_skill.core.usage import Usage
    from butler_skill.errors import ProviderError

    sid = allocate(solo, 1_000)
    shot = snapshot(tmp_path / "edges.db")
    for usage in (Usage.of(input_tokens=9 * 10**18), Usage.of(input_tokens=1, cost_usd=1e308)):
        with pytest.raises(ProviderError, match="implausible"):
            sessions.commit(solo, sid, "provider-1", usage)
    assert snapshot(tmp_path / "edges.db") == shot


# ---- midnight ------------------------------------------------------------------------------------
@pytest.fixture
def late_evening(clock: Clock) -> Clock:
    clock.now = datetime(2026, 11, 24, 23, 50, tzinfo=UTC)
    return clock


def test_usage_after_midnight_books_on_the_new_day_and_carries_the_hold(tmp_path: Path, late_evening: Clock) -> None:
    ctx = one_key_ctx(tmp_path, late_evening)
    sid = allocate(ctx, 4_000)
    yesterday = utc_day(late_evening.now)
    late_evening.advance(minutes=20)  # 00:10 UTC, lease still running
    today = utc_day(late_evening.now)
    out = report(ctx, sid, "after-midnight", 1_000)
    assert counter(ctx, yesterday) == (0, 0)  # yesterday's hold given back, nothing booked there
    assert counter(ctx, today) == (1_000, 3_000)  # booked today; what the session still holds, held today
    assert out["session"]["held"] == 3_000 and out["alert"] is None  # 1,000 of 4,000: below the threshold
    keys = ok(call_tool("get_available_keys", {}, ctx))
    assert keys["day"] == today and keys["keys"][0]["remaining"] == LIMIT - 4_000
    report(ctx, sid, "close", 0, close=True)
    assert counter(ctx, today) == (1_000, 0)
    ctx.close()


def test_a_carried_hold_that_no_longer_fits_is_dropped_and_overuse_is_flagged(tmp_path: Path,
                                                                               late_evening: Clock) -> None:
    ctx = one_key_ctx(tmp_path, late_evening)
    old = allocate(ctx, 4_000)
    late_evening.advance(minutes=20)
    allocate(ctx, 9_000)  # the new day's capacity went to someone else first
    today = utc_day(late_evening.now)
    out = report(ctx, old, "r1", 1_000)
    assert out["session"]["held"] == 0 and counter(ctx, today) == (1_000, 9_000)  # exactly at the limit
    assert out["alert"] is None or out["alert"]["kind"] != "overrun"
    out = report(ctx, old, "r2", 500)
    assert out["alert"]["kind"] == "overrun" and counter(ctx, today) == (1_500, 9_000)
    assert ok(call_tool("get_status", {}, ctx))["tokens"]["keys_over_limit"] == {"solo": 500}
    ctx.close()


def test_a_hold_expiring_after_midnight_leaves_yesterday_clean(tmp_path: Path, late_evening: Clock) -> None:
    ctx = one_key_ctx(tmp_path, late_evening)
    allocate(ctx, 4_000)
    yesterday = utc_day(late_evening.now)
    late_evening.advance(seconds=ctx.config.lease_seconds + 1)
    assert ctx.ledger.expire_leases(late_evening.now) == 1
    assert counter(ctx, yesterday) == (0, 0)
    ctx.close()


# ---- properties ----------------------------------------------------------------------------------
def snapshot(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
    finally:
        conn.close()


Step = tuple[str, int, int]
steps = st.lists(st.one_of(
    st.tuples(st.just("allocate"), st.integers(1, 6_000), st.just(0)),
    st.tuples(st.just("report"), st.integers(0, 20), st.integers(0, 5_000)),  # (which session, tokens)
    st.tuples(st.just("repeat"), st.integers(0, 20), st.just(0)),  # the last report of a session, again
    st.tuples(st.just("close"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("clock"), st.sampled_from([60, 1_800, 3_601, 7 * 3_600]), st.just(0)),
), min_size=1, max_size=14)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, cost=st.floats(0, 10_000))
def test_budget_invariants_hold_at_every_step(tmp_path_factory: pytest.TempPathFactory, plan: list[Step],
                                              cost: float) -> None:
    """Whatever happens, in any order, around midnight: grants never take a key-day past its limit; when
    usage does (late or beyond a hold), the overrun is shown and alerted; holds match open sessions; every
    figure stays finite; settling the same request twice changes nothing."""
    tmp = tmp_path_factory.mktemp("props")
    clock = Clock(datetime(2026, 11, 24, 22, 0, tzinfo=UTC))
    ctx = one_key_ctx(tmp, clock)
    sessions: list[str] = []
    last: dict[str, dict[str, Any]] = {}
    booked: dict[str, int] = {}  # the model: every token reported counts on the UTC day it was reported
    try:
        for n, (op, a, b) in enumerate(plan):
            day = utc_day(clock.now)
            before = counter(ctx, day)
            if op == "allocate":
                env = call_tool("allocate_tokens", {"tokens": a}, ctx)
                if env["ok"]:
                    sessions.append(env["result"]["session_id"])
                    # A grant is the conditional update: it never takes the day past the limit.
                    used, reserved = counter(ctx, day)
                    assert used + reserved <= max(LIMIT, before[0] + before[1])
                else:
                    assert env["error"]["code"] == "no_capacity"
            elif op in ("report", "repeat", "close") and sessions:
                sid = sessions[a % len(sessions)]
                if op == "repeat":
                    if sid not in last:
                        continue
                    ctx.ledger.expire_leases(clock.now)  # every write does this first; it is not the repeat's doing
                    shot = snapshot(tmp / "edges.db")
                    again = call_tool("record_usage", last[sid], ctx)
                    assert again["ok"] and again["result"]["duplicate"], again
                    assert snapshot(tmp / "edges.db") == shot  # idempotent settlement
                    continue
                args = {"session_id": sid, "request_id": f"r{n}", "input_tokens": b, "output_tokens": 0,
                        "cost": cost, "close": op == "close"}
                env = call_tool("record_usage", args, ctx)
                assert env["ok"], env
                last[sid] = args
                booked[day] = booked.get(day, 0) + b
            elif op == "clock":
                clock.advance(seconds=a)
            check_invariants(ctx, clock)
            assert {d: u for d, u in ((d, counter(ctx, d)[0]) for d in booked) if u} == \
                {d: u for d, u in booked.items() if u}
    finally:
        ctx.close()


def check_invariants(ctx: Context, clock: Clock) -> None:
    now = clock.now
    with ctx.db.read() as conn:
        counters = conn.execute("SELECT * FROM key_day_counters").fetchall()
        holds = conn.execute("SELECT leg_day, SUM(leg_held) AS held FROM sessions WHERE state = 'open'"
                             " GROUP BY leg_day").fetchall()
        alerts = conn.execute("SELECT key_id FROM alerts WHERE kind = 'overrun'").fetchall()
    held = {r["leg_day"]: int(r["held"]) for r in holds}
    for c in counters:
        # What a counter holds is exactly what open sessions hold on it (leases not yet expired included).
        assert c["reserved"] >= 0 and c["used"] >= 0
        assert c["reserved"] == held.get(c["day"], 0), (dict(c), held)
        assert math.isfinite(float(c["cost_usd"]))
        if c["used"] + c["reserved"] > LIMIT:
            assert any(a["key_id"] == c["key_id"] for a in alerts), "a key-day past its limit without an alert"
    status = ok(call_tool("get_status", {"history_limit": 5}, ctx))
    usage = ok(call_tool("monitor_usage", {}, ctx))
    json.dumps([status, usage], allow_nan=False)  # finite everywhere: JSON has no Infinity
    today = [c for c in counters if c["day"] == utc_day(now)]
    over = sum(max(0, c["used"] + c["reserved"] - LIMIT) for c in today)
    assert usage["total"]["overrun"] == over == sum(status["tokens"]["keys_over_limit"].values())
    if not ctx.ledger.sessions(open_only=True):
        assert all(c["reserved"] == 0 for c in counters)
