"""The dashboard's read model: figures over days, labels and tasks, read from the ledger's own tables.

Every query is bounded (a day range, a LIMIT) and served by an index (migration 0009), so the page costs
the same on the first day and after a year of history. SQL stays in the subset SQLite and PostgreSQL share:
`?` placeholders, no date functions (days and times are computed in Python and compared as text).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from pydantic import BaseModel

from butler_skill.core.days import utc_day
from butler_skill.core.pricing import from_pico, usd
from butler_skill.models import Alert, SessionInfo
from butler_skill.store.db import Database
from butler_skill.store.ledger import _session
from butler_skill.store.timestamps import parse_ts, ts

HISTORY_DAYS = 30
MAX_ROWS = 200


class DayKeyFigures(BaseModel):
    """What one key counted on one UTC day."""

    day: str
    key_id: str
    used: int
    reserved: int
    cost: float


class SpendRow(BaseModel):
    """Tokens and cost of the sessions that share a label (or a task), over the history window."""

    name: str
    task_id: str | None = None
    sessions: int
    allocated: int
    used: int
    cost: float


class CooldownRow(BaseModel):
    key_id: str
    until: datetime
    reason: str
    strikes: int


class TaskHead(BaseModel):
    task_id: str
    name: str
    budget: int
    mode: str
    created_at: datetime


def history_days(now: datetime, days: int = HISTORY_DAYS) -> list[str]:
    """The last `days` UTC days ending today, oldest first."""
    return [utc_day(now - timedelta(days=n)) for n in range(days - 1, -1, -1)]


class Reports:
    def __init__(self, db: Database) -> None:
        self.db = db

    def history(self, now: datetime, days: int = HISTORY_DAYS) -> list[DayKeyFigures]:
        """Every key's counters for the last `days` UTC days (at most keys × days rows, by the day index)."""
        span = history_days(now, days)
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT day, key_id, used, reserved, cost_pusd FROM key_day_counters"
                " WHERE day >= ? AND day <= ? ORDER BY day, key_id", (span[0], span[-1]),
            ).fetchall()
        return [DayKeyFigures(day=r["day"], key_id=r["key_id"], used=int(r["used"]), reserved=int(r["reserved"]),
                              cost=usd(from_pico(int(r["cost_pusd"])))) for r in rows]

    def spend_by_label(self, now: datetime, days: int = HISTORY_DAYS, limit: int = 50) -> list[SpendRow]:
        """Sessions opened outside a task in the window, grouped by label, most expensive first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT COALESCE(label, '') AS name, COUNT(*) AS n, SUM(allocated) AS allocated, SUM(used) AS used,"
                " SUM(cost_pusd) AS cost FROM sessions WHERE created_at >= ? AND task_id IS NULL"
                " GROUP BY COALESCE(label, '') ORDER BY cost DESC, used DESC, name LIMIT ?",
                (_window_start(now, days), min(limit, MAX_ROWS)),
            ).fetchall()
        return [SpendRow(name=r["name"], sessions=int(r["n"]), allocated=int(r["allocated"]), used=int(r["used"]),
                         cost=usd(from_pico(int(r["cost"] or 0)))) for r in rows]

    def spend_by_task(self, now: datetime, days: int = HISTORY_DAYS, limit: int = 50) -> list[SpendRow]:
        """Sessions of tasks in the window (every round of every sub-task), grouped by task."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT s.task_id AS task_id, t.name AS name, COUNT(*) AS n, SUM(s.allocated) AS allocated,"
                " SUM(s.used) AS used, SUM(s.cost_pusd) AS cost FROM sessions s JOIN tasks t ON t.id = s.task_id"
                " WHERE s.created_at >= ? AND s.task_id IS NOT NULL"
                " GROUP BY s.task_id, t.name ORDER BY cost DESC, used DESC, s.task_id LIMIT ?",
                (_window_start(now, days), min(limit, MAX_ROWS)),
            ).fetchall()
        return [SpendRow(name=r["name"], task_id=r["task_id"], sessions=int(r["n"]), allocated=int(r["allocated"]),
                         used=int(r["used"]), cost=usd(from_pico(int(r["cost"] or 0)))) for r in rows]

    def cooldowns(self, now: datetime) -> list[CooldownRow]:
        """Keys resting now (one row per key at most: the table is bounded by the keys file)."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM key_cooldowns WHERE until > ? ORDER BY until, key_id",
                                (ts(now),)).fetchall()
        return [CooldownRow(key_id=r["key_id"], until=parse_ts(r["until"]), reason=r["reason"],
                            strikes=int(r["strikes"])) for r in rows]

    def recent_tasks(self, limit: int = 10) -> list[TaskHead]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, name, budget, mode, created_at FROM tasks ORDER BY created_at DESC, id DESC LIMIT ?",
                (min(limit, MAX_ROWS),),
            ).fetchall()
        return [TaskHead(task_id=r["id"], name=r["name"], budget=int(r["budget"]), mode=r["mode"],
                         created_at=parse_ts(r["created_at"])) for r in rows]

    def open_sessions(self, limit: int = 100) -> list[SessionInfo]:
        """Open sessions, the ones whose lease ends first at the top (the partial index on open leases)."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM sessions WHERE state = 'open' ORDER BY lease_expires_at, id LIMIT ?",
                (min(limit, MAX_ROWS),),
            ).fetchall()
        return [_session(r) for r in rows]

    def pending_alerts(self, limit: int = 50) -> list[Alert]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY created_at, id LIMIT ?",
                (min(limit, MAX_ROWS),),
            ).fetchall()
        return [Alert(alert_id=r["id"], kind=r["kind"], session_id=r["session_id"], key_id=r["key_id"],
                      message=r["message"], created_at=parse_ts(r["created_at"])) for r in rows]

    def open_session_count(self) -> int:
        with self.db.read() as conn:
            row = conn.execute("SELECT COUNT(*) AS n FROM sessions WHERE state = 'open'").fetchone()
        return int(row["n"])

    def version(self, now: datetime) -> str:
        """A fingerprint that changes whenever anything the dashboard shows changes: today's counters, the
        newest session, sub-task, history event and treasury event. Indexed reads, no scans."""
        with self.db.read() as conn:
            parts = [
                utc_day(now),
                _one(conn, "SELECT COALESCE(SUM(used), 0) AS v FROM key_day_counters WHERE day = ?", (utc_day(now),)),
                _one(conn, "SELECT COALESCE(SUM(reserved), 0) AS v FROM key_day_counters WHERE day = ?",
                     (utc_day(now),)),
                _one(conn, "SELECT COALESCE(SUM(cost_pusd), 0) AS v FROM key_day_counters WHERE day = ?",
                     (utc_day(now),)),
                # Sessions (no index on updated_at: each would be one more page in every allocation's commit):
                # a new one moves the newest created_at, a close or expiry the count of open ones (and writes an
                # event), a report today's counters, a renewed lease the latest open lease.
                _one(conn, "SELECT MAX(created_at) AS v FROM sessions", ()),
                _one(conn, "SELECT MAX(lease_expires_at) AS v FROM sessions WHERE state = 'open'", ()),
                _one(conn, "SELECT COUNT(*) AS v FROM sessions WHERE state = 'open'", ()),
                _one(conn, "SELECT MAX(updated_at) AS v FROM subtasks", ()),
                _one(conn, "SELECT MAX(seq) AS v FROM events", ()),
                _one(conn, "SELECT MAX(seq) AS v FROM treasury_intent_events", ()),
                _one(conn, "SELECT COUNT(*) AS v FROM key_cooldowns WHERE until > ?", (ts(now),)),
            ]
        return "|".join(str(p) for p in parts)


def _window_start(now: datetime, days: int) -> str:
    first = history_days(now, days)[0]
    return f"{first}T00:00:00.000000Z"


def _one(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> object:
    row = conn.execute(sql, args).fetchone()
    return row["v"] if row is not None else None
