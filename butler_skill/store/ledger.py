"""The token ledger: reservations, usage, sessions, cooldowns, alerts and history.

Operations, not tables. Each write is one `BEGIN IMMEDIATE` transaction, so a choice made from what a
transaction read cannot be overtaken by another writer, and every grant is still guarded by the
conditional update `used + reserved + n <= limit`. Stale holds are released by lease at the start of
every write (an allocation first asks, in the same statement that reads the counters, when the earliest lease
ends: one look into the partial index of open leases); there is no background job to die. On SQLite an
allocation takes those figures from the last allocation on its connection while no other connection committed
and nothing else wrote (`_Seen`): a run of allocations stops reading them.

A session holds one reservation at a time (its leg) on its current key; rotation moves it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from butler_skill.core import alerts, settlement
from butler_skill.core.days import utc_day
from butler_skill.core.pricing import from_pico, money, to_pico, usd
from butler_skill.core.rotation import threshold_tokens
from butler_skill.core.selection import KeyView
from butler_skill.core.tally import spend_key
from butler_skill.core.usage import Usage
from butler_skill.errors import UnknownSession
from butler_skill.models import Alert, Event, ResolvedKey, RotationReason, SessionInfo
from butler_skill.store import reads
from butler_skill.store.db import (
    Database,
    execute_last,
    execute_own,
    executemany_own,
    redact_texts,
    redact_values,
)
from butler_skill.store.protocol import Grant, Picker, Rotation, UsageOutcome
from butler_skill.store.timestamps import later, parse_ts, ts

# The rotation threshold of a new session, remembered per (tokens, ratio): the same few recur, and the exact
# decimal floor costs more than the look-up.
_threshold = lru_cache(maxsize=4096)(threshold_tokens)


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---- reads ---------------------------------------------------------------------------------
    def key_views(self, keys: Sequence[ResolvedKey], now: datetime) -> list[KeyView]:
        with self.db.read() as conn:
            return _key_views(conn, keys, now)

    def costs_today(self, now: datetime) -> dict[str, Decimal]:
        """USD per key today, exact (from the integer pico-USD counters)."""
        with self.db.read() as conn:
            return reads.costs_today(conn, now)

    def costs_by_key(self) -> dict[str, Decimal]:
        """LLM cost recorded per key over all days, exact (the treasury derives prepaid credit from it)."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT key_id, SUM(cost_pusd) AS cost FROM key_day_counters GROUP BY key_id")
            return {r["key_id"]: from_pico(int(r["cost"] or 0)) for r in rows}

    def session(self, session_id: str) -> SessionInfo:
        with self.db.read() as conn:
            return _session(_session_row(conn, session_id))

    def sessions(self, *, open_only: bool = True, task_id: str | None = None) -> list[SessionInfo]:
        sql = "SELECT * FROM sessions WHERE 1=1"
        args: list[Any] = []
        if open_only:
            sql += " AND state = 'open'"
        if task_id is not None:
            sql += " AND task_id = ?"
            args.append(task_id)
        with self.db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        # Sorted here, by (created_at, id) as ORDER BY would (both databases compare this text byte by byte):
        # asked to order, SQLite could walk an index on created_at (there was one until migration 0015) over every
        # session ever opened to skip a sort of the few open ones, found through the partial index of open leases.
        rows.sort(key=lambda r: (r["created_at"], r["id"]))
        return [_session(r) for r in rows]

    def pending_alerts(self, now: datetime) -> list[Alert]:
        with self.db.read() as conn:
            return [Alert.model_validate(a) for a in reads.pending_alerts(conn, now)]

    def events(self, kind: str | None = None, limit: int = 20) -> list[Event]:
        with self.db.read() as conn:
            return [Event.model_validate(e) for e in reads.events(conn, kind, limit)]

    def totals(self, now: datetime) -> dict[str, int]:
        """Sum of used and reserved today over all keys: what the ledger reports as granted."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(used),0) AS used, COALESCE(SUM(reserved),0) AS reserved"
                " FROM key_day_counters WHERE day = ?", (utc_day(now),),
            ).fetchone()
        return {"used": int(row["used"]), "reserved": int(row["reserved"])}

    # ---- writes --------------------------------------------------------------------------------
    def open_session(
        self,
        *,
        keys: Sequence[ResolvedKey],
        pick: Picker,
        need: int,
        session_id: str,
        label: str | None,
        task_id: str | None,
        threshold_ratio: float,
        now: datetime,
        lease_seconds: int,
        minted_id: bool = False,
    ) -> Grant | list[KeyView]:
        """Reserve `need` tokens on the key `pick` chooses and open a session on it. `minted_id`: `session_id`
        is one Butler just made (`Context.new_id`: a clock and `secrets`), not text from outside, so the
        redaction hook skips it; a session id a caller passed in goes through the hook like the label.

        Returns the grant, or the key views the choice saw when nothing fitted (nothing changes then).
        """
        stamp = ts(now)
        day = stamp[:10] if stamp[4] == "-" else utc_day(now)  # the UTC day is the stamp's first ten characters
        lease = later(stamp, lease_seconds)
        write = self.db.write()
        with write as conn:
            # What the choice needs: today's counters, the running cooldowns, and whether any lease is due (the
            # expiry pass, several statements, runs only when one is; the figures are then read again). On SQLite
            # the figures the last allocation on this connection left (`_Seen`) stand in for the read while
            # nothing else wrote the file since; otherwise one statement reads them.
            memo = _REUSE and hasattr(write, "found")
            found = write.found if memo else None  # type: ignore[union-attr]
            # The data version is asked only in a run (the last write on this connection was an allocation): an
            # allocation between other writes (a settlement after each grant) pays nothing for the memo.
            version = execute_own(conn, _DATA_VERSION, ()).fetchone()[0] if found is not None else None
            seen = found if found is not None and found.holds(version, day, stamp) else None
            if seen is None:
                seen = _read_seen(conn, day, stamp, version)
            if seen.due(stamp):
                _expire_leases(conn, now)
                seen = _read_seen(conn, day, stamp, version)
            views = _build_views(keys, seen.counters, seen.cooldowns)
            chosen = pick(views)
            if chosen is None:
                if memo:
                    write.memo = seen  # type: ignore[union-attr]  # nothing changed
                return views
            # The texts from outside pass the redaction hook once, in one check, the key id with them (the reserve
            # then uses it as it came out: what the hook would have made of it there); the day, the stamps and a
            # session id Butler minted are its own.
            if minted_id:
                sid = session_id
                label_text, task, key_id = redact_values(conn, (label, task_id, chosen.key_id))
            else:
                sid, label_text, task, key_id = redact_values(conn, (session_id, label, task_id, chosen.key_id))
            if not _grant(conn, key_id, day, need, chosen.tokens_per_day, own=True):
                return views
            # Nothing reads its result: on PostgreSQL it travels with the COMMIT (store.db.execute_last).
            execute_last(conn, _INSERT_SESSION, (sid, label_text, task, key_id, need, threshold_ratio, day, need, need,
                                                 lease, stamp, stamp))
            if memo and key_id == chosen.key_id:
                # What this transaction changed of the figures: its reserve, and one more open lease (kept by
                # store.db._Write only when it commits).
                if need > 0:
                    seen.counters[key_id] = (chosen.used, chosen.reserved + need)
                if seen.lease is None or lease < seen.lease:
                    seen.lease = lease
                write.memo = seen  # type: ignore[union-attr]
            # The sessions row is the record of the allocation; no separate history event is needed. Its SessionInfo
            # is built only when a caller reads `Grant.session` (the allocation's answer needs only the id).
            threshold = _threshold(need, threshold_ratio)

            def info() -> SessionInfo:
                return SessionInfo(session_id=session_id, label=label, task_id=task_id, key_id=chosen.key_id,
                                   allocated=need, used=0, held=need, rotation_threshold=threshold, cost=0.0,
                                   state="open", created_at=now)

            return Grant(key=chosen, session_id=session_id, rotation_threshold=threshold, session=info)

    def rotate_session(
        self,
        *,
        session_id: str,
        keys: Sequence[ResolvedKey],
        pick: Callable[[list[KeyView], KeyView | None, int], KeyView | None],
        reason: RotationReason,
        cooldown: Callable[[int], datetime | None],
        now: datetime,
        lease_seconds: int,
        rest_scope: bool = False,
    ) -> Rotation | list[KeyView]:
        """Move a session's remaining allocation to another key, in one transaction.

        `pick(views, current, need)` chooses the target; `cooldown(strikes)` says how long the key left
        behind rests. Returns the key views seen when no key fitted (nothing changes then).
        """
        with self.db.write() as conn:
            _expire_leases(conn, now)
            row = _session_row(conn, session_id)
            if row["state"] != "open":
                raise UnknownSession(f"session {session_id} is {row['state']}", session_id=session_id)
            from_key = row["key_id"]
            need = max(0, row["allocated"] - row["used"])
            views = _key_views(conn, keys, now)
            current = next((v for v in views if v.key_id == from_key), None)
            target = pick(views, current, need)
            if target is None or target.key_id == from_key:
                return views
            _release_leg(conn, row)
            if not _reserve(conn, target, need, now):
                raise RuntimeError("reservation refused inside the write lock")  # pick saw the capacity
            conn.execute(
                "UPDATE sessions SET key_id = ?, leg_day = ?, leg_granted = ?, leg_held = ?, leg_used = 0,"
                " lease_expires_at = ?, updated_at = ? WHERE id = ?",
                (target.key_id, utc_day(now), need, need, ts(now + timedelta(seconds=lease_seconds)), ts(now),
                 session_id),
            )
            strikes_row = conn.execute("SELECT strikes FROM key_cooldowns WHERE key_id = ?", (from_key,)).fetchone()
            until = cooldown((strikes_row["strikes"] + 1) if strikes_row else 1)
            if until is not None:
                for key_id in _resting(keys, from_key, rest_scope):
                    _set_cooldown(conn, key_id, until, reason, now)
            conn.execute(
                "UPDATE alerts SET resolved_at = ? WHERE session_id = ? AND key_id = ? AND resolved_at IS NULL",
                (ts(now), session_id, from_key),
            )
            _event(conn, now, "rotation", session_id, target.key_id, {
                "from_key_id": from_key, "to_key_id": target.key_id, "reason": reason, "moved_tokens": need,
                "left_leg": {"granted": row["leg_granted"], "used": row["leg_used"]},
                "cooldown_until": ts(until) if until else None,
            })
            return Rotation(_session(_session_row(conn, session_id)), from_key, target.key_id, need, until)

    def set_cooldown(self, key_id: str, until: datetime, reason: str, now: datetime, *,
                     keys: Sequence[ResolvedKey] = (), rest_scope: bool = False) -> None:
        with self.db.write() as conn:
            for rested in _resting(keys, key_id, rest_scope):
                _set_cooldown(conn, rested, until, reason, now)
                _event(conn, now, "cooldown", None, rested, {"until": ts(until), "reason": reason})

    def raise_alert(self, *, alert_id: str, session_id: str, key_id: str, kind: str, message: str,
                    now: datetime) -> bool:
        """Record an alert once per (session, key, kind). True when it is new."""
        with self.db.write() as conn:
            return raise_alert_in(conn, alert_id=alert_id, session_id=session_id, key_id=key_id, kind=kind,
                                  message=message, now=now)

    def close_session(self, session_id: str, now: datetime) -> SessionInfo:
        """End a session and give back what it still holds."""
        with self.db.write() as conn:
            _expire_leases(conn, now)
            row = _session_row(conn, session_id)
            if row["state"] == "open":
                _release_leg(conn, row, closed_at=ts(now))  # give back, close, and count it in its day's spend
                conn.execute("UPDATE alerts SET resolved_at = ? WHERE session_id = ? AND resolved_at IS NULL",
                             (ts(now), session_id))
                _event(conn, now, "closed", session_id, row["key_id"], {"used": row["used"]})
            return _session(_session_row(conn, session_id))

    def expire_leases(self, now: datetime) -> int:
        with self.db.write() as conn:
            return _expire_leases(conn, now)


# ---- public in-transaction operations ----------------------------------------------------------
# Other stores (the task store) compose these into their own `BEGIN IMMEDIATE` transaction, so a plan's
# shares are reserved by the very same conditional update as an allocation. `conn` is an open write.
def expire_leases_in(conn: sqlite3.Connection, now: datetime) -> int:
    """Release every open session whose lease has run out; how many there were."""
    return _expire_leases(conn, now)


def key_views_in(conn: sqlite3.Connection, keys: Iterable[ResolvedKey], now: datetime) -> list[KeyView]:
    return _key_views(conn, keys, now)


def reserve_in(conn: sqlite3.Connection, key: KeyView, need: int, now: datetime) -> bool:
    """The conditional grant `used + reserved + need <= limit`; False (nothing changed) when it does not fit."""
    return _reserve(conn, key, need, now)


def insert_session_in(conn: sqlite3.Connection, session_id: str, label: str | None, task_id: str | None,
                      key_id: str, tokens: int, threshold_ratio: float, now: datetime, lease_seconds: int) -> None:
    """Record an open session holding `tokens` already reserved on `key_id` (see `reserve_in`)."""
    _insert_session(conn, session_id, label, task_id, key_id, tokens, threshold_ratio, now, lease_seconds)


def release_session_in(conn: sqlite3.Connection, session_id: str, now: datetime) -> None:
    """Close an open session quietly (no event) and give back what its leg still holds."""
    row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is not None and row["state"] == "open":
        _release_leg(conn, row, closed_at=ts(now))


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One usage report to settle: the request id (the ledger's idempotency key), the session, the usage and its
    exact cost (`core.pricing.cost_of`), when it was reported, the lease an open session renews to, the tokens_per_day
    and id of the key it was priced on (whose key-day the overrun check reads), and `close`: end the session after it
    (what `release_session_in` does)."""

    request_id: str
    session_id: str
    usage: Usage
    cost_usd: Decimal
    now: datetime
    lease_seconds: int
    key_limit: int | None
    key_id: str
    close: bool = False


