"""What the read tools ask of the ledger, as plain values (no pydantic): today's counters and cooldowns per key,
today's costs, open sessions, pending alerts and recent events, each row as the JSON its tool returns.

Run inside one `Database.read()` snapshot, on SQLite or PostgreSQL alike (`?` placeholders, rows by column name).
The Ledger's model-returning reads (store/ledger.py) give the same figures; a property test holds them equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from butler_skill.core import alerts
from butler_skill.core.days import utc_day
from butler_skill.core.money import from_pico, usd
from butler_skill.core.rotation import threshold_tokens
from butler_skill.store.timestamps import parse_ts, ts


class Conn(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


class Budgeted(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def tokens_per_day(self) -> int: ...
    @property
    def enabled(self) -> bool: ...


class KeyDay(NamedTuple):
    """One key's day: its budget, today's counters and a running cooldown (the fields of selection.KeyView a
    report needs, plus the model)."""

    key_id: str
    provider: str
    scope: str
    model: str
    tokens_per_day: int
    used: int
    reserved: int
    cooldown_until: datetime | None
    enabled: bool

    @property
    def remaining(self) -> int:
        return max(0, self.tokens_per_day - self.used - self.reserved)

    def cooling(self, now: datetime) -> bool:
        return self.cooldown_until is not None and self.cooldown_until > now


def json_time(moment: datetime) -> str:
    """A datetime as pydantic writes it in JSON mode: ISO 8601, microseconds only when not zero, UTC as `Z`."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def key_days(conn: Conn, keys: Iterable[Budgeted], now: datetime) -> list[KeyDay]:
    day = utc_day(now)
    counters = {r["key_id"]: r for r in conn.execute(
        "SELECT key_id, used, reserved FROM key_day_counters WHERE day = ?", (day,))}
    # Only cooldowns still running matter (an ended one reads as no cooldown), as in Ledger.key_views.
    cooldowns = {r["key_id"]: r["until"] for r in conn.execute(
        "SELECT key_id, until FROM key_cooldowns WHERE until > ?", (ts(now),))}
    days: list[KeyDay] = []
    for k in keys:
        counter = counters.get(k.id)
        until = cooldowns.get(k.id)
        days.append(KeyDay(
            key_id=k.id, provider=k.provider, scope=k.scope, model=k.model, tokens_per_day=k.tokens_per_day,
            used=int(counter["used"]) if counter else 0, reserved=int(counter["reserved"]) if counter else 0,
            cooldown_until=parse_ts(until) if until else None, enabled=k.enabled))
    return days


def costs_today(conn: Conn, now: datetime) -> dict[str, Decimal]:
    """USD per key today, exact (from the integer pico-USD counters)."""
    rows = conn.execute("SELECT key_id, cost_pusd FROM key_day_counters WHERE day = ?", (utc_day(now),))
    return {r["key_id"]: from_pico(int(r["cost_pusd"])) for r in rows}


def open_sessions(conn: Conn) -> list[dict[str, Any]]:
    """Open sessions in listing order, as models.SessionInfo in JSON."""
    rows = conn.execute("SELECT * FROM sessions WHERE state = 'open'").fetchall()
    # Sorted here by (created_at, id), as ORDER BY would (both databases compare this text byte by byte): asked to
    # order, SQLite could walk an index on created_at (one existed until migration 0015) over every session ever opened
    # rather than sort the few open ones it finds through the partial index of open leases.
    rows.sort(key=lambda r: (r["created_at"], r["id"]))
    return [{
        "session_id": r["id"], "label": r["label"], "task_id": r["task_id"], "key_id": r["key_id"],
        "allocated": r["allocated"], "used": r["used"], "held": r["leg_held"],
        "rotation_threshold": threshold_tokens(r["leg_granted"], r["threshold_ratio"]),
        "cost": usd(from_pico(int(r["cost_pusd"]))), "state": r["state"],
        "created_at": json_time(parse_ts(r["created_at"])),
    } for r in rows]


# Pending alerts (`core.alerts`): not resolved, and an overrun only on the day it was raised. The partial index of
# unresolved alerts (alerts_pending, migration 0009) serves the walk; overruns of earlier days are marked resolved
# when the next alert is raised (store.ledger.raise_alert_in), so the few it skips are one day's at most.
PENDING_ALERTS = ("SELECT * FROM alerts WHERE resolved_at IS NULL AND (kind <> 'overrun' OR created_at >= ?)"
                  " ORDER BY created_at, id")


def pending_alerts(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    """Pending alerts at `now`, oldest first, as models.Alert in JSON."""
    rows = conn.execute(PENDING_ALERTS, (ts(alerts.overruns_over_before(now)),))
    return [{"alert_id": r["id"], "kind": r["kind"], "session_id": r["session_id"], "key_id": r["key_id"],
             "message": r["message"], "created_at": json_time(parse_ts(r["created_at"]))} for r in rows]


def events(conn: Conn, kind: str | None, limit: int) -> list[dict[str, Any]]:
    """The latest `limit` events (of one kind), newest first, as models.Event in JSON."""
    sql = "SELECT * FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY seq DESC LIMIT ?"
    rows = conn.execute(sql, (kind, limit) if kind else (limit,))
    return [{"seq": r["seq"], "at": json_time(parse_ts(r["at"])), "kind": r["kind"], "session_id": r["session_id"],
             "key_id": r["key_id"], "data": json.loads(r["data"])} for r in rows]
