"""Tasks and sub-tasks in the ledger: planned together, each sub-task with its own reserved session.

A task's plan is written in one transaction: every sub-task's share is reserved, or none is. A
sub-task's tokens are read from its sessions' settled usage, so aggregates equal the ledger's figures.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from butler_skill.core.decomposition import SubTaskSpec
from butler_skill.core.selection import KeyView, largest_available
from butler_skill.errors import NoCapacity, UnknownTask
from butler_skill.models import ResolvedKey, SessionInfo
from butler_skill.store.db import Database, execute_own, executemany_own, redact_texts
from butler_skill.store.ledger import (
    expire_leases_in,
    insert_session_in,
    key_views_in,
    release_session_in,
    reserve_in,
    sessions_in,
)
from butler_skill.store.timestamps import ts

SharePicker = Callable[[list[KeyView], int], KeyView | None]


@dataclass(frozen=True)
class PlannedSubTask:
    spec: SubTaskSpec
    share: int
    session_id: str


@dataclass(frozen=True)
class SubTaskRow:
    task_id: str
    id: str
    position: int
    round: int
    title: str
    text: str
    kind: str
    priority: str
    weight_bp: int
    estimated_tokens: int
    share: int  # this round's share (a retry replaces it)
    depends_on: tuple[str, ...]
    session_id: str
    key_id: str
    status: str
    output: str | None
    error: str | None
    attempts: int
    tokens_used: int
    planned_share: int  # the share it was planned with: what every retry is capped at


class SessionLeg(NamedTuple):
    """What the runner reads of a sub-task's session before each call: its key, its share, what it still holds."""

    key_id: str
    allocated: int
    held: int


@dataclass(frozen=True)
class TaskRow:
    id: str
    name: str
    description: str
    budget: int
    mode: str
    options: dict[str, Any]
    created_at: str


class TaskStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        *,
        task_id: str,
        name: str,
        description: str,
        budget: int,
        mode: str,
        options: dict[str, Any],
        planned: Sequence[PlannedSubTask],
        keys: Sequence[ResolvedKey],
        pick: SharePicker,
        threshold_ratio: float,
        now: datetime,
        lease_seconds: int,
    ) -> None:
        """Write the task and reserve every sub-task's share, all or nothing."""
        stamp = ts(now)
        with self.db.write() as conn:
            expire_leases_in(conn, now)
            conn.execute(
                "INSERT INTO tasks(id, name, description, budget, mode, options, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (task_id, name, description, budget, mode, json.dumps(options, sort_keys=True), stamp, stamp),
            )
            chosen = self._reserve_shares(conn, [item.share for item in planned], keys, pick, now)
            for position, (item, key_id) in enumerate(zip(planned, chosen, strict=True)):
                insert_session_in(conn, item.session_id, item.spec.id, task_id, key_id, item.share,
                                  threshold_ratio, now, lease_seconds)
                s = item.spec
                conn.execute(
                    "INSERT INTO subtasks(task_id, id, position, title, text, kind, priority, weight_bp,"
                    " estimated_tokens, share, planned_share, depends_on, session_id, status, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',?)",
                    (task_id, s.id, position, s.title, s.text, s.kind, s.priority, s.weight_bp, s.estimated_tokens,
                     item.share, item.share, json.dumps(list(s.depends_on)), item.session_id, stamp),
                )

    @staticmethod
    def _reserve_shares(conn: sqlite3.Connection, shares: Sequence[int], keys: Sequence[ResolvedKey],
                        pick: SharePicker, now: datetime) -> list[str]:
        """Choose a key for each share in turn, as reserving them one by one would (each choice sees the shares
        chosen before it), then reserve each key's total with the ledger's conditional update: one read and one
        update per key instead of per share (a plan of 1,000 sub-tasks made 3,000 statements here). All or
        nothing: raising rolls the plan back. The key id of each share, in order."""
        views = key_views_in(conn, keys, now)
        start = {v.key_id: v for v in views}
        index = {v.key_id: i for i, v in enumerate(views)}
        totals: dict[str, int] = {}
        chosen: list[str] = []
        for share in shares:
            pick_ = pick(views, share)
            if pick_ is None or share > pick_.remaining:
                raise _no_room(share, views, now)
            views[index[pick_.key_id]] = pick_._replace(reserved=pick_.reserved + share)
            totals[pick_.key_id] = totals.get(pick_.key_id, 0) + share
            chosen.append(pick_.key_id)
        for key_id, total in totals.items():
            if not reserve_in(conn, start[key_id], total, now):  # the same grant, summed: cannot refuse here
                raise _no_room(total, views, now)
        return chosen

    @staticmethod
    def _reserve_share(conn: sqlite3.Connection, share: int, keys: Sequence[ResolvedKey], pick: SharePicker,
                       now: datetime) -> KeyView:
        views = key_views_in(conn, keys, now)
        chosen = pick(views, share)
        if chosen is None or not reserve_in(conn, chosen, share, now):
            raise _no_room(share, views, now)  # raising rolls the whole plan back: no share of it stays reserved
        return chosen

    def reopen(
        self,
        *,
        task_id: str,
        shares: dict[str, int],
        session_ids: dict[str, str],
        keys: Sequence[ResolvedKey],
        pick: SharePicker,
        threshold_ratio: float,
        now: datetime,
        lease_seconds: int,
    ) -> None:
        """Give failed sub-tasks a fresh session with a new share (a retry round), all or nothing."""
        with self.db.write() as conn:
            expire_leases_in(conn, now)
            for st_id, share in shares.items():
                key = self._reserve_share(conn, share, keys, pick, now)
                insert_session_in(conn, session_ids[st_id], st_id, task_id, key.key_id, share, threshold_ratio,
                                now, lease_seconds)
                conn.execute(
                    "UPDATE subtasks SET session_id = ?, share = ?, status = 'pending', error = NULL, output = NULL,"
                    " round = round + 1, updated_at = ? WHERE task_id = ? AND id = ?",
                    (session_ids[st_id], share, ts(now), task_id, st_id),
                )

    def task(self, task_id: str) -> TaskRow:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise UnknownTask(f"no task {task_id!r}", task_id=task_id)
        return TaskRow(id=row["id"], name=row["name"], description=row["description"], budget=row["budget"],
                       mode=row["mode"], options=json.loads(row["options"]), created_at=row["created_at"])

    def subtasks(self, task_id: str) -> list[SubTaskRow]:
        with self.db.read() as conn:
            # A sub-task's tokens are the usage of every session it had (one per round). Summed once per
            # task and joined: a correlated sub-query here rescanned the task's sessions for every row (O(n²)).
            rows = conn.execute(
                "SELECT st.*, s.key_id AS key_id, COALESCE(u.used, 0) AS tokens_used"
                " FROM subtasks st JOIN sessions s ON s.id = st.session_id"
                " LEFT JOIN (SELECT label, SUM(used) AS used FROM sessions WHERE task_id = ? GROUP BY label) u"
                " ON u.label = st.id"
                " WHERE st.task_id = ? ORDER BY st.position",
                (task_id, task_id),
            ).fetchall()
        if not rows:
            self.task(task_id)  # raises UnknownTask when the task does not exist
        return [_subtask(r) for r in rows]

    def subtask_by_session(self, session_id: str) -> SubTaskRow | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT task_id, id FROM subtasks WHERE session_id = ?", (session_id,)).fetchone()
        if row is None:
            return None
        return next(s for s in self.subtasks(row["task_id"]) if s.id == row["id"])

    def task_committed(self, task_id: str) -> int:
        """Tokens of the task's budget already spoken for: used by any session, plus what open sessions hold."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(used), 0) + COALESCE(SUM(CASE WHEN state = 'open' THEN leg_held ELSE 0 END), 0)"
                " AS committed FROM sessions WHERE task_id = ?", (task_id,)).fetchone()
        return int(row["committed"])

    def set_status(self, task_id: str, st_id: str, status: str, now: datetime, *, output: str | None = None,
                   error: str | None = None) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE subtasks SET status = ?, output = COALESCE(?, output), error = ?, updated_at = ?"
                " WHERE task_id = ? AND id = ?",
                (status, output, error, ts(now), task_id, st_id),
            )

    def record_attempt(self, *, task_id: str, st_id: str, key_id: str, outcome: str, request_id: str | None,
                       tokens: int, error: str | None, started: datetime, ended: datetime) -> int:
        with self.db.write() as conn:
            return _record_attempt(conn, AttemptRecord(key_id, outcome, request_id, tokens, error, started, ended),
                                   task_id, st_id)

    def finish(self, *, task_id: str, st_id: str, session_id: str, status: str, now: datetime,
               output: str | None = None, error: str | None = None, attempt: AttemptRecord | None = None) -> None:
        """End a sub-task in one transaction: record its last attempt (if given), give back what its session
        still holds, and set its status. (Three transactions before: a crash between them left a finished
        call without its status, and every commit is a WAL append the runner pays per sub-task.)"""
        with self.db.write() as conn:
            finish_in(conn, task_id=task_id, st_id=st_id, session_id=session_id, status=status, now=now,
                      output=output, error=error, attempt=attempt)

    def attempts(self, task_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(
                "SELECT * FROM attempts WHERE task_id = ? ORDER BY subtask_id, n", (task_id,))]

    def session_legs(self, session_ids: Sequence[str]) -> dict[str, SessionLeg]:
        """Several sessions' key, share and hold in one read (those of every sub-task starting together)."""
        found: dict[str, SessionLeg] = {}
        ids = list(dict.fromkeys(session_ids))
        with self.db.read() as conn:
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                for r in conn.execute("SELECT id, key_id, allocated, leg_held FROM sessions"
                                      f" WHERE id IN ({','.join('?' * len(part))})", part):
                    found[r["id"]] = SessionLeg(r["key_id"], int(r["allocated"]), int(r["leg_held"]))
        return found

    def sessions(self, session_ids: Sequence[str]) -> dict[str, SessionInfo]:
        """Several sessions in one read (the runner reads those of every sub-task starting together)."""
        with self.db.read() as conn:
            return sessions_in(conn, session_ids)