_FIGURES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
            "web_search_requests")
_INSERT_USAGE = (
    "INSERT INTO usage_records(request_id, session_id, key_id, day, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, total_tokens, cost_usd, cost_reported, estimated,"
    " recorded_at, cost_pusd, upstream_cost_pusd, cache_write_1h_tokens, web_search_requests)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_SETTLE_SESSION = (
    "UPDATE sessions SET used = ?, cost_usd = ?, cost_pusd = ?, leg_day = ?, leg_held = ?, leg_used = ?,"
    " lease_expires_at = ?, updated_at = ?, state = ?, closed_at = ? WHERE id = ?")
_SETTLE_COUNTER = ("UPDATE key_day_counters SET used = used + ?, reserved = reserved + ?, cost_usd = ?,"
                   " cost_pusd = cost_pusd + ? WHERE key_id = ? AND day = ?")


def commit_usage_in(conn: sqlite3.Connection, report: UsageReport) -> tuple[settlement.Settled, UsageOutcome]:
    """Settle one provider response inside the caller's write transaction (leases already expired by the caller):
    `commit_usages_in` over a group of one, so one implementation of the ledger's rules (`core.settlement`) serves
    the single and the group path. What it did, and the session right after it.

    Raises what settling it alone raises, having written nothing: `Conflict` (the request id was settled with other
    figures), `UnknownSession`, and `settlement.Unsupported` for a broken ledger whose counter reserves less than
    the session holds (the database's CHECK on `reserved` would refuse the write)."""
    group, meta = _settle(conn, [report])
    done = group.results[0]
    if isinstance(done, Exception):
        raise done
    ((session_id, s),) = group.sessions.items()
    label, task_id, allocated, ratio, created_at = meta[session_id]
    info = SessionInfo(
        session_id=session_id, label=label, task_id=task_id, key_id=s.key_id, allocated=allocated, used=s.used,
        held=s.leg_held, rotation_threshold=_threshold(s.leg_granted, ratio), cost=usd(from_pico(s.cost_pusd)),
        state=s.state, created_at=parse_ts(created_at))
    return done, UsageOutcome(done.duplicate, info, s.leg_used, s.leg_granted)


