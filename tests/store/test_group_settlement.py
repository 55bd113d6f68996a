"""Settlement (core/settlement.py through store.ledger.commit_usages_in and commit_usage_in) leaves the ledger exactly
as the reference statement of the rules (tests/store/settlement_reference.py: the one-by-one SQL they replaced)
would, on both ledgers: a group settled set-oriented (store.tasks.end_subtasks_in, runner.settle_group), and the
same sub-tasks settled one by one, each in its own SAVEPOINT (runner.settle_one, what a group falls back to).

Each example builds a random ledger state (sessions open, closed or expired, legs reserved today or yesterday,
counters near or past their limits, usage records already settled, attempts already made) and a random group of
settlements (successes and failures, request ids repeated within the group or already settled, with the same or
other figures, implausible reports, unknown sessions, usage past a hold or a key's limit, reports on either side of
UTC midnight, priced on the session's key or another). The three ways run in one transaction from the same state
(each rolled back to a SAVEPOINT before the next); then every row of every table they touch, and what each
settlement answered, must be equal.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill import sessions
from butler_skill.core import settlement
from butler_skill.core.usage import Usage
from butler_skill.host.context import Context
from butler_skill.store.ledger import expire_leases_in
from butler_skill.store.tasks import AttemptRecord, Finish
from butler_skill.store.timestamps import ts
from butler_skill.subagents.batching import GroupCommit
from butler_skill.subagents.runner import Settled, Settlement, settle_group, settle_one
from tests.conftest import Ids
from tests.store import settlement_reference

# 30 seconds before UTC midnight: a report made a minute later belongs to the next day.
NOW = datetime(2026, 11, 24, 23, 59, 30, tzinfo=UTC)
DAY, YESTERDAY = "2026-11-24", "2026-11-23"
KEYS = ("alpha-1", "alpha-2", "beta-1")  # tests/conftest.py SMALL_KEYS: 10,000 / 10,000 / 20,000 tokens a day
TABLES = ("key_day_counters", "sessions", "usage_records", "alerts", "events", "subtasks", "attempts", "tasks",
          "session_spend_days")


class _Undo(Exception):
    """Raised at the end of an example: its whole transaction is rolled back."""


session_spec = st.fixed_dictionaries({
    "key": st.integers(0, 2),
    "state": st.sampled_from(["open", "open", "open", "closed", "expired"]),
    "leg_day": st.sampled_from([DAY, DAY, YESTERDAY]),
    "held": st.integers(0, 4_000),
    "used": st.integers(0, 3_000),
    "lease_due": st.booleans(),  # an open session whose lease the transaction's first step expires
    "attempts": st.integers(0, 2),
})
report_spec = st.fixed_dictionaries({
    "session": st.integers(0, 6),  # past the last session: an unknown one
    "request": st.integers(0, 3),
    "input": st.integers(0, 3_000),
    "output": st.integers(0, 3_000),
    "implausible": st.integers(0, 15).map(lambda n: n == 0),
    "later_s": st.sampled_from([0, 10, 45, 90]),  # 45 and 90: after midnight
    "other_key": st.integers(0, 7).map(lambda n: n == 0),
    "status": st.sampled_from(["success", "failed"]),
    "estimated": st.booleans(),
})
prior_spec = st.fixed_dictionaries({
    "session": st.integers(0, 5), "request": st.integers(0, 3), "input": st.integers(0, 3_000),
    "output": st.integers(0, 3_000)})
extra_spec = st.dictionaries(st.tuples(st.integers(0, 2), st.sampled_from([DAY, YESTERDAY, "2026-11-25"])),
                             st.tuples(st.integers(0, 25_000), st.integers(0, 3_000)), max_size=5)


def build(conn: Any, specs: list[dict[str, Any]], priors: list[dict[str, Any]],
          extra: dict[tuple[int, str], tuple[int, int]]) -> None:
    """A consistent ledger: each counter reserves at least what the open sessions on it hold."""
    stamp = ts(NOW - timedelta(hours=1))
    conn.execute("INSERT INTO tasks(id, name, description, budget, mode, options, created_at, updated_at)"
                 " VALUES ('task-1', 'n', 'd', 100000, 'spawn', '{}', ?, ?)", (stamp, stamp))
    reserved: dict[tuple[str, str], int] = {}
    for (k, day), (used, more) in extra.items():
        reserved[(KEYS[k], day)] = more
        conn.execute("INSERT INTO key_day_counters(key_id, day, used, reserved, cost_usd, cost_pusd)"
                     " VALUES (?, ?, ?, 0, 0.25, 250000000000)", (KEYS[k], day, used))
    for i, s in enumerate(specs):
        key, held = KEYS[s["key"]], s["held"] if s["state"] == "open" else 0
        lease = ts(NOW - timedelta(minutes=1) if s["lease_due"] else NOW + timedelta(hours=1))
        conn.execute(
            "INSERT INTO sessions(id, label, task_id, key_id, allocated, used, cost_usd, cost_pusd, threshold_ratio,"
            " leg_day, leg_granted, leg_held, leg_used, lease_expires_at, state, created_at, updated_at, closed_at)"
            " VALUES (?, ?, 'task-1', ?, ?, ?, 0.1, 100000000000, 0.75, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"ses-{i}", f"st-{i}", key, held + s["used"], s["used"], s["leg_day"], held + s["used"], held, s["used"],
             lease, s["state"], stamp, stamp, None if s["state"] == "open" else stamp))
        reserved[(key, s["leg_day"])] = reserved.get((key, s["leg_day"]), 0) + held
        conn.execute(
            "INSERT INTO subtasks(task_id, id, position, title, text, kind, priority, weight_bp, estimated_tokens,"
            " share, planned_share, depends_on, session_id, status, attempts, updated_at)"
            " VALUES ('task-1', ?, ?, 't', 'x', 'general', 'normal', 100, 10, 10, 10, '[]', ?, 'pending', ?, ?)",
            (f"st-{i}", i, f"ses-{i}", s["attempts"], stamp))
        for n in range(1, s["attempts"] + 1):
            conn.execute("INSERT INTO attempts(task_id, subtask_id, n, key_id, outcome, tokens, started_at, ended_at)"
                         " VALUES ('task-1', ?, ?, ?, 'server', 0, ?, ?)", (f"st-{i}", n, key, stamp, stamp))
    for (key, day), n in reserved.items():
        conn.execute("INSERT INTO key_day_counters(key_id, day, reserved) VALUES (?, ?, ?)"
                     " ON CONFLICT (key_id, day) DO UPDATE SET reserved = ?", (key, day, n, n))
    for p in priors:
        if p["session"] >= len(specs):
            continue
        rid = sessions.scoped_request_id(f"ses-{p['session']}", f"r{p['request']}")
        total = p["input"] + p["output"]
        conn.execute(
            "INSERT INTO usage_records(request_id, session_id, key_id, day, input_tokens, output_tokens,"
            " total_tokens, cost_usd, recorded_at, cost_pusd) VALUES (?, ?, ?, ?, ?, ?, ?, 0.0, ?, 0)"
            " ON CONFLICT (request_id) DO NOTHING",
            (rid, f"ses-{p['session']}", KEYS[specs[p["session"]]["key"]], DAY, p["input"], p["output"], total,
             stamp))


def payloads(ctx: Context, specs: list[dict[str, Any]], reports: list[dict[str, Any]]) -> list[Settlement]:
    keys = {k.id: k for k in ctx.config.resolved()}
    out = []
    for r in reports:
        i = r["session"]
        key = KEYS[(specs[i]["key"] + (1 if r["other_key"] else 0)) % 3] if i < len(specs) else KEYS[0]
        now = NOW + timedelta(seconds=r["later_s"])
        usage = Usage(input_tokens=r["input"] * (10_000 if r["implausible"] else 1), output_tokens=r["output"],
                      estimated=r["estimated"])
        request_id = f"r{r['request']}"
        attempt = AttemptRecord(key_id=key, outcome=r["status"], request_id=request_id, tokens=usage.counted_tokens,
                                error=None if r["status"] == "success" else "cut short", started=NOW, ended=now)
        out.append(Settlement(sessions.Report(f"ses-{i}", request_id, usage, keys[key], now, close=True),
                              Finish("task-1", f"st-{i}", r["status"], now, f"output of {i}",
                                     None if r["status"] == "success" else "interrupted", attempt)))
    return out


def dump(conn: Any) -> dict[str, list[Any]]:
    state: dict[str, list[Any]] = {}
    for table in TABLES:
        rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
        if table == "events":  # their order is their sequence; the numbers themselves depend on earlier examples
            rows.sort(key=lambda r: r["seq"])
            for r in rows:
                del r["seq"]
        else:
            rows.sort(key=repr)
        state[table] = rows
    return state


def answer(value: Any) -> Any:
    return (type(value).__name__, str(value)) if isinstance(value, Exception) else value


def one_by_one(ctx: Context, conn: Any, items: list[Settlement], settle: Any = settle_one) -> list[Any]:
    """Each settlement in its own SAVEPOINT (GroupCommit's per-write path)."""
    out = []
    for item in items:
        conn.execute("SAVEPOINT one")
        try:
            out.append(answer(settle(ctx, conn, item)))
        except Exception as exc:
            conn.execute("ROLLBACK TO SAVEPOINT one")
            out.append(answer(exc))
        conn.execute("RELEASE SAVEPOINT one")
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(session_spec, min_size=1, max_size=6), priors=st.lists(prior_spec, max_size=4),
       extra=extra_spec, reports=st.lists(report_spec, min_size=1, max_size=8))
