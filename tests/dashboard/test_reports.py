"""The read model's queries stay bounded and indexed as history grows (SQLite's plan; the same indexes exist
in every ledger through migrations 0009 and 0015)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from butler_skill.gateway import dashboard_data as data
from butler_skill.host.context import Context
from butler_skill.store.reports import Reports, history_days
from tests.dashboard.conftest import TODAY
from tests.dashboard.seed import MovingClock, env_for, seed_month
from tests.store.test_bounded_reads import ALL_TIME


def _plan(ctx: Context, sql: str, args: tuple[object, ...]) -> str:
    conn = ctx.db._connection()
    return " | ".join(r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))


def test_the_window_queries_use_indexes(tmp_path: Path) -> None:
    # A month of work through the tools (open and ended sessions, a task), then every statement the read model
    # really runs (SQLite's trace), each explained: none scans a table that grows with history, except through a
    # partial index of what is live (open sessions, pending alerts) or under a LIMIT (the treasury panel's all-time
    # totals aside, as in tests/store/test_bounded_reads.py).
    clock = MovingClock(TODAY)
    ctx = Context(env=env_for(tmp_path), clock=clock)
    try:
        seed_month(ctx, clock, TODAY)
        conn = ctx.db._connection()
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            data.snapshot(ctx)
            data.version(ctx)
            data.history(ctx)
        finally:
            conn.set_trace_callback(None)
        history = ("sessions", "usage_records", "events", "alerts", "tasks", "subtasks", "attempts",
                   "key_day_counters", "session_spend_days")
        explained = set()
        for sql in dict.fromkeys(statements):
            if not sql.lstrip().upper().startswith("SELECT") or any(total in sql for total in ALL_TIME):
                continue
            for detail in (r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql)):
                if detail.startswith("SCAN "):
                    table, index = detail.split()[1], detail.split("INDEX ")[-1] if "INDEX " in detail else None
                    assert table not in history or index in ("sessions_open_lease", "alerts_pending") \
                        or " LIMIT " in sql, (sql, detail)
                explained.add(sql)
        assert any("session_spend_days" in sql for sql in explained)  # the trace saw the spend reads
        assert any("grants" in sql for sql in explained)  # and the fingerprint's
    finally:
        ctx.close()
    # Open sessions are read through the partial index of open leases: only the open ones, never the history.
    for sql in ("SELECT MAX(lease_expires_at) FROM sessions WHERE state = 'open'",
                "SELECT COUNT(*) FROM sessions WHERE state = 'open'",
                "SELECT * FROM sessions WHERE 1=1 AND state = 'open'",
                "SELECT label, task_id, allocated, used, cost_pusd, created_at FROM sessions WHERE state = 'open'"):
        fresh = Context(env=env_for(tmp_path), clock=clock)
        try:
            assert "USING INDEX sessions_open_lease" in _plan(fresh, sql, ()), sql
        finally:
            fresh.close()


def test_history_days_are_thirty_utc_days_ending_today() -> None:
    days = history_days(datetime(2026, 3, 1, 0, 30, tzinfo=UTC))
    assert len(days) == 30 and days[-1] == "2026-03-01" and days[0] == "2026-01-31"
    assert days == sorted(days) and len(set(days)) == 30


def test_an_empty_ledger_reads_empty(ctx: Context) -> None:
    reports = Reports(ctx.db)
    now = ctx.now()
    assert reports.history(now) == [] and reports.spend_by_label(now) == [] and reports.recent_tasks() == []
    assert reports.open_sessions() == [] and reports.pending_alerts(now) == [] and reports.open_session_count() == 0
    assert reports.version(now) == reports.version(now)
