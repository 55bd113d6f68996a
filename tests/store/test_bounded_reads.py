"""Today's questions never read history (issue 12): every statement the read tools, allocation, settlement and
the treasury's policy run is answered through an index, never by scanning a table that grows with history.

The statements are the ones the tools really run (SQLite's trace of the connection), each explained by
SQLite's query planner. Two all-time totals are the exception and say so: the treasury's ledger-derived credit
sums every key's counters (bounded by keys x days) and every USDC entry sent to a provider.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.store.timestamps import ts

# SQLite's planner explains the plans; PostgreSQL runs the same migrations, so it has the same indexes (a parity
# test checks that), and on a test-sized table its planner rightly prefers a scan, so its plans prove nothing here.
BACKENDS = ("sqlite",)
HISTORY = ("sessions", "usage_records", "events", "alerts", "tasks", "subtasks", "attempts", "treasury_intents",
           "treasury_intent_events", "key_day_counters", "access_token_days")
# Partial indexes over what is live (open sessions, pending alerts): walking one is bounded by today's work.
BOUNDED_INDEXES = ("sessions_open_lease", "alerts_pending")
# All-time totals (not today's question): ledger-derived prepaid credit.
ALL_TIME = ("SUM(cost_pusd) AS cost FROM key_day_counters GROUP BY key_id", "FROM treasury_entries")


def _ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["ok"], envelope
    return envelope["result"]


def _seed_intents(ctx: Context) -> None:
    """Top-ups in every state, sent this month, last month and long ago."""
    now = ctx.now()
    rows = []
    for n, (state, sent_days_ago) in enumerate([
            ("complete", 400), ("complete", 40), ("complete", 1), ("failed", 3), ("rejected", None),
            ("proposed", None), ("approved", None), ("sending", 0), ("submitted", 0), ("unknown", 35),
            ("failed_safe", 2), ("failed_safe", 70)]):
        sent = ts(now - timedelta(days=sent_days_ago)) if sent_days_ago is not None else None
        created = ts(now - timedelta(days=(sent_days_ago or 0) + 1))
        rows.append((f"int{n}", f"idem{n}", "openrouter" if n % 2 else "anthropic", "0xabc", f"{n + 1}.5",
                     "top-up", state, created, created, sent))
    with ctx.db.write() as conn:
        for row in rows:
            conn.execute("INSERT INTO treasury_intents(id, idempotency_key, provider, destination, amount, reason,"
                         " state, created_at, updated_at, sent_at) VALUES (?,?,?,?,?,?,?,?,?,?)", row)


def _traced(ctx: Context, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    conn: sqlite3.Connection = ctx.db._connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        for tool, args in calls:
            _ok(call_tool(tool, args, ctx))
    finally:
        conn.set_trace_callback(None)
    return statements


def test_todays_questions_are_answered_through_indexes(ctx: Context) -> None:
    # Some history of every kind first: sessions settled and rotated, a plan with a failed sub-task, top-ups.
    for n in range(3):
        sid = _ok(call_tool("allocate_tokens", {"prd_text": "old work", "tokens": 1_000}, ctx))["session_id"]
        _ok(call_tool("record_usage", {"session_id": sid, "request_id": f"r{n}", "input_tokens": 900,
                                       "output_tokens": 10}, ctx))
        _ok(call_tool("rotate_key", {"session_id": sid}, ctx))
        _ok(call_tool("record_usage", {"session_id": sid, "request_id": f"s{n}", "input_tokens": 5,
                                       "output_tokens": 5, "close": True}, ctx))
    plan = _ok(call_tool("plan_agents", {"name": "t", "description": "1. a\n2. b", "budget": 4_000}, ctx))
    _ok(call_tool("submit_result", {"session_id": plan["agents"][0]["session_id"], "status": "failed",
                                    "error": "x"}, ctx))
    _seed_intents(ctx)
    open_session = _ok(call_tool("allocate_tokens", {"prd_text": "today", "tokens": 500}, ctx))["session_id"]

    statements = _traced(ctx, [
        ("allocate_tokens", {"prd_text": "more", "tokens": 100}),
        ("record_usage", {"session_id": open_session, "request_id": "today", "input_tokens": 50,
                          "output_tokens": 5}),
        ("get_available_keys", {}), ("monitor_usage", {}), ("get_status", {}),
        ("aggregate_task_results", {"task_id": plan["task_id"]}),
        ("treasury_status", {"refresh": False}), ("treasury_autobuy", {"mode": "evaluate"}),
    ])
    conn: sqlite3.Connection = ctx.db._connection()
    explained = 0
    for sql in dict.fromkeys(statements):
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE")):
            continue
        if any(total in sql for total in ALL_TIME):
            continue
        plan_rows = [r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        explained += 1
        for detail in plan_rows:
            if not detail.startswith("SCAN "):
                continue
            table = detail.split()[1]
            index = detail.split("INDEX ")[-1] if "INDEX " in detail else None
            assert table not in HISTORY or index in BOUNDED_INDEXES or " LIMIT " in sql, (sql, plan_rows)
    assert explained > 20  # the trace saw the tools' statements