def commit_usages_in(conn: sqlite3.Connection, reports: Sequence[UsageReport]) -> settlement.GroupSettlement:
    """Settle `reports` in order inside the caller's write transaction (leases already expired), leaving the
    ledger as settling each in turn (then `release_session_in` for those with `close`) would, in a few statements
    for the whole group: one read each of the sessions, the earlier usage records and the counters they touch;
    `core.settlement.settle_in_order` works the figures out; then one `executemany` each for the new counter rows,
    the counters' changes (summed per key-day), the usage records and the changed sessions' rows. Per report the
    `core.settlement.Settled`, or the exception settling it alone would raise (it then changed nothing). Raises
    (writing nothing the caller's SAVEPOINT cannot undo) when the group cannot be settled in one pass
    (`settlement.Unsupported`, a constraint): settle it one by one then (`commit_usage_in` each, in a SAVEPOINT).

    Redaction: the texts from outside (request ids, session ids, key ids) pass the hook once, all in one check,
    as each statement's parameters would; the days and timestamps are Butler's own."""
    return _settle(conn, reports)[0]


_Meta = tuple[str | None, str | None, int, float, str]  # a session's label, task id, allocation, ratio, created_at


def _settle(conn: sqlite3.Connection, reports: Sequence[UsageReport]
            ) -> tuple[settlement.GroupSettlement, dict[str, _Meta]]:
    clean = redact_texts(conn, [t for r in reports for t in (r.request_id, r.session_id, r.key_id)])
    items: list[settlement.Report] = []
    stamps: dict[datetime, str] = {}
    for r in reports:
        u = r.usage
        pusd = to_pico(money(r.cost_usd))
        stamp = stamps.get(r.now)
        if stamp is None:
            stamp = stamps[r.now] = ts(r.now)
        items.append(settlement.Report(
            request_id=clean[r.request_id], session_id=clean[r.session_id],
            figures=(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
                     u.cache_write_1h_tokens, u.web_search_requests),
            total=u.counted_tokens, pusd=pusd, cost_usd=float(from_pico(pusd)), day=stamp[:10] if stamp[4] == "-"
            else utc_day(r.now), stamp=stamp, lease=ts(r.now + timedelta(seconds=r.lease_seconds)),
            limit=r.key_limit, view_key_id=clean[r.key_id], close=r.close))
    sessions, meta, seen = _session_states(conn, [r.session_id for r in items], clean, items[0].day if items else "")
    priors = _priors(conn, [r.request_id for r in items])
    touched = settlement.touched_counters(items, sessions)
    counters = {key: c for key in touched if (c := seen.get(key)) is not None}
    counters.update(_counters(conn, touched.difference(seen)))
    group = settlement.settle_in_order(items, sessions, counters, priors)
    # The counters: rows this group creates, then each touched key-day's change once.
    created = [key for key, c in group.counters.items() if c.created]
    if created:
        executemany_own(conn, "INSERT INTO key_day_counters(key_id, day) VALUES (?, ?)"
                        " ON CONFLICT (key_id, day) DO NOTHING", created)
    changes = []
    for key, c in group.counters.items():
        was = group.start.get(key) or settlement.Counter()
        if not c.created and (c.used, c.reserved, c.cost_pusd, c.cost_usd) == (
                was.used, was.reserved, was.cost_pusd, was.cost_usd):
            continue
        # The REAL column gets the very float the one-by-one additions leave (it is written, no longer read).
        changes.append((c.used - was.used, c.reserved - was.reserved, c.cost_usd, c.cost_pusd - was.cost_pusd,
                        key[0], key[1]))
    if changes:
        executemany_own(conn, _SETTLE_COUNTER, changes)
    records = []
    for r, item, done in zip(reports, items, group.results, strict=True):
        if isinstance(done, settlement.Settled) and not done.duplicate:
            u = r.usage
            records.append((item.request_id, item.session_id, done.key_id, item.day, u.input_tokens, u.output_tokens,
                            u.cache_read_tokens, u.cache_write_tokens, item.total, item.cost_usd,
                            int(u.cost_usd is not None), int(u.estimated), item.stamp, item.pusd,
                            to_pico(u.upstream_cost_usd) if u.upstream_cost_usd is not None else None,
                            u.cache_write_1h_tokens, u.web_search_requests))
    if records:
        executemany_own(conn, _INSERT_USAGE, records)
    _spend_group(conn, group.sessions, sessions, meta)
    changed = [(s.used, s.cost_usd, s.cost_pusd, s.leg_day, s.leg_held, s.leg_used, s.lease_expires_at, s.updated_at,
                s.state, s.closed_at, sid) for sid, s in group.sessions.items() if s != sessions[sid]]
    if changed:  # a session only a duplicate touched is as it was
        executemany_own(conn, _SETTLE_SESSION, changed)
    return group, meta