def test_property_settlement_equals_the_reference_rules(ctx: Context, specs: list[dict[str, Any]],
                                                       priors: list[dict[str, Any]],
                                                       extra: dict[tuple[int, str], tuple[int, int]],
                                                       reports: list[dict[str, Any]]) -> None:
    items = payloads(ctx, specs, reports)
    seen: dict[str, Any] = {}
    with pytest.raises(_Undo), ctx.db.write() as conn:
        build(conn, specs, priors, extra)
        conn.execute("SAVEPOINT example")
        before = dump(conn)
        ctx.ids = Ids()
        expire_leases_in(conn, NOW)
        seen["reference"] = one_by_one(ctx, conn, items, settlement_reference.settle_one), dump(conn)
        conn.execute("ROLLBACK TO SAVEPOINT example")
        assert dump(conn) == before
        ctx.ids = Ids()
        expire_leases_in(conn, NOW)
        seen["one"] = one_by_one(ctx, conn, items), dump(conn)
        conn.execute("ROLLBACK TO SAVEPOINT example")
        ctx.ids = Ids()
        expire_leases_in(conn, NOW)
        # A consistent ledger never needs the fallback: the bulk step itself must answer, and equal.
        group = [answer(v) for _, v in settle_group(ctx, conn, items)]
        seen["group"] = group, dump(conn)
        raise _Undo
    assert seen["one"][0] == seen["reference"][0]
    assert seen["one"][1] == seen["reference"][1]
    assert seen["group"][0] == seen["reference"][0]
    assert seen["group"][1] == seen["reference"][1]