@dataclass(slots=True)  # not frozen: one is made per call, and a frozen dataclass takes five times as long to build
class AttemptRecord:
    """One call made for a sub-task: which key, what came back, when."""

    key_id: str
    outcome: str
    request_id: str | None
    tokens: int
    error: str | None
    started: datetime
    ended: datetime


def _no_room(share: int, views: list[KeyView], now: datetime) -> NoCapacity:
    largest = largest_available(views, now)
    return NoCapacity(f"no key can hold a sub-task share of {share} tokens (largest available: {largest})",
                      requested=share, largest_available=largest, hint="lower the budget or add keys")


def finish_in(conn: sqlite3.Connection, *, task_id: str, st_id: str, session_id: str, status: str, now: datetime,
              output: str | None = None, error: str | None = None, attempt: AttemptRecord | None = None) -> None:
    """`TaskStore.finish` inside the caller's write transaction (the runner's group commit)."""
    n = _insert_attempt(conn, attempt, task_id, st_id) if attempt is not None else None
    release_session_in(conn, session_id, now)
    conn.execute(
        "UPDATE subtasks SET status = ?, output = COALESCE(?, output), error = ?, updated_at = ?,"
        " attempts = COALESCE(?, attempts) WHERE task_id = ? AND id = ?",
        (status, output, error, ts(now), n, task_id, st_id),
    )


@dataclass(slots=True)
class Finish:
    """One sub-task's end for `end_subtasks_in`: `finish_in`'s arguments but the session."""

    task_id: str
    st_id: str
    status: str
    now: datetime
    output: str | None = None
    error: str | None = None
    attempt: AttemptRecord | None = None


_END_SUBTASK = ("UPDATE subtasks SET status = ?, output = COALESCE(?, output), error = ?, updated_at = ?,"
                " attempts = COALESCE(?, attempts) WHERE task_id = ? AND id = ?")
_INSERT_ATTEMPT = ("INSERT INTO attempts(task_id, subtask_id, n, key_id, outcome, request_id, tokens, error,"
                   " started_at, ended_at) VALUES (?,?,?,?,?,?,?,?,?,?)")


