"""Properties of the read model: whatever usage lands on whatever days, the 30-day history and the spend per
label hold exactly what the tools recorded in the window, and nothing from before it; the spend per label and per
task (per-day rollups of ended sessions plus the open ones) equals reading every session of the window."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.days import utc_day
from butler_skill.core.pricing import from_pico, usd
from butler_skill.gateway import dashboard_data as data
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.store.ledger import release_session_in
from butler_skill.store.reports import Reports, history_days
from tests.dashboard.seed import MovingClock, env_for, ok

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
work = st.lists(st.tuples(
    st.integers(min_value=0, max_value=40),            # days back
    st.sampled_from(["groq", "openai", "anthropic"]),  # preferred provider
    st.sampled_from(["a", "b", None]),                 # label
    st.integers(min_value=1, max_value=4_000),         # tokens used
    st.integers(min_value=0, max_value=86_399),        # second of that day
), max_size=12)


@settings(max_examples=20, deadline=None)
@given(work)
def test_history_and_spend_hold_exactly_the_window(items: list[tuple[int, str, str | None, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        clock = MovingClock(NOW)
        ctx = Context(env=env_for(Path(folder)), clock=clock)
        try:
            expected_days: dict[tuple[str, str], int] = defaultdict(int)
            expected_labels: dict[str, int] = defaultdict(int)
            window = set(history_days(NOW))
            for n, (back, provider, label, used, second) in enumerate(items):
                day_start = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC) - timedelta(days=back)
                clock.now = min(day_start + timedelta(seconds=second), NOW)
                ask = {"prd_text": "x", "tokens": used, "preferred_provider": provider}
                alloc = ok(call_tool("allocate_tokens", {**ask, **({"label": label} if label else {})}, ctx))
                ok(call_tool("record_usage", {"session_id": alloc["session_id"], "request_id": f"r{n}",
                                              "input_tokens": used, "output_tokens": 0, "close": True}, ctx))
                day = utc_day(clock.now)
                if day in window:
                    expected_days[(day, alloc["key_id"])] += used
                    expected_labels[label or ""] += used
            clock.now = NOW
            rows = Reports(ctx.db).history(NOW)
            assert {(r.day, r.key_id): r.used for r in rows} == dict(expected_days)
            assert all(r.reserved == 0 for r in rows)  # every session was closed
            hist = data.history(ctx)
            assert sum(sum(s.tokens) for s in hist.providers.values()) == sum(expected_days.values())
            labels = {r.name: r.used for r in Reports(ctx.db).spend_by_label(NOW)}
            assert labels == dict(expected_labels)
        finally:
            ctx.close()


# One step of random work: (kind, hours the clock moves first, a label or which session, tokens).
steps = st.lists(st.tuples(
    st.sampled_from(["allocate", "allocate", "use", "use_close", "close", "release", "late_use", "plan", "submit"]),
    st.sampled_from([0, 0, 1, 2, 24, 72, 240]),        # hours forward (leases last 1 hour: some expire)
    st.sampled_from(["a", "b", None]),
    st.integers(min_value=0, max_value=50),            # which session / sub-task, modulo how many there are
    st.integers(min_value=1, max_value=3_000),         # tokens
), max_size=25)


def _definition(ctx: Context, group: str, now: datetime) -> dict[str, tuple[int, int, int, int]]:
    """What the spend per label or task means, read the plain way (every session opened in the window): what the
    per-day rollup of ended sessions plus the open ones must equal."""
    start = f"{history_days(now)[0]}T00:00:00.000000Z"
    name = "COALESCE(label, '')" if group == "label" else "task_id"
    where = "task_id IS NULL" if group == "label" else "task_id IN (SELECT id FROM tasks)"
    with ctx.db.read() as conn:
        rows = conn.execute(f"SELECT {name} AS name, COUNT(*) AS n, SUM(allocated) AS a, SUM(used) AS u,"
                            f" SUM(cost_pusd) AS c FROM sessions WHERE created_at >= ? AND {where} GROUP BY {name}",
                            (start,)).fetchall()
    return {r["name"]: (int(r["n"]), int(r["a"]), int(r["u"]), int(r["c"])) for r in rows}


@settings(max_examples=40, deadline=None)
@given(steps)
def test_spend_rollups_equal_reading_every_session_of_the_window(
        items: list[tuple[str, int, str | None, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        clock = MovingClock(NOW - timedelta(days=33))  # some work before the window
        ctx = Context(env=env_for(Path(folder)), clock=clock)
        try:
            sessions: list[str] = []
            ended: list[str] = []
            subtasks: list[str] = []
            for n, (kind, hours, label, pick, tokens) in enumerate(items):
                clock.now = min(clock.now + timedelta(hours=hours), NOW)
                if kind == "allocate" or (kind != "plan" and not sessions and kind != "submit"):
                    ask = {"prd_text": "x", "tokens": tokens, **({"label": label} if label else {})}
                    sessions.append(ok(call_tool("allocate_tokens", ask, ctx))["session_id"])
                elif kind in ("use", "use_close", "late_use"):
                    # late_use: usage on a session that ended (closed here, or expired): it still counts.
                    chosen = (ended or sessions)[pick % len(ended or sessions)] if kind == "late_use" \
                        else sessions[pick % len(sessions)]
                    ok(call_tool("record_usage", {"session_id": chosen, "request_id": f"r{n}",
                                                  "input_tokens": tokens, "output_tokens": 1,
                                                  "close": kind == "use_close"}, ctx))
                    if kind == "use_close":
                        ended.append(chosen)
                elif kind == "close":
                    ended.append(sessions[pick % len(sessions)])
                    ctx.ledger.close_session(ended[-1], clock.now)
                elif kind == "release":  # what the sub-agent runner does when a sub-task ends (no event)
                    ended.append(sessions[pick % len(sessions)])
                    with ctx.db.write() as conn:
                        release_session_in(conn, ended[-1], clock.now)
                elif kind == "plan":
                    plan = call_tool("plan_agents", {"name": f"t{n}", "description": "1. a\n2. b",
                                                     "budget": 2_000 + tokens}, ctx)
                    if plan["ok"]:
                        subtasks += [a["session_id"] for a in plan["result"]["agents"]]
                elif kind == "submit" and subtasks:
                    call_tool("submit_result", {"session_id": subtasks[pick % len(subtasks)], "status": "success",
                                                "usage": {"input_tokens": tokens, "output_tokens": 2}}, ctx)
            clock.now = NOW
            reports = Reports(ctx.db)
            labels = {r.name: (r.sessions, r.allocated, r.used, r.cost) for r in reports.spend_by_label(NOW)}
            tasks = {r.task_id: (r.sessions, r.allocated, r.used, r.cost) for r in reports.spend_by_task(NOW)}
            for got, group in ((labels, "label"), (tasks, "task")):
                want = {k: (s, a, u, usd(from_pico(c))) for k, (s, a, u, c) in _definition(ctx, group, NOW).items()}
                assert got == want
        finally:
            ctx.close()