def test_the_rules_core_reports_what_it_cannot_settle_in_one_pass() -> None:
    """A counter that holds less than a session's hold (a broken ledger) would break the database's CHECK when
    settled one by one: the pure rules refuse the pass (the store then settles the group one by one)."""
    state = settlement.SessionState(key_id="k", state="open", leg_day=DAY, leg_granted=500, leg_held=500, leg_used=0,
                                    used=0, cost_pusd=0, cost_usd=0.0, lease_expires_at="z", updated_at="a",
                                    closed_at=None)
    report = settlement.Report(request_id="s/r", session_id="s", figures=(10, 0, 0, 0, 0, 0), total=10, pusd=0,
                               cost_usd=0.0, day=DAY, stamp="t", lease="z", limit=1_000, view_key_id="k", close=True)
    with pytest.raises(settlement.Unsupported):
        settlement.settle_in_order([report], {"s": state}, {("k", DAY): settlement.Counter(0, 100)}, {})
    done = settlement.settle_in_order([report], {"s": state}, {("k", DAY): settlement.Counter(0, 500)}, {})
    assert done.counters[("k", DAY)].reserved == 0 and done.sessions["s"].state == "closed"


def test_a_failing_bulk_step_falls_back_to_one_by_one_and_isolates_the_bad_row(ctx: Context) -> None:
    """A group whose set-oriented write raises (here a broken counter: it reserves less than a session holds, so
    settling that session breaks a CHECK) is written one by one: the other settlements commit, the bad one alone
    fails and leaves nothing."""
    specs = [{"key": 0, "state": "open", "leg_day": DAY, "held": 1_000, "used": 0, "lease_due": False,
              "attempts": 0} for _ in range(4)]
    with ctx.db.write() as conn:
        build(conn, specs, [], {})
        conn.execute("INSERT INTO sessions(id, label, task_id, key_id, allocated, threshold_ratio, leg_day,"
                     " leg_granted, leg_held, lease_expires_at, state, created_at, updated_at)"
                     " VALUES ('ses-bad', 'st-bad', 'task-1', 'alpha-2', 900, 0.75, ?, 900, 900, ?, 'open', ?, ?)",
                     (DAY, ts(NOW + timedelta(hours=1)), ts(NOW), ts(NOW)))
        conn.execute("INSERT INTO subtasks(task_id, id, position, title, text, kind, priority, weight_bp,"
                     " estimated_tokens, share, planned_share, depends_on, session_id, status, updated_at) VALUES ("
                     "'task-1', 'st-bad', 9, 't', 'x', 'general', 'normal', 1, 1, 1, 1, '[]', 'ses-bad', 'pending', ?)",
                     (ts(NOW),))  # and no counter for alpha-2 reserves its 900 tokens
    reports = [{"session": i, "request": 0, "input": 100, "output": 50, "implausible": False, "later_s": 0,
                "other_key": False, "status": "success", "estimated": False} for i in range(4)]
    items = payloads(ctx, specs, reports)
    alpha_2 = next(k for k in ctx.config.resolved() if k.id == "alpha-2")
    attempt = AttemptRecord(key_id="alpha-2", outcome="success", request_id="r0", tokens=150, error=None,
                            started=NOW, ended=NOW)
    items.insert(2, Settlement(
        sessions.Report("ses-bad", "r0", Usage(input_tokens=100, output_tokens=50), alpha_2, NOW, close=True),
        Finish("task-1", "st-bad", "success", NOW, "out", None, attempt)))

    async def go() -> tuple[GroupCommit, list[Any]]:
        group = GroupCommit(ctx.db, bulk=partial(settle_group, ctx))
        answers = await asyncio.gather(*(group.write(partial(settle_one, ctx, payload=p), payload=p)
                                         for p in items), return_exceptions=True)
        await group.aclose()
        return group, answers

    group, answers = asyncio.run(go())
    assert group.fallbacks == 1 and group.batches == [5]
    assert isinstance(answers[2], Exception)
    assert all(isinstance(a, Settled) and a.counted.used == 150 for i, a in enumerate(answers) if i != 2)
    with ctx.db.read() as conn:
        rows = {r["id"]: dict(r) for r in conn.execute("SELECT id, state, used, leg_held FROM sessions")}
        done = {r["id"]: r["status"] for r in conn.execute("SELECT id, status FROM subtasks")}
        records = {r["session_id"] for r in conn.execute("SELECT session_id FROM usage_records")}
        counter = conn.execute("SELECT used, reserved FROM key_day_counters WHERE key_id = 'alpha-1' AND day = ?",
                               (DAY,)).fetchone()
    assert rows["ses-bad"]["state"] == "open" and rows["ses-bad"]["used"] == 0 and done["st-bad"] == "pending"
    assert "ses-bad" not in records and records == {f"ses-{i}" for i in range(4)}
    assert all(rows[f"ses-{i}"]["state"] == "closed" and done[f"st-{i}"] == "success" for i in range(4))
    assert (counter["used"], counter["reserved"]) == (600, 0)


