"""The reference definition of settling one usage report: the ledger's rules written out statement by statement,
as `store.ledger.commit_usage_in` and `sessions.commit_in` stated them before both paths became `core.settlement`
(a group of one, or many). Kept here, apart from the code, so the property in test_group_settlement.py compares
the settlement code with an independent statement of the rules, not with itself.

The rules (DESIGN.md, "The ledger's rules"): idempotent by request id (the same id with the same figures in the same
session changes nothing, with other figures it is a conflict); usage belongs to the UTC day it is reported on (a
leg reserved on an earlier day gives that day's hold back first and, for an open session, holds the same again
today when it still fits under the key's limit); usage is counted honestly past a hold or a limit (what was held is
consumed first); only an open session renews its lease; usage after a session ended joins its day's spend rollup;
a settlement that leaves its key-day counting more than the key's limit raises the `overrun` alert.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from butler_skill import sessions
from butler_skill.config import model_prices
from butler_skill.core import pricing, reporting
from butler_skill.core.days import utc_day
from butler_skill.core.pricing import from_pico, money, to_pico
from butler_skill.core.selection import KeyView
from butler_skill.core.usage import Usage
from butler_skill.errors import Conflict, UnknownSession
from butler_skill.host.context import Context
from butler_skill.models import Alert, ResolvedKey
from butler_skill.store.tasks import finish_in
from butler_skill.store.timestamps import parse_ts, ts
from butler_skill.subagents.runner import Settled, Settlement

_FIGURES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
            "web_search_requests")
_SPEND = ("INSERT INTO session_spend_days(grp, day, name, sessions, allocated, used, cost_pusd) VALUES (?,?,?,?,?,?,?)"
          " ON CONFLICT (grp, day, name) DO UPDATE SET sessions = session_spend_days.sessions + excluded.sessions,"
          " allocated = session_spend_days.allocated + excluded.allocated,"
          " used = session_spend_days.used + excluded.used,"
          " cost_pusd = session_spend_days.cost_pusd + excluded.cost_pusd")


def _session_row(conn: Any, session_id: str) -> Any:
    row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise UnknownSession(f"no session {session_id!r}", session_id=session_id)
    return row


def _spend_add(conn: Any, row: Any, used: int, cost_pusd: int) -> None:
    if not (used or cost_pusd):
        return
    group, name = ("label", row["label"] or "") if row["task_id"] is None else ("task", row["task_id"])
    conn.execute(_SPEND, (group, row["created_at"][:10], name, 0, 0, used, cost_pusd))


def _carry_leg(conn: Any, row: Any, day: str, key_limit: int | None) -> None:
    """A leg reserved on an earlier day: its hold goes back to that day; an open session holds the same again on
    `day` when it fits under the limit (a grant of nothing always fits), else nothing."""
    held = row["leg_held"]
    conn.execute("UPDATE key_day_counters SET reserved = reserved - ? WHERE key_id = ? AND day = ?",
                 (held, row["key_id"], row["leg_day"]))
    carried = 0
    if row["state"] == "open" and key_limit is not None:
        if held <= 0:
            carried = held
        else:
            conn.execute("INSERT INTO key_day_counters(key_id, day) VALUES (?, ?) ON CONFLICT (key_id, day) DO NOTHING",
                         (row["key_id"], day))
            cur = conn.execute("UPDATE key_day_counters SET reserved = reserved + ?"
                               " WHERE key_id = ? AND day = ? AND used + reserved + ? <= ?",
                               (held, row["key_id"], day, held, key_limit))
            carried = held if cur.rowcount == 1 else 0
    conn.execute("UPDATE sessions SET leg_day = ?, leg_held = ? WHERE id = ?", (day, carried, row["id"]))


def commit_usage(conn: Any, *, request_id: str, session_id: str, usage: Usage, cost_usd: Decimal, now: datetime,
                 lease_seconds: int, key_limit: int | None) -> tuple[bool, int, int | None]:
    """Settle one report; (duplicate, the session's tokens used after it, its key-day's used + reserved after it)."""
    pusd = to_pico(money(cost_usd))
    cost_real = float(from_pico(pusd))
    total = usage.counted_tokens
    prior = conn.execute("SELECT * FROM usage_records WHERE request_id = ?", (request_id,)).fetchone()
    if prior is not None:
        given = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
                 usage.cache_write_1h_tokens, usage.web_search_requests)
        if prior["session_id"] != session_id or tuple(prior[f] for f in _FIGURES) != given:
            raise Conflict(f"request {request_id} was already settled with different usage", request_id=request_id)
        return True, int(_session_row(conn, session_id)["used"]), None
    row = _session_row(conn, session_id)
    day = utc_day(now)
    if row["leg_day"] != day:
        _carry_leg(conn, row, day, key_limit)
        row = _session_row(conn, session_id)
    key_id = row["key_id"]
    consumed = min(total, row["leg_held"])
    conn.execute(
        "INSERT INTO usage_records(request_id, session_id, key_id, day, input_tokens, output_tokens,"
        " cache_read_tokens, cache_write_tokens, total_tokens, cost_usd, cost_reported, estimated,"
        " recorded_at, cost_pusd, upstream_cost_pusd, cache_write_1h_tokens, web_search_requests)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (request_id, session_id, key_id, day, usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
         usage.cache_write_tokens, total, cost_real, int(usage.cost_usd is not None), int(usage.estimated), ts(now),
         pusd, to_pico(usage.upstream_cost_usd) if usage.upstream_cost_usd is not None else None,
         usage.cache_write_1h_tokens, usage.web_search_requests),
    )
    conn.execute("INSERT INTO key_day_counters(key_id, day) VALUES (?, ?) ON CONFLICT (key_id, day) DO NOTHING",
                 (key_id, day))
    counter = conn.execute(
        "UPDATE key_day_counters SET used = used + ?, reserved = reserved - ?, cost_usd = cost_usd + ?,"
        " cost_pusd = cost_pusd + ? WHERE key_id = ? AND day = ? RETURNING used, reserved",
        (total, consumed, cost_real, pusd, key_id, day)).fetchone()
    ended = row["state"] != "open"
    lease = row["lease_expires_at"] if ended else ts(now + timedelta(seconds=lease_seconds))
    if ended:
        _spend_add(conn, row, total, pusd)
    conn.execute(
        "UPDATE sessions SET used = used + ?, cost_usd = cost_usd + ?, cost_pusd = cost_pusd + ?,"
        " leg_held = leg_held - ?, leg_used = leg_used + ?, lease_expires_at = ?, updated_at = ? WHERE id = ?",
        (total, cost_real, pusd, consumed, total, lease, ts(now), session_id))
    return False, int(row["used"]) + total, int(counter["used"]) + int(counter["reserved"])


def commit_in(ctx: Context, conn: sqlite3.Connection, session_id: str, request_id: str, usage: Usage, *,
              key: ResolvedKey, now: datetime) -> tuple[bool, int, Decimal, Alert | None]:
    """`sessions.commit_in` by the reference rules: exact price, bounds, settlement, the `overrun` alert read from
    the key's view when the key-day went past the limit. (duplicate, used, cost, alert)."""
    cost = pricing.cost_of(usage, model_prices(key))
    sessions._plausible(usage, cost, key.id)
    duplicate, used, counted = commit_usage(
        conn, request_id=sessions.scoped_request_id(session_id, request_id), session_id=session_id, usage=usage,
        cost_usd=cost, now=now, lease_seconds=ctx.config.lease_seconds, key_limit=key.tokens_per_day)
    alert = None
    if not duplicate and (counted or 0) > key.tokens_per_day:
        view = key_view_in(conn, key, now)
        over = reporting.key_overrun(view)
        if over:
            row = _session_row(conn, session_id)
            alert = sessions._overrun_alert_in(ctx, conn, key, session_id, row["key_id"], view.used + view.reserved,
                                               over, row["state"], now)
    return duplicate, used, cost, alert


