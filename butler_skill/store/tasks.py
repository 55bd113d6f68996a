"""Tasks and sub-tasks in the ledger: planned together, each sub-task with its own reserved session.

A task's plan is written in one transaction: every sub-task's share is reserved, or none is. A
sub-task's tokens are read from its sessions' settled usage, so aggregates equal the ledger's figures.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from butler_skill.core.aggregation import ResultValues
from butler_skill.core.days import utc_day
from butler_skill.core.decomposition import SubTaskPlan, SubTaskSpec
from butler_skill.core.selection import KeyView, largest_available
from butler_skill.errors import NoCapacity, UnknownTask
from butler_skill.models import ResolvedKey
from butler_skill.store.db import Database, execute_own, executemany_own, redact_texts, redact_values
from butler_skill.store.ledger import (
    _INSERT_SESSION,
    expire_leases_in,
    insert_session_in,
    key_views_in,
    release_session_in,
    reserve_in,
)
from butler_skill.store.timestamps import ts


class SharePicker(Protocol):
    """The key rule for shares (`subagents.planning._Picker`): one share (a retry round), or a whole plan's."""

    def __call__(self, views: list[KeyView], share: int) -> KeyView | None: ...

    def many(self, views: list[KeyView], shares: list[int]) -> tuple[list[int | None], list[KeyView]]: ...


class PlannedSubTask(NamedTuple):
    spec: SubTaskSpec | SubTaskPlan
    share: int
    session_id: str


class SubTaskRow(NamedTuple):
    """A sub-task as the ledger holds it (a NamedTuple: a plan or a read of 1,000 builds 1,000 of them)."""

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

    @classmethod
    def planned(cls, row: SubTaskRow) -> SessionLeg:
        """The leg of a sub-task's session as its plan wrote it (`TaskStore.create`), before any call: its key and its
        share, all of it held (what `session_legs` reads back then)."""
        return cls(row.key_id, row.share, row.share)


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
    ) -> tuple[TaskRow, list[SubTaskRow]]:
        """Write the task and reserve every sub-task's share, all or nothing. Returns what was written, as
        `task` and `subtasks` would read it back (no read: the rows are built from what was inserted).

        The sessions and sub-tasks go in with one `executemany` each. Outside text (the task's name,
        description and options, each sub-task's title and text, the key ids) passes the redaction hook once,
        all together (`redact_values`: one check over all of them; each is redacted on its own only on a hit);
        ids, the day and the timestamps are Butler's own."""
        stamp = ts(now)
        day = utc_day(now)
        lease = ts(now + timedelta(seconds=lease_seconds))
        options_json = json.dumps(options, sort_keys=True)
        specs = [item.spec for item in planned]
        n = len(specs)
        with self.db.write() as conn:
            expire_leases_in(conn, now)
            chosen = self._reserve_shares(conn, [item.share for item in planned], keys, pick, now)
            key_ids = list(dict.fromkeys(chosen))
            k = len(key_ids)
            clean = redact_values(conn, [name, description, options_json, *key_ids, *[s.title for s in specs],
                                         *[s.text for s in specs]])
            name, description, options_json = clean[0], clean[1], clean[2]
            key_of = dict(zip(key_ids, clean[3:3 + k], strict=True))
            titles, texts = clean[3 + k:3 + k + n], clean[3 + k + n:]
            keys_chosen = [key_of[key_id] for key_id in chosen]
            execute_own(conn, "INSERT INTO tasks(id, name, description, budget, mode, options, created_at, updated_at)"
                        " VALUES (?,?,?,?,?,?,?,?)", (task_id, name, description, budget, mode, options_json, stamp,
                                                     stamp))
            executemany_own(conn, _INSERT_SESSION, [
                (item.session_id, item.spec.id, task_id, key_id, item.share, threshold_ratio, day, item.share,
                 item.share, lease, stamp, stamp) for item, key_id in zip(planned, keys_chosen, strict=True)])
            executemany_own(conn, _INSERT_SUBTASK, [
                (task_id, s.id, position, titles[position], texts[position], s.kind, s.priority, s.weight_bp,
                 s.estimated_tokens, item.share, item.share, _deps_json(s.depends_on), item.session_id, stamp)
                for position, (s, item) in enumerate(zip(specs, planned, strict=True))])
        task = TaskRow(id=task_id, name=name, description=description, budget=budget, mode=mode,
                       options=json.loads(options_json), created_at=stamp)
        return task, [SubTaskRow(task_id, s.id, position, 1, titles[position], texts[position], s.kind, s.priority,
                                 s.weight_bp, s.estimated_tokens, item.share, tuple(s.depends_on), item.session_id,
                                 keys_chosen[position], "pending", None, None, 0, 0, item.share)
                      for position, (s, item) in enumerate(zip(specs, planned, strict=True))]

    @staticmethod
    def _reserve_shares(conn: sqlite3.Connection, shares: Sequence[int], keys: Sequence[ResolvedKey],
                        pick: SharePicker, now: datetime) -> list[str]:
        """Choose a key for each share in turn, as reserving them one by one would (each choice sees the shares
        chosen before it), then reserve each key's total with the ledger's conditional update: one read and one
        update per key instead of per share (a plan of 1,000 sub-tasks made 3,000 statements here). All or
        nothing: raising rolls the plan back. The key id of each share, in order."""
        views = key_views_in(conn, keys, now)
        start = {v.key_id: v for v in views}
        totals: dict[str, int] = {}
        chosen: list[str] = []
        picked, after = pick.many(views, list(shares))  # the whole plan's choices in one pass
        for share, i in zip(shares, picked, strict=False):
            if i is None:
                raise _no_room(share, after, now)
            key_id = views[i].key_id
            totals[key_id] = totals.get(key_id, 0) + share
            chosen.append(key_id)
        views = after
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

    def _reads(self, task_id: str, columns: str) -> tuple[list[Any], list[Any]]:
        """The task's sub-tasks (`columns` of them) and its sessions, in one read transaction: two searches of the
        task's own rows (each one index search), joined by the caller. A sub-task's key is that of its current
        session, its tokens the usage of every session it had (one per round). (One statement joining them built a
        temporary index and sorted: about twice the time for 1,000 sub-tasks.)"""
        with self.db.read() as conn:
            rows = conn.execute(f"SELECT {columns} FROM subtasks WHERE task_id = ?", (task_id,)).fetchall()
            sessions = conn.execute("SELECT id, label, key_id, used FROM sessions WHERE task_id = ?",
                                    (task_id,)).fetchall()
        return rows, sessions

    def subtasks(self, task_id: str) -> list[SubTaskRow]:
        rows, sessions = self._reads(task_id, "*")
        if not rows:
            self.task(task_id)  # raises UnknownTask when the task does not exist
            return []
        key_of, used = _session_figures(sessions)
        out = [_subtask(r, key_of[r["session_id"]], used.get(r["id"], 0)) for r in rows if r["session_id"] in key_of]
        out.sort(key=_position)
        return out

    def results(self, task_id: str) -> list[ResultValues]:
        """What a task's answer needs of each sub-task (id, status, tokens, error, output, key, attempts), in plan
        order: `subtasks` without the plan's columns (the read-back after a run of 1,000 reads only these)."""
        rows, sessions = self._reads(task_id, "id, position, status, output, error, attempts, session_id")
        if not rows:
            self.task(task_id)  # raises UnknownTask when the task does not exist
            return []
        key_of, used = _session_figures(sessions)
        out = [(r["position"], ResultValues(r["id"], r["status"], int(used.get(r["id"], 0)), r["error"], r["output"],
                                            key_of[r["session_id"]], r["attempts"]))
               for r in rows if r["session_id"] in key_of]
        out.sort(key=_first)
        return [values for _, values in out]

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


