"""Settling a group of usage reports at once, with the figures settling them one at a time would leave.

The ledger settles one provider response (`store.ledger.commit_usage_in`) and, for a sub-task that ends with it,
gives back what its session still holds (`release_session_in`). The sub-agent runner settles the sub-tasks that
finish together in one transaction; instead of running each settlement's statements in turn, the store reads
the sessions, the counters and the earlier usage records the group touches, and `settle_in_order` works out here
what running them one after the other would have left: each session's final row, each (key, UTC day) counter's
change, the usage records to insert, and the settlements that took a key-day past its limit (`overrun`). The
store then writes those figures with a handful of statements for the whole group.

The rules are the ledger's (store/ledger.py, DESIGN.md "The ledger's rules"), step by step, in order:

* idempotent by request id: an id settled before (in the ledger or earlier in the group) with the same figures
  in the same session changes nothing (`duplicate`); with other figures it is a `Conflict` and that settlement
  changes nothing at all (its sub-task's end neither), as its own SAVEPOINT rolled back would;
* usage belongs to the UTC day it is reported on: a leg reserved on an earlier day gives that day's hold back
  first and, for an open session, holds the same again today when it fits under the key's limit (`carry`);
* usage is counted honestly even past a hold or a limit (what was held is consumed first; the rest is counted
  on top), and a settlement that leaves its key-day counting more than the key's limit is reported (`overrun`);
* only an open session renews its lease; ending a sub-task gives back what its session still holds, to the day
  the hold is on, and closes it.

`Unsupported` is raised for a state where one-by-one settling would have hit a database constraint (a counter's
reserved figure going below zero): the store then settles that group one by one, which decides it exactly.
Pure: no clock, no I/O (the days, timestamps and lease deadlines are passed in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from butler_skill.errors import Conflict, UnknownSession

Figures = tuple[int, int, int, int, int, int]  # input, output, cache read, cache write, 1-hour cache write, searches


class Unsupported(Exception):
    """Settling the group in one pass would break a rule the database enforces; settle it one by one."""


@dataclass(frozen=True, slots=True)
class SessionState:
    """The columns of a session row that settling reads or writes."""

    key_id: str
    state: str  # open / closed / expired
    leg_day: str
    leg_granted: int
    leg_held: int
    leg_used: int
    used: int
    cost_pusd: int
    cost_usd: float
    lease_expires_at: str
    updated_at: str
    closed_at: str | None


@dataclass(slots=True)
class Counter:
    """A (key, day) counter: its figures, and whether its row exists (or this group creates it)."""

    used: int = 0
    reserved: int = 0
    cost_pusd: int = 0
    cost_usd: float = 0.0
    exists: bool = True
    created: bool = False


@dataclass(frozen=True, slots=True)
class Prior:
    """A usage record already in the ledger: whose it is and what it said."""

    session_id: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class Report:
    """One usage report to settle (then, with `close`, the end of its session).

    `request_id` is the ledger's idempotency key (already scoped by session); `limit` is the tokens_per_day of
    the key the caller priced it on (`view_key_id`), for the carry of an earlier day's hold and the overrun
    check; `stamp` is the report's timestamp, `day` its UTC day, `lease` the deadline an open session's lease
    is renewed to."""

    request_id: str
    session_id: str
    figures: Figures
    total: int
    pusd: int
    cost_usd: float
    day: str
    stamp: str
    lease: str
    limit: int | None
    view_key_id: str
    close: bool = False


@dataclass(frozen=True, slots=True)
class Settled:
    """What one report did: a duplicate, or usage counted on `key_id`'s `day` (the record to insert), and the
    session's row right after the usage (before any close). `overrun` > 0: the key-day of `view_key_id` counts
    `counted` tokens, `overrun` past its limit, after this report (raise the `overrun` alert)."""

    duplicate: bool
    key_id: str
    session: SessionState
    counted: int = 0
    overrun: int = 0


@dataclass
class GroupSettlement:
    """The outcome of `settle_in_order`: per report a `Settled` or the exception settling it alone raises (it then
    changes nothing); the sessions' final rows; the counters touched (final figures, and the starting ones)."""

    results: list[Settled | Exception]
    sessions: dict[str, SessionState]
    counters: dict[tuple[str, str], Counter]
    start: dict[tuple[str, str], Counter] = field(default_factory=dict)