def settle_one(ctx: Context, conn: sqlite3.Connection, payload: Settlement) -> Settled:
    """`runner.settle_one` by the reference rules: the usage, then the sub-task's end (its session released), and
    the sub-task's output and error as its row now holds them."""
    r, f = payload.report, payload.finish
    duplicate, used, cost, alert = commit_in(ctx, conn, r.session_id, r.request_id, r.usage, key=r.key, now=r.now)
    finish_in(conn, task_id=f.task_id, st_id=f.st_id, session_id=r.session_id, status=f.status, now=f.now,
              output=f.output, error=f.error, attempt=f.attempt)
    row = conn.execute("SELECT output, error FROM subtasks WHERE task_id = ? AND id = ?", (f.task_id, f.st_id)
                       ).fetchone()
    return Settled(sessions.Counted(duplicate, used, cost, alert), row["output"] if row else None,
                   row["error"] if row else None)


def key_view_in(conn: sqlite3.Connection, key: ResolvedKey, now: datetime) -> KeyView:
    """One key's view (its counter and cooldown only): what `key_views_in` says of it, without reading the
    counters of every other key."""
    counter = conn.execute("SELECT used, reserved FROM key_day_counters WHERE key_id = ? AND day = ?",
                           (key.id, utc_day(now))).fetchone()
    cool = conn.execute("SELECT until FROM key_cooldowns WHERE key_id = ? AND until > ?", (key.id, ts(now))).fetchone()
    return KeyView(
        key_id=key.id, provider=key.provider, scope=key.scope, tokens_per_day=key.tokens_per_day,
        used=int(counter["used"]) if counter else 0, reserved=int(counter["reserved"]) if counter else 0,
        price_in_per_m=key.price_in_per_m, price_out_per_m=key.price_out_per_m,
        cooldown_until=parse_ts(cool["until"]) if cool else None, enabled=key.enabled,
    )
