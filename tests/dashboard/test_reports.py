"""The read model's queries stay bounded and indexed as history grows (SQLite's plan; the same indexes exist
in every ledger through migration 0009)."""

from __future__ import annotations

from datetime import UTC, datetime

from butler_skill.host.context import Context
from butler_skill.store.reports import Reports, history_days


def _plan(ctx: Context, sql: str, args: tuple[object, ...]) -> str:
    conn = ctx.db._connection()
    return " | ".join(r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args))


def test_the_window_queries_use_indexes(ctx: Context) -> None:
    plans = {
        "history": _plan(ctx, "SELECT day, key_id, used, reserved, cost_usd FROM key_day_counters"
                              " WHERE day >= ? AND day <= ? ORDER BY day, key_id", ("2026-10-26", "2026-11-24")),
        "labels": _plan(ctx, "SELECT COUNT(*) FROM sessions WHERE created_at >= ? AND task_id IS NULL", ("x",)),
        "tasks": _plan(ctx, "SELECT id FROM tasks ORDER BY created_at DESC, id DESC LIMIT 5", ()),
        "alerts": _plan(ctx, "SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY created_at, id LIMIT 5", ()),
        "fingerprint": _plan(ctx, "SELECT MAX(created_at) FROM sessions", ()),
    }
    for name, plan in plans.items():
        assert "USING" in plan and "SCAN sessions" not in plan and "SCAN key_day_counters" not in plan, (name, plan)
    # Open sessions are read through the partial index of open leases: only the open ones, never the history.
    for sql in ("SELECT MAX(lease_expires_at) FROM sessions WHERE state = 'open'",
                "SELECT COUNT(*) FROM sessions WHERE state = 'open'",
                "SELECT * FROM sessions WHERE 1=1 AND state = 'open'"):
        assert "USING INDEX sessions_open_lease" in _plan(ctx, sql, ()), sql


def test_history_days_are_thirty_utc_days_ending_today() -> None:
    days = history_days(datetime(2026, 3, 1, 0, 30, tzinfo=UTC))
    assert len(days) == 30 and days[-1] == "2026-03-01" and days[0] == "2026-01-31"
    assert days == sorted(days) and len(set(days)) == 30


def test_an_empty_ledger_reads_empty(ctx: Context) -> None:
    reports = Reports(ctx.db)
    now = ctx.now()
    assert reports.history(now) == [] and reports.spend_by_label(now) == [] and reports.recent_tasks() == []
    assert reports.open_sessions() == [] and reports.pending_alerts() == [] and reports.open_session_count() == 0
    assert reports.version(now) == reports.version(now)