def _spend_group(conn: sqlite3.Connection, ended: dict[str, settlement.SessionState],
                 started: dict[str, settlement.SessionState], meta: dict[str, _Meta]) -> None:
    """The spend rollups (migration 0015) as settling the group one by one leaves them: a session that ends in the
    group counts once with all it used by the end (as `_spend_ended` at its close); one that had ended before adds
    only what the group settled on it (usage after a session ended still counts, in its day's rollup)."""
    adds: dict[tuple[str, str, str], list[int]] = {}
    for sid, s in ended.items():
        was = started[sid]
        was_state, was_used, was_pusd = was.state, was.used, was.cost_pusd
        label, task_id, allocated, _, created_at = meta[sid]
        grp, day, name = spend_key(label, task_id, created_at)
        if was_state == "open" and s.state != "open":
            figures = (1, allocated, s.used, s.cost_pusd)
        elif was_state != "open" and (s.used, s.cost_pusd) != (was_used, was_pusd):
            figures = (0, 0, s.used - was_used, s.cost_pusd - was_pusd)
        else:
            continue
        total = adds.setdefault((grp, day, name), [0, 0, 0, 0])
        for i, v in enumerate(figures):
            total[i] += v
    if adds:
        # The label and task id are the ledger's own stored text (they passed the redaction hook on the way in).
        executemany_own(conn, _SPEND, [(grp, day, name, *figures) for (grp, day, name), figures in adds.items()])


