"""The dashboard's read model: figures over days, labels and tasks, read from the ledger's own tables.

Every query is bounded (a day range, a LIMIT) and served by an index (migration 0009), so the page costs
the same on the first day and after a year of history. SQL stays in the subset SQLite and PostgreSQL share:
`?` placeholders, no date functions (days and times are computed in Python and compared as text).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from pydantic import BaseModel

from butler_skill.core import alerts
from butler_skill.core.days import utc_day
from butler_skill.core.pricing import from_pico, usd
from butler_skill.core.tally import spend_key
from butler_skill.models import Alert, SessionInfo
from butler_skill.store.db import Database
from butler_skill.store.ledger import _session
from butler_skill.store.reads import PENDING_ALERTS
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
            totals = _spend(conn, "label", now, days)
        rows = _top(totals, limit)
        return [SpendRow(name=name, sessions=n, allocated=allocated, used=used, cost=usd(from_pico(cost)))
                for name, (n, allocated, used, cost) in rows]

    def spend_by_task(self, now: datetime, days: int = HISTORY_DAYS, limit: int = 50) -> list[SpendRow]:
        """Sessions of tasks in the window (every round of every sub-task), grouped by task."""
        with self.db.read() as conn:
            totals = _spend(conn, "task", now, days)
            names = _task_names(conn, list(totals))
        rows = _top({t: v for t, v in totals.items() if t in names}, limit)
        return [SpendRow(name=names[task_id], task_id=task_id, sessions=n, allocated=allocated, used=used,
                         cost=usd(from_pico(cost))) for task_id, (n, allocated, used, cost) in rows]

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

    def pending_alerts(self, now: datetime, limit: int = 50) -> list[Alert]:
        """The alerts pending at `now` (`core.alerts`), oldest first, at most `limit`."""
        with self.db.read() as conn:
            rows = conn.execute(PENDING_ALERTS + " LIMIT ?",
                                (ts(alerts.overruns_over_before(now)), min(limit, MAX_ROWS))).fetchall()
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
                # Sessions (no index on created_at or updated_at: each would be one more page in every allocation's
                # commit): a new one moves today's grants (counted by its reserve), a close or expiry the count of
                # open ones (and writes an event), a report today's counters, a renewed lease the latest open lease.
                _one(conn, "SELECT COALESCE(SUM(grants), 0) AS v FROM key_day_counters WHERE day = ?",
                     (utc_day(now),)),
                _one(conn, "SELECT MAX(lease_expires_at) AS v FROM sessions WHERE state = 'open'", ()),
                _one(conn, "SELECT COUNT(*) AS v FROM sessions WHERE state = 'open'", ()),
                _one(conn, "SELECT MAX(updated_at) AS v FROM subtasks", ()),
                _one(conn, "SELECT MAX(seq) AS v FROM events", ()),
                _one(conn, "SELECT MAX(seq) AS v FROM treasury_intent_events", ()),
                _one(conn, "SELECT COUNT(*) AS v FROM key_cooldowns WHERE until > ?", (ts(now),)),
            ]
        return "|".join(str(p) for p in parts)


Totals = dict[str, tuple[int, int, int, int]]  # name -> (sessions, allocated, used, cost in pico-USD)


def _spend(conn: sqlite3.Connection, group: str, now: datetime, days: int) -> Totals:
    """Per label (`group` "label") or task ("task"), what the sessions opened in the window spent: the ended ones
    from their per-day rollup (at most days x names rows, by its primary key), the open ones read live through the
    partial index of open leases (bounded by the work in flight, not by history)."""
    first = history_days(now, days)[0]
    totals: dict[str, list[int]] = {}
    for r in conn.execute("SELECT name, SUM(sessions) AS n, SUM(allocated) AS allocated, SUM(used) AS used,"
                          " SUM(cost_pusd) AS cost FROM session_spend_days WHERE grp = ? AND day >= ? GROUP BY name",
                          (group, first)):
        totals[r["name"]] = [int(r["n"]), int(r["allocated"]), int(r["used"]), int(r["cost"])]
    for r in conn.execute("SELECT label, task_id, allocated, used, cost_pusd, created_at FROM sessions"
                          " WHERE state = 'open'"):
        grp, day, name = spend_key(r["label"], r["task_id"], r["created_at"])
        if grp != group or day < first:
            continue
        figures = totals.setdefault(name, [0, 0, 0, 0])
        figures[0] += 1
        figures[1] += int(r["allocated"])
        figures[2] += int(r["used"])
        figures[3] += int(r["cost_pusd"])
    return {name: (n, allocated, used, cost) for name, (n, allocated, used, cost) in totals.items()}


def _top(totals: Totals, limit: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The most expensive first (then most used, then by name), at most `limit` (and MAX_ROWS)."""
    ranked = sorted(totals.items(), key=lambda item: (-item[1][3], -item[1][2], item[0]))
    return ranked[:min(limit, MAX_ROWS)]


def _task_names(conn: sqlite3.Connection, task_ids: list[str]) -> dict[str, str]:
    """The names of the tasks of these ids that exist (a few SELECTs by primary key, 500 ids each)."""
    names: dict[str, str] = {}
    for i in range(0, len(task_ids), 500):
        part = task_ids[i:i + 500]
        rows = conn.execute(f"SELECT id, name FROM tasks WHERE id IN ({','.join('?' * len(part))})", part)
        names.update((r["id"], r["name"]) for r in rows)
    return names


def _one(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> object:
    row = conn.execute(sql, args).fetchone()
    return row["v"] if row is not None else None