def test_a_group_in_the_runner_takes_the_set_oriented_path(ctx: Context) -> None:
    """The bulk step answers for a consistent group (no fallback), and what it answers is what was committed."""
    specs = [{"key": i % 3, "state": "open", "leg_day": DAY, "held": 2_000, "used": 0, "lease_due": False,
              "attempts": 0} for i in range(5)]
    with ctx.db.write() as conn:
        build(conn, specs, [], {})
    reports = [{"session": i, "request": 1, "input": 300, "output": 200, "implausible": False, "later_s": 0,
                "other_key": False, "status": "success", "estimated": False} for i in range(5)]
    items = payloads(ctx, specs, reports)

    async def go() -> tuple[GroupCommit, list[Any]]:
        sqlite = ctx.db.dialect == "sqlite"
        group = GroupCommit(ctx.db, bulk=partial(settle_group, ctx), thread=sqlite,
                            close_connection=ctx.db.close if sqlite else None)

        def fail(_: Any) -> Any:
            raise AssertionError("the one-by-one path ran")

        answers = await asyncio.gather(*(group.write(fail, payload=p) for p in items))
        await group.aclose()
        return group, answers

    group, answers = asyncio.run(go())
    assert group.fallbacks == 0 and [a.counted.used for a in answers] == [500] * 5
    with ctx.db.read() as conn:
        assert conn.execute("SELECT COUNT(*) AS n FROM attempts").fetchone()["n"] == 5
        assert conn.execute("SELECT SUM(reserved) AS r FROM key_day_counters").fetchone()["r"] == 0
        assert {r["status"] for r in conn.execute("SELECT status FROM subtasks")} == {"success"}