@lru_cache(maxsize=64)
def _in_list(n: int) -> str:
    return ",".join("?" * n)


# With each session, its key's counter on the day of the group's first report (in the common case every counter
# the group touches: one statement fewer).
_SESSION_STATES = (
    "SELECT s.id AS id, s.key_id AS key_id, s.state AS state, s.leg_day AS leg_day, s.leg_granted AS leg_granted,"
    " s.leg_held AS leg_held, s.leg_used AS leg_used, s.used AS used, s.cost_pusd AS cost_pusd, s.cost_usd AS cost_usd,"
    " s.lease_expires_at AS lease_expires_at, s.updated_at AS updated_at, s.closed_at AS closed_at, s.label AS label,"
    " s.task_id AS task_id, s.created_at AS created_at, s.allocated AS allocated, s.threshold_ratio AS threshold_ratio,"
    " c.key_id AS c_key, c.used AS c_used, c.reserved AS c_reserved, c.cost_usd AS c_cost_usd,"
    " c.cost_pusd AS c_cost_pusd FROM sessions s LEFT JOIN key_day_counters c ON c.key_id = s.key_id AND c.day = ?"
    " WHERE s.id IN ({})")
_PRIORS = f"SELECT request_id, session_id, {', '.join(_FIGURES)} FROM usage_records WHERE request_id IN ({{}})"


def _session_states(conn: sqlite3.Connection, session_ids: Sequence[str], checked: dict[Any, Any], day: str
                    ) -> tuple[dict[str, settlement.SessionState], dict[str, _Meta],
                               dict[tuple[str, str], settlement.Counter | None]]:
    """The sessions' settlement state; per session the columns settling never changes (its spend rollup is filed
    under its label or task id and the day it was opened; its `SessionInfo` needs the rest); and the counters of
    their keys on `day` (None: no row yet). `checked`: texts that already passed the redaction hook, and what it
    made of them."""
    found: dict[str, settlement.SessionState] = {}
    meta: dict[str, _Meta] = {}
    counters: dict[tuple[str, str], settlement.Counter | None] = {}
    ids = list(dict.fromkeys(session_ids))
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        for r in execute_own(conn, _SESSION_STATES.format(_in_list(len(part))), [day, *part]):
            counters[(r["key_id"], day)] = None if r["c_key"] is None else settlement.Counter(
                int(r["c_used"]), int(r["c_reserved"]), int(r["c_cost_pusd"]), float(r["c_cost_usd"]))
            meta[r["id"]] = (r["label"], r["task_id"], int(r["allocated"]), r["threshold_ratio"], r["created_at"])
            found[r["id"]] = settlement.SessionState(
                key_id=r["key_id"], state=r["state"], leg_day=r["leg_day"], leg_granted=int(r["leg_granted"]),
                leg_held=int(r["leg_held"]), leg_used=int(r["leg_used"]), used=int(r["used"]),
                cost_pusd=int(r["cost_pusd"]), cost_usd=float(r["cost_usd"]), lease_expires_at=r["lease_expires_at"],
                updated_at=r["updated_at"], closed_at=r["closed_at"])
    # Key ids read back are texts from outside too (a statement's parameter passes the hook): as `execute` would.
    # Those the reports named passed it already.
    unchecked = [s.key_id for s in found.values() if s.key_id not in checked]
    clean = {**checked, **redact_texts(conn, unchecked)} if unchecked else checked
    for s in found.values():
        s.key_id = clean[s.key_id]
    # A counter read under a key id the hook would change is not the one settling reads: read again (`_counters`).
    return found, meta, {key: c for key, c in counters.items() if clean[key[0]] == key[0]}


def _priors(conn: sqlite3.Connection, request_ids: Sequence[str]) -> dict[str, settlement.Prior]:
    found: dict[str, settlement.Prior] = {}
    ids = list(dict.fromkeys(request_ids))
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        for r in execute_own(conn, _PRIORS.format(_in_list(len(part))), part):
            found[r["request_id"]] = settlement.Prior(r["session_id"], (
                int(r["input_tokens"]), int(r["output_tokens"]), int(r["cache_read_tokens"]),
                int(r["cache_write_tokens"]), int(r["cache_write_1h_tokens"]), int(r["web_search_requests"])))
    return found