def end_subtasks_in(conn: sqlite3.Connection, finishes: Sequence[Finish]) -> dict[Any, Any]:
    """`finish_in` for several sub-tasks at once, in order, their sessions already released by the ledger
    (`store.ledger.commit_usages_in` with `close`): one read of the attempt numbers so far, one `executemany` for
    the attempts (each numbered on from its sub-task's last) and one for the sub-tasks' rows. The texts from
    outside (ids, the model's output, errors, request ids) pass the redaction hook in one check; the statuses,
    outcomes and timestamps are Butler's own. Answers each outside text as the ledger now holds it (by text:
    the hook's redaction, `redact_texts`)."""
    if not finishes:
        return {}
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
    return clean


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


_INSERT_SUBTASK = (
    "INSERT INTO subtasks(task_id, id, position, title, text, kind, priority, weight_bp, estimated_tokens, share,"
    " planned_share, depends_on, session_id, status, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',?)")


def _deps_json(depends_on: Sequence[str]) -> str:
    return json.dumps(list(depends_on)) if depends_on else "[]"


def _position(row: SubTaskRow) -> int:
    return row.position


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def _session_figures(sessions: Sequence[Any]) -> tuple[dict[str, str], dict[str, int]]:
    """(each session's key, the usage of every session summed by label, i.e. by sub-task: one per round)."""
    key_of: dict[str, str] = {}
    used: dict[str, int] = {}
    for r in sessions:
        key_of[r["id"]] = r["key_id"]
        label = r["label"]
        used[label] = used.get(label, 0) + r["used"]
    return key_of, used


def _subtask(r: sqlite3.Row, key_id: str, tokens_used: int) -> SubTaskRow:
    deps = r["depends_on"]
    share = r["share"]
    planned = r["planned_share"]
    return SubTaskRow(
        r["task_id"], r["id"], r["position"], r["round"], r["title"], r["text"], r["kind"], r["priority"],
        r["weight_bp"], r["estimated_tokens"], share, () if deps == "[]" else tuple(json.loads(deps)),
        r["session_id"], key_id, r["status"], r["output"], r["error"], r["attempts"], int(tokens_used),
        planned if planned is not None else share,
    )