@pytest.mark.backends("sqlite")  # EXPLAIN QUERY PLAN is SQLite's (as in test_bounded_reads.py)
def test_the_group_settlement_reads_no_history(ctx: Context) -> None:
    """Every statement of a group settlement goes through an index (tests/store/test_bounded_reads.py's rule):
    a settlement's cost does not grow with the ledger's history."""
    specs = [{"key": i % 3, "state": "open", "leg_day": DAY, "held": 2_000, "used": 0, "lease_due": False,
              "attempts": 1} for i in range(4)]
    with ctx.db.write() as conn:
        build(conn, specs, [{"session": 0, "request": 1, "input": 5, "output": 5}], {})
    reports = [{"session": i, "request": i % 2, "input": 3_000, "output": 3_000, "implausible": False,
                "later_s": 0 if i < 2 else 90, "other_key": False, "status": "success", "estimated": False}
               for i in range(4)]
    items = payloads(ctx, specs, reports)
    statements: list[str] = []
    raw = ctx.db._connection()  # type: ignore[attr-defined]
    raw.set_trace_callback(statements.append)
    try:
        with ctx.db.write() as conn:
            answers = settle_group(ctx, conn, items)
    finally:
        raw.set_trace_callback(None)
    assert all(ok for ok, _ in answers)
    explained = 0
    for sql in dict.fromkeys(statements):
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE")):
            continue
        explained += 1
        for row in raw.execute("EXPLAIN QUERY PLAN " + sql):
            detail = row["detail"]
            assert not detail.startswith("SCAN ") or detail.split()[1] not in TABLES, (sql, detail)
    assert explained >= 8