def _counters(conn: sqlite3.Connection, touched: set[tuple[str, str]]) -> dict[tuple[str, str], settlement.Counter]:
    if not touched:
        return {}
    keys = sorted({k for k, _ in touched})
    days = sorted({d for _, d in touched})
    rows = execute_own(conn, "SELECT key_id, day, used, reserved, cost_usd, cost_pusd FROM key_day_counters"
                       f" WHERE key_id IN ({_in_list(len(keys))}) AND day IN ({_in_list(len(days))})",
                       [*keys, *days])
    return {(r["key_id"], r["day"]): settlement.Counter(int(r["used"]), int(r["reserved"]), int(r["cost_pusd"]),
                                                        float(r["cost_usd"]))
            for r in rows if (r["key_id"], r["day"]) in touched}


def raise_alert_in(conn: sqlite3.Connection, *, alert_id: str, session_id: str, key_id: str, kind: str,
                   message: str, now: datetime) -> bool:
    """`Ledger.raise_alert` inside the caller's write transaction. Overrun alerts of earlier UTC days are over
    (`core.alerts`): they are marked resolved first, at the end of their day, so the pending ones stay few."""
    _resolve_overruns(conn, now)
    cur = conn.execute(
        "INSERT INTO alerts(id, session_id, key_id, kind, message, created_at)"
        " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING", (alert_id, session_id, key_id, kind, message, ts(now)),
    )
    if cur.rowcount:
        _event(conn, now, "alert", session_id, key_id, {"kind": kind, "message": message})
    return bool(cur.rowcount)


def _resolve_overruns(conn: sqlite3.Connection, now: datetime) -> None:
    """Mark the overrun alerts raised before today resolved when their day ended (`core.alerts.resolves_at`): a walk
    of the partial index of unresolved alerts up to today (usually empty)."""
    over = conn.execute("SELECT id, created_at FROM alerts WHERE resolved_at IS NULL AND created_at < ?"
                        " AND kind = 'overrun'", (ts(alerts.overruns_over_before(now)),)).fetchall()
    if over:
        executemany_own(conn, "UPDATE alerts SET resolved_at = ? WHERE id = ?",
                        [(ts(alerts.resolves_at(alerts.OVERRUN, parse_ts(r["created_at"]))), r["id"]) for r in over])


def sessions_in(conn: sqlite3.Connection, session_ids: Sequence[str]) -> dict[str, SessionInfo]:
    """The sessions of these ids that exist, by id (a few SELECTs of up to 500 ids each)."""
    found: dict[str, SessionInfo] = {}
    ids = list(dict.fromkeys(session_ids))
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        rows = conn.execute(f"SELECT * FROM sessions WHERE id IN ({','.join('?' * len(part))})", part)
        found.update((r["id"], _session(r)) for r in rows)
    return found