def end_subtasks_in(conn: sqlite3.Connection, finishes: Sequence[Finish]) -> None:
    """`finish_in` for several sub-tasks at once, in order, their sessions already released by the ledger
    (`store.ledger.commit_usages_in` with `close`): one read of the attempt numbers so far, one `executemany` for
    the attempts (each numbered on from its sub-task's last) and one for the sub-tasks' rows. The texts from
    outside (ids, the model's output, errors, request ids) pass the redaction hook in one check; the statuses,
    outcomes and timestamps are Butler's own."""
    if not finishes:
        return
    clean = redact_texts(conn, [t for f in finishes for t in (
        f.task_id, f.st_id, f.output, f.error,
        *((f.attempt.key_id, f.attempt.request_id, f.attempt.error) if f.attempt is not None else ()))])
    stamps: dict[datetime, str] = {}

    def stamp(moment: datetime) -> str:
        text = stamps.get(moment)
        if text is None:
            text = stamps[moment] = ts(moment)
        return text

    last: dict[tuple[str, str], int] = {}
    by_task: dict[str, list[str]] = {}
    for f in finishes:
        if f.attempt is not None:
            by_task.setdefault(clean[f.task_id], []).append(clean[f.st_id])
    for task_id, st_ids in by_task.items():
        ids = list(dict.fromkeys(st_ids))
        for j in range(0, len(ids), 500):
            part = ids[j:j + 500]
            for r in execute_own(conn, "SELECT subtask_id, MAX(n) AS n FROM attempts WHERE task_id = ? AND subtask_id"
                                 f" IN ({','.join('?' * len(part))}) GROUP BY subtask_id", [task_id, *part]):
                last[(task_id, r["subtask_id"])] = int(r["n"] or 0)
    attempts: list[tuple[Any, ...]] = []
    ends: list[tuple[Any, ...]] = []
    for f in finishes:
        task_id, st_id = clean[f.task_id], clean[f.st_id]
        n = None
        a = f.attempt
        if a is not None:
            n = last[(task_id, st_id)] = last.get((task_id, st_id), 0) + 1
            attempts.append((task_id, st_id, n, clean[a.key_id], a.outcome, clean[a.request_id], a.tokens,
                             clean[a.error], stamp(a.started), stamp(a.ended)))
        ends.append((f.status, clean[f.output], clean[f.error], stamp(f.now), n, task_id, st_id))
    if attempts:
        executemany_own(conn, _INSERT_ATTEMPT, attempts)
    executemany_own(conn, _END_SUBTASK, ends)


def _record_attempt(conn: sqlite3.Connection, a: AttemptRecord, task_id: str, st_id: str) -> int:
    n = _insert_attempt(conn, a, task_id, st_id)
    conn.execute("UPDATE subtasks SET attempts = ? WHERE task_id = ? AND id = ?", (n, task_id, st_id))
    return n


def _insert_attempt(conn: sqlite3.Connection, a: AttemptRecord, task_id: str, st_id: str) -> int:
    """Record an attempt as the sub-task's next (its number, 1-based)."""
    n = conn.execute("SELECT COALESCE(MAX(n), 0) + 1 AS n FROM attempts WHERE task_id = ? AND subtask_id = ?",
                     (task_id, st_id)).fetchone()["n"]
    conn.execute(
        "INSERT INTO attempts(task_id, subtask_id, n, key_id, outcome, request_id, tokens, error,"
        " started_at, ended_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (task_id, st_id, n, a.key_id, a.outcome, a.request_id, a.tokens, a.error, ts(a.started), ts(a.ended)),
    )
    return int(n)


def _subtask(r: sqlite3.Row) -> SubTaskRow:
    return SubTaskRow(
        task_id=r["task_id"], id=r["id"], position=r["position"], round=r["round"], title=r["title"], text=r["text"],
        kind=r["kind"], priority=r["priority"], weight_bp=r["weight_bp"], estimated_tokens=r["estimated_tokens"],
        share=r["share"], depends_on=tuple(json.loads(r["depends_on"])), session_id=r["session_id"],
        key_id=r["key_id"], status=r["status"], output=r["output"], error=r["error"], attempts=r["attempts"],
        tokens_used=int(r["tokens_used"]),
        planned_share=r["planned_share"] if r["planned_share"] is not None else r["share"],
    )