def touched_counters(reports: Sequence[Report], sessions: Mapping[str, SessionState]) -> set[tuple[str, str]]:
    """The (key, day) counters settling `reports` may read or change (to read them before)."""
    touched: set[tuple[str, str]] = set()
    for r in reports:
        s = sessions.get(r.session_id)
        if s is not None:
            touched.add((s.key_id, s.leg_day))
            touched.add((s.key_id, r.day))
        touched.add((r.view_key_id, r.day))
    return touched


def settle_in_order(reports: Sequence[Report], sessions: Mapping[str, SessionState],
                    counters: Mapping[tuple[str, str], Counter], priors: Mapping[str, Prior]) -> GroupSettlement:
    """Settle `reports` one after the other on the given state (sessions by id, counters by (key, day): those of
    `touched_counters`, absent ones having no row yet; earlier usage records by request id)."""
    live: dict[str, SessionState] = dict(sessions)
    cnt: dict[tuple[str, str], Counter] = {k: replace(c) for k, c in counters.items()}
    start = {k: replace(c) for k, c in counters.items()}
    seen: dict[str, Prior] = dict(priors)
    changed: dict[str, SessionState] = {}
    results: list[Settled | Exception] = []

    def counter(key: tuple[str, str]) -> Counter:
        c = cnt.get(key)
        if c is None:
            c = cnt[key] = Counter(exists=False)
            start[key] = Counter(exists=False)
        return c

    def create(c: Counter) -> None:
        if not c.exists:
            c.exists = c.created = True

    def reserve_less(c: Counter, n: int) -> None:
        if c.exists:  # an UPDATE of a row that is not there changes nothing
            if c.reserved - n < 0:
                raise Unsupported("a counter's reserved figure would go below zero")
            c.reserved -= n

    for r in reports:
        prior = seen.get(r.request_id)
        s = live.get(r.session_id)
        if prior is not None:
            if prior.session_id != r.session_id or prior.figures != r.figures:
                results.append(Conflict(f"request {r.request_id} was already settled with different usage",
                                        request_id=r.request_id))
                continue
            if s is None:
                results.append(UnknownSession(f"no session {r.session_id!r}", session_id=r.session_id))
                continue
            results.append(Settled(True, s.key_id, s))
        else:
            if s is None:
                results.append(UnknownSession(f"no session {r.session_id!r}", session_id=r.session_id))
                continue
            # Work on copies: a report that fails part-way must leave nothing (there is no failure past this
            # point except Unsupported, which abandons the whole pass).
            if s.leg_day != r.day:  # carry: the earlier day's hold goes back; an open session holds it again today
                held = s.leg_held
                reserve_less(counter((s.key_id, s.leg_day)), held)
                carried = 0
                if s.state == "open" and r.limit is not None:
                    if held <= 0:
                        carried = held
                    else:
                        today = counter((s.key_id, r.day))
                        if not today.exists:
                            create(today)
                        if today.used + today.reserved + held <= r.limit:
                            today.reserved += held
                            carried = held
                s = replace(s, leg_day=r.day, leg_held=carried)
            consumed = min(r.total, s.leg_held)
            c = counter((s.key_id, r.day))
            create(c)
            if c.reserved - consumed < 0:
                raise Unsupported("a counter's reserved figure would go below zero")
            c.used += r.total
            c.reserved -= consumed
            c.cost_usd = c.cost_usd + r.cost_usd
            c.cost_pusd += r.pusd
            counted = c.used + c.reserved
            s = replace(s, used=s.used + r.total, cost_usd=s.cost_usd + r.cost_usd, cost_pusd=s.cost_pusd + r.pusd,
                        leg_held=s.leg_held - consumed, leg_used=s.leg_used + r.total,
                        lease_expires_at=r.lease if s.state == "open" else s.lease_expires_at, updated_at=r.stamp)
            overrun = 0
            if r.limit is not None and counted > r.limit:
                view = cnt.get((r.view_key_id, r.day))
                if view is not None and view.exists:
                    overrun = max(0, view.used + view.reserved - r.limit)
                    counted = view.used + view.reserved
            results.append(Settled(False, s.key_id, s, counted, overrun))
            seen[r.request_id] = Prior(r.session_id, r.figures)
        if r.close and s.state == "open":  # the sub-task's end: give back what is held, to its own day; close
            reserve_less(counter((s.key_id, s.leg_day)), s.leg_held)
            s = replace(s, leg_held=0, state="closed", closed_at=r.stamp, updated_at=r.stamp)
        live[r.session_id] = changed[r.session_id] = s
    return GroupSettlement(results, changed, {k: v for k, v in cnt.items() if v.exists or v.created}, start)