def session_key_in(conn: sqlite3.Connection, session_id: str) -> str | None:
    """The key a session is on now (None: no such session): what pricing its usage needs, without building it."""
    row = conn.execute("SELECT key_id FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return None if row is None else row["key_id"]


# ---- helpers (run inside a transaction) --------------------------------------------------------
def _key_views(conn: sqlite3.Connection, keys: Iterable[ResolvedKey], now: datetime) -> list[KeyView]:
    return _views(conn, keys, utc_day(now), ts(now))


# Today's counters and the cooldowns still running (an ended one reads as no cooldown), in one statement; the
# allocation's read adds a last row with the earliest lease end of an open session (one look into the partial index
# of open leases: its first entry), which says whether any lease is due.
_VIEWS = ("SELECT 0 AS part, key_id, used, reserved, NULL AS until FROM key_day_counters WHERE day = ?"
          " UNION ALL SELECT 1, key_id, 0, 0, until FROM key_cooldowns WHERE until > ?")
_VIEWS_LEASE = _VIEWS + " UNION ALL SELECT 2, NULL, 0, 0, MIN(lease_expires_at) FROM sessions WHERE state = 'open'"
# SQLite (see `_Seen`). A statement of its own: as a table-valued function in the read (pragma_data_version) it costs
# twice as much (SQLite prepares the pragma again on every run).
_DATA_VERSION = "PRAGMA data_version"

# The allocation reuses the figures the last allocation on its connection left (`_Seen`) while they still hold;
# False reads them in every allocation (what a property compares it with: tests/store/test_alloc_memo.py).
_REUSE = True


@dataclass(slots=True)
class _Seen:
    """What an allocation's choice reads, as of `stamp` on UTC day `day`: the key-day counters (used, reserved),
    the cooldowns running then (their end, text), the soonest of those ends, and the earliest lease end of an open
    session. On SQLite the allocation leaves it, with what its own transaction changed (its reserve, its lease), to
    the next write on the same connection (store.db._Write). Left with no `version` (the first allocation of a run
    does not ask it), it only tells the next allocation that a run has begun: that one asks the version and reads.
    With one, the next allocation takes it in place of the read when

    - no other connection committed since (`PRAGMA data_version`, `version`, changes exactly then; a write on this
      connection that is not an allocation ends the memo itself), and
    - it is still day `day`, not earlier than `stamp`, and no cooldown has ended since (every cooldown of the memo
      is still running, and one that ended before `stamp` cannot be running later): the views are then the ones a
      read would make.

    A lease due (`lease` earlier than the stamp) sends the allocation to the expiry pass and a read, as before."""

    version: int | None
    day: str
    stamp: str
    counters: dict[str, tuple[int, int]]
    cooldowns: dict[str, str]
    until: str | None
    lease: str | None

    def holds(self, version: int | None, day: str, stamp: str) -> bool:
        return (version is not None and self.version == version and self.day == day and self.stamp <= stamp
                and (self.until is None or stamp < self.until))

    def due(self, stamp: str) -> bool:
        return self.lease is not None and self.lease < stamp


def _read_seen(conn: sqlite3.Connection, day: str, stamp: str, version: int | None = None) -> _Seen:
    """The figures at `stamp`, read in the transaction that asked `PRAGMA data_version` (None: not asked)."""
    counters: dict[str, tuple[int, int]] = {}
    cooldowns: dict[str, str] = {}
    lease = None
    # A day and a timestamp of Butler's own making: no redaction pass (store.db.execute_own).
    for r in execute_own(conn, _VIEWS_LEASE, (day, stamp)):
        part = r["part"]
        if part == 0:
            counters[r["key_id"]] = (int(r["used"]), int(r["reserved"]))
        elif part == 1:
            cooldowns[r["key_id"]] = r["until"]
        else:
            lease = r["until"]
    return _Seen(version, day, stamp, counters, cooldowns, min(cooldowns.values()) if cooldowns else None, lease)


def _views(conn: sqlite3.Connection, keys: Iterable[ResolvedKey], day: str, stamp: str) -> list[KeyView]:
    """The key views at `stamp` (its UTC day `day`)."""
    counters: dict[str, tuple[int, int]] = {}
    cooldowns: dict[str, str] = {}
    for r in execute_own(conn, _VIEWS, (day, stamp)):
        if r["part"] == 0:
            counters[r["key_id"]] = (int(r["used"]), int(r["reserved"]))
        else:
            cooldowns[r["key_id"]] = r["until"]
    return _build_views(keys, counters, cooldowns)


def _build_views(keys: Iterable[ResolvedKey], counters: dict[str, tuple[int, int]],
                 cooldowns: dict[str, str]) -> list[KeyView]:
    views: list[KeyView] = []
    blanks = _BLANKS
    for k in keys:
        entry = blanks.get(id(k))
        blank = entry[1] if entry is not None and entry[0] is k else _blank(k)
        key_id = blank[0]
        counter = counters.get(key_id)
        until = cooldowns.get(key_id)
        if counter is None and until is None:
            views.append(blank)  # nothing counted today, not resting: the blank view is this key's view
            continue
        used, reserved = counter or (0, 0)
        views.append(KeyView(key_id, blank[1], blank[2], blank[3], used, reserved, blank[6], blank[7],
                             parse_ts(until) if until else None, blank[9]))
    return views


# Each key's view with nothing counted and no cooldown, made once per ResolvedKey (frozen; the configuration builds
# them once) and shared (a KeyView is immutable): a view then takes its fixed fields from one tuple instead of seven
# attribute reads of the key (most of the cost of the views at 1,000 keys). Keyed by the object's id, checked by
# identity; emptied past a bound, so reloading the keys file many times cannot grow it without limit.
_BLANKS: dict[int, tuple[ResolvedKey, KeyView]] = {}


def _blank(k: ResolvedKey) -> KeyView:
    if len(_BLANKS) >= 100_000:
        _BLANKS.clear()
    view = KeyView(k.id, k.provider, k.scope, k.tokens_per_day, 0, 0, k.price_in_per_m, k.price_out_per_m, None,
                   k.enabled)
    _BLANKS[id(k)] = (k, view)
    return view


# `grants` counts the grants made on the key-day: the dashboard's fingerprint sees a new session there
# (store/reports.py), in the row this update writes anyway.
_RESERVE = ("UPDATE key_day_counters SET reserved = reserved + ?, grants = grants + 1"
            " WHERE key_id = ? AND day = ? AND used + reserved + ? <= ?")


def _reserve(conn: sqlite3.Connection, key: KeyView, need: int, now: datetime) -> bool:
    """The one conditional update that grants tokens: used + reserved + need <= limit, or nothing."""
    return _grant(conn, key.key_id, utc_day(now), need, key.tokens_per_day)


def _grant(conn: sqlite3.Connection, key_id: str, day: str, need: int, limit: int, *, own: bool = False) -> bool:
    """`own`: `key_id` already passed the redaction hook (`redact_values`), so the reserve skips it. (A leg carried
    to a new day holds again but grants nothing new: `core.settlement` carries it and counts no grant.)"""
    if need <= 0:
        return True  # granting nothing cannot break a limit, even on a key a late report pushed past it
    args = (need, key_id, day, need, limit)
    run = execute_own if own else _execute
    if run(conn, _RESERVE, args).rowcount == 1:
        return True
    # No row yet for this key and day (the first grant of the day): create it, then try once more.
    if _counter_row(conn, key_id, day, run):
        return run(conn, _RESERVE, args).rowcount == 1
    return False


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
    return conn.execute(sql, params)


def _counter_row(conn: sqlite3.Connection, key_id: str, day: str, run: Callable[..., Any] | None = None) -> bool:
    """Make sure the (key, day) counter exists; True when this call created it."""
    return bool((run or _execute)(conn, "INSERT INTO key_day_counters(key_id, day) VALUES (?, ?)"
                             " ON CONFLICT (key_id, day) DO NOTHING", (key_id, day)).rowcount)


_INSERT_SESSION = (
    "INSERT INTO sessions(id, label, task_id, key_id, allocated, threshold_ratio, leg_day, leg_granted, leg_held,"
    " lease_expires_at, state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,'open',?,?)")


def _insert_session(conn: sqlite3.Connection, session_id: str, label: str | None, task_id: str | None, key_id: str,
                    tokens: int, threshold_ratio: float, now: datetime, lease_seconds: int) -> None:
    stamp = ts(now)
    conn.execute(_INSERT_SESSION, (session_id, label, task_id, key_id, tokens, threshold_ratio, utc_day(now), tokens,
                                   tokens, ts(now + timedelta(seconds=lease_seconds)), stamp, stamp))


def _release_leg(conn: sqlite3.Connection, row: sqlite3.Row, *, closed_at: str | None = None) -> None:
    """Give back what the session's leg holds; with `closed_at`, close the session in the same update."""
    conn.execute("UPDATE key_day_counters SET reserved = reserved - ? WHERE key_id = ? AND day = ?",
                 (row["leg_held"], row["key_id"], row["leg_day"]))
    if closed_at is None:
        conn.execute("UPDATE sessions SET leg_held = 0 WHERE id = ?", (row["id"],))
    else:
        conn.execute("UPDATE sessions SET leg_held = 0, state = 'closed', closed_at = ?, updated_at = ? WHERE id = ?",
                     (closed_at, closed_at, row["id"]))
        _spend_ended(conn, row)


# What ended sessions spent, per UTC day they were opened on and per label or task (migration 0015): the dashboard's
# 30-day spend reads these and the open sessions, never every session of the window (no index on created_at: an
# allocation would write one more page for it).
_SPEND = ("INSERT INTO session_spend_days(grp, day, name, sessions, allocated, used, cost_pusd) VALUES (?,?,?,?,?,?,?)"
          " ON CONFLICT (grp, day, name) DO UPDATE SET sessions = session_spend_days.sessions + excluded.sessions,"
          " allocated = session_spend_days.allocated + excluded.allocated,"
          " used = session_spend_days.used + excluded.used,"
          " cost_pusd = session_spend_days.cost_pusd + excluded.cost_pusd")


def _spend_add(conn: sqlite3.Connection, row: sqlite3.Row, sessions: int, allocated: int, used: int,
               cost_pusd: int) -> None:
    if not (sessions or allocated or used or cost_pusd):
        return  # nothing to add (usage of 0 tokens after the end): no row of zeros
    # The label and task id are the ledger's own stored text (they passed the redaction hook on the way in).
    execute_own(conn, _SPEND, (*spend_key(row["label"], row["task_id"], row["created_at"]), sessions, allocated, used,
                               cost_pusd))


def _spend_ended(conn: sqlite3.Connection, row: sqlite3.Row) -> None:
    """Count an open session that ends now (closed, expired, released) in its day's spend, with what it used."""
    _spend_add(conn, row, 1, int(row["allocated"]), int(row["used"]), int(row["cost_pusd"]))


def _resting(keys: Sequence[ResolvedKey], key_id: str, whole_scope: bool) -> list[str]:
    scope = next((k.scope for k in keys if k.id == key_id), None)
    if not whole_scope or scope is None:
        return [key_id]
    return [key_id] + [k.id for k in keys if k.scope == scope and k.id != key_id]


def _set_cooldown(conn: sqlite3.Connection, key_id: str, until: datetime, reason: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO key_cooldowns(key_id, until, reason, strikes, updated_at) VALUES (?,?,?,1,?)"
        " ON CONFLICT(key_id) DO UPDATE SET until=excluded.until, reason=excluded.reason,"
        " strikes=key_cooldowns.strikes + 1, updated_at=excluded.updated_at",
        (key_id, ts(until), reason, ts(now)),
    )


def _expire_leases(conn: sqlite3.Connection, now: datetime) -> int:
    stale = conn.execute(
        "SELECT * FROM sessions WHERE state = 'open' AND lease_expires_at < ?", (ts(now),)
    ).fetchall()
    for row in stale:
        _release_leg(conn, row)
        conn.execute("UPDATE sessions SET state='expired', closed_at=?, updated_at=? WHERE id=?",
                     (ts(now), ts(now), row["id"]))
        _spend_ended(conn, row)
        _event(conn, now, "lease_expired", row["id"], row["key_id"], {"released": row["leg_held"]})
    return len(stale)


def _session_row(conn: sqlite3.Connection, session_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise UnknownSession(f"no session {session_id!r}", session_id=session_id)
    return row


def _session(row: sqlite3.Row) -> SessionInfo:
    return SessionInfo(
        session_id=row["id"], label=row["label"], task_id=row["task_id"], key_id=row["key_id"],
        allocated=row["allocated"], used=row["used"], held=row["leg_held"],
        rotation_threshold=threshold_tokens(row["leg_granted"], row["threshold_ratio"]),
        cost=usd(from_pico(int(row["cost_pusd"]))), state=row["state"], created_at=parse_ts(row["created_at"]),
    )


def _event(conn: sqlite3.Connection, now: datetime, kind: str, session_id: str | None, key_id: str | None,
           data: dict[str, Any]) -> None:
    conn.execute("INSERT INTO events(at, kind, session_id, key_id, data) VALUES (?,?,?,?,?)",
                 (ts(now), kind, session_id, key_id, json.dumps(data, sort_keys=True)))
