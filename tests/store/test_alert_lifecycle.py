"""When alerts stop being pending (core/alerts.py), on both ledgers.

An `overrun` alert is pending until the end of the UTC day it was raised on (its key-day is over; the day's
`overrun` figure goes with it); a `rotation_threshold` alert until its session rotates off the key or ends. The
reads (get_status, the dashboard) list what the rule says is pending, and raising an alert marks the overruns of
earlier days resolved at the end of their day, so the partial index of unresolved alerts stays small.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.core import alerts
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.store.ledger import raise_alert_in
from butler_skill.store.reports import Reports
from butler_skill.store.timestamps import parse_ts, ts
from tests.conftest import Clock

DAY0 = datetime(2026, 11, 22, tzinfo=UTC)


def test_the_rule() -> None:
    raised = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    midnight = datetime(2026, 11, 25, tzinfo=UTC)
    assert alerts.resolves_at("overrun", raised) == midnight
    assert alerts.pending("overrun", raised, midnight - timedelta(microseconds=1))
    assert not alerts.pending("overrun", raised, midnight)
    assert alerts.resolves_at("rotation_threshold", raised) is None
    assert alerts.pending("rotation_threshold", raised, raised + timedelta(days=400))
    assert alerts.overruns_over_before(raised) == datetime(2026, 11, 24, tzinfo=UTC)


alert_spec = st.fixed_dictionaries({
    "kind": st.sampled_from(["overrun", "overrun", "rotation_threshold"]),
    "at": st.integers(0, 4 * 86_400 - 1),  # seconds after DAY0: four UTC days
    "resolved": st.integers(0, 5).map(lambda n: n == 0),  # already resolved by an event (a rotation, a close)
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(alert_spec, max_size=12), now_s=st.integers(0, 5 * 86_400), raise_one=st.booleans())
def test_property_the_ledger_lists_what_the_rule_says_is_pending(ctx: Context, specs: list[dict[str, Any]],
                                                                 now_s: int, raise_one: bool) -> None:
    now = DAY0 + timedelta(seconds=now_s)
    with ctx.db.write() as conn:
        conn.execute("DELETE FROM alerts")
        for i, s in enumerate(specs):
            at = DAY0 + timedelta(seconds=s["at"])
            conn.execute("INSERT INTO alerts(id, session_id, key_id, kind, message, created_at, resolved_at)"
                         " VALUES (?, ?, 'k', ?, 'm', ?, ?)", (f"alr-{i:02d}", f"ses-{i}", s["kind"], ts(at),
                                                               ts(at) if s["resolved"] else None))
        if raise_one:
            raise_alert_in(conn, alert_id="alr-new", session_id="ses-new", key_id="k", kind="rotation_threshold",
                           message="m", now=now)
    rows = {f"alr-{i:02d}": (s["kind"], DAY0 + timedelta(seconds=s["at"]), s["resolved"]) for i, s in enumerate(specs)}
    if raise_one:
        rows["alr-new"] = ("rotation_threshold", now, False)
    expected = sorted((ts(at), aid) for aid, (kind, at, resolved) in rows.items()
                      if not resolved and alerts.pending(kind, at, now))
    listed = [(ts(a.created_at), a.alert_id) for a in ctx.ledger.pending_alerts(now)]
    assert listed == expected
    assert [(ts(a.created_at), a.alert_id) for a in Reports(ctx.db).pending_alerts(now, limit=100)] == expected
    with ctx.db.read() as conn:
        stored = {r["id"]: r["resolved_at"] for r in conn.execute("SELECT id, resolved_at FROM alerts")}
    for aid, (kind, at, resolved) in rows.items():
        if resolved:
            assert stored[aid] == ts(at)  # resolved by its event: untouched
        elif raise_one and not alerts.pending(kind, at, now):
            assert stored[aid] is not None and parse_ts(stored[aid]) == alerts.resolves_at(kind, at)
        else:
            assert stored[aid] is None


def test_a_late_overrun_is_listed_on_its_day_and_resolved_after_it(ctx: Context, clock: Clock) -> None:
    keys = ctx.config.resolved()
    alpha = next(k for k in keys if k.id == "alpha-1")
    session = call_tool("allocate_tokens", {"tokens": alpha.tokens_per_day, "preferred_provider": alpha.provider},
                        ctx)["result"]["session_id"]
    clock.advance(seconds=ctx.config.lease_seconds + 1)  # its lease expires: its hold goes back
    with ctx.db.write() as conn:  # and another session takes the key's whole day meanwhile
        conn.execute("UPDATE key_day_counters SET reserved = reserved + ? WHERE key_id = 'alpha-1'",
                     (alpha.tokens_per_day,))
    late = call_tool("record_usage", {"session_id": session, "request_id": "late", "input_tokens": 5_000,
                                      "output_tokens": 0}, ctx)["result"]
    assert late["alert"] is not None and late["alert"]["kind"] == "overrun" and "past its daily limit" in \
        late["alert"]["message"]
    status = call_tool("get_status", {}, ctx)["result"]
    assert [a["kind"] for a in status["alerts"]] == ["overrun"] and status["tokens"]["pending_alerts"] == 1
    # The next UTC day: the key-day is over, and so is its alert (the history keeps it).
    clock.now = datetime(clock.now.year, clock.now.month, clock.now.day, tzinfo=UTC) + timedelta(days=1, seconds=5)
    status = call_tool("get_status", {}, ctx)["result"]
    assert status["alerts"] == [] and status["tokens"]["pending_alerts"] == 0
    assert any(e["data"].get("kind") == "overrun" for e in (ev.model_dump() for ev in ctx.ledger.events("alert")))
    # The next alert raised marks it resolved, at the end of its day.
    with ctx.db.write() as conn:
        raise_alert_in(conn, alert_id="alr-next", session_id="ses-x", key_id="beta-1", kind="rotation_threshold",
                       message="m", now=clock.now)
        row = conn.execute("SELECT resolved_at FROM alerts WHERE kind = 'overrun'").fetchone()
    assert parse_ts(row["resolved_at"]) == datetime(2026, 11, 25, tzinfo=UTC)


def test_the_same_session_past_the_same_key_on_a_later_day_raises_a_new_alert(ctx: Context, clock: Clock) -> None:
    # One alert per session, key and kind while it is pending: day 1's overrun is over at midnight, so day 2's
    # overrun of the same key by the same session is a new alert, listed (not swallowed by day 1's row).
    alpha = next(k for k in ctx.config.resolved() if k.id == "alpha-1")
    session = call_tool("allocate_tokens", {"tokens": alpha.tokens_per_day, "preferred_provider": alpha.provider},
                        ctx)["result"]["session_id"]
    clock.advance(seconds=ctx.config.lease_seconds + 1)
    with ctx.db.write() as conn:
        conn.execute("UPDATE key_day_counters SET reserved = reserved + ? WHERE key_id = 'alpha-1'",
                     (alpha.tokens_per_day,))
    day1 = call_tool("record_usage", {"session_id": session, "request_id": "day1", "input_tokens": 5_000,
                                      "output_tokens": 0}, ctx)["result"]
    assert day1["alert"] is not None and day1["alert"]["kind"] == "overrun"
    clock.now = datetime(clock.now.year, clock.now.month, clock.now.day, tzinfo=UTC) + timedelta(days=1, seconds=5)
    day2 = call_tool("record_usage", {"session_id": session, "request_id": "day2",
                                      "input_tokens": alpha.tokens_per_day + 5, "output_tokens": 0}, ctx)["result"]
    assert day2["alert"] is not None and day2["alert"]["kind"] == "overrun"
    status = call_tool("get_status", {}, ctx)["result"]
    assert [a["kind"] for a in status["alerts"]] == ["overrun"] and status["tokens"]["pending_alerts"] == 1
    again = call_tool("record_usage", {"session_id": session, "request_id": "day2-more", "input_tokens": 5,
                                       "output_tokens": 0}, ctx)["result"]
    assert again["alert"] is None  # still once while day 2's is pending
