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
from dataclasses import dataclass, field

from butler_skill.core.tally import past_limit
from butler_skill.errors import Conflict, UnknownSession

Figures = tuple[int, int, int, int, int, int]  # input, output, cache read, cache write, 1-hour cache write, searches


class Unsupported(Exception):
    """Settling the group in one pass would break a rule the database enforces; settle it one by one."""


@dataclass(slots=True)
class SessionState:
    """The columns of a session row that settling reads or writes (`settle_in_order` works on copies)."""

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

    def copy(self) -> SessionState:
        return SessionState(self.key_id, self.state, self.leg_day, self.leg_granted, self.leg_held, self.leg_used,
                            self.used, self.cost_pusd, self.cost_usd, self.lease_expires_at, self.updated_at,
                            self.closed_at)


@dataclass(slots=True)
class Counter:
    """A (key, day) counter: its figures, and whether its row exists (or this group creates it)."""

    used: int = 0
    reserved: int = 0
    cost_pusd: int = 0
    cost_usd: float = 0.0
    exists: bool = True
    created: bool = False


@dataclass(slots=True)
class Prior:
    """A usage record already in the ledger: whose it is and what it said."""

    session_id: str
    figures: Figures


@dataclass(slots=True)  # one per report (not frozen: a frozen dataclass takes five times as long to build)
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


@dataclass(slots=True)
class Settled:
    """What one report did: a duplicate, or usage counted on `key_id`'s `day` (the record to insert); the session's
    tokens used and state right after the usage (before any close). `overrun` > 0: the key-day of `view_key_id`
    counts `counted` tokens, `overrun` past its limit, after this report (raise the `overrun` alert)."""

    duplicate: bool
    key_id: str
    used: int
    state: str
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
    live: dict[str, SessionState] = {}  # each session's copy, changed in place as its reports settle
    cnt = {k: Counter(c.used, c.reserved, c.cost_pusd, c.cost_usd, c.exists, c.created) for k, c in counters.items()}
    start = {k: Counter(c.used, c.reserved, c.cost_pusd, c.cost_usd, c.exists, c.created) for k, c in counters.items()}
    seen: dict[str, Prior] = dict(priors)
    results: list[Settled | Exception] = []

    def counter(key: tuple[str, str]) -> Counter:
        c = cnt.get(key)
        if c is None:
            c = cnt[key] = Counter(exists=False)
            start[key] = Counter(exists=False)
        return c

    def reserve_less(c: Counter, n: int) -> None:
        if c.exists:  # an UPDATE of a row that is not there changes nothing
            if c.reserved - n < 0:
                raise Unsupported("a counter's reserved figure would go below zero")
            c.reserved -= n

    for r in reports:
        prior = seen.get(r.request_id)
        s = live.get(r.session_id)
        if s is None:
            found = sessions.get(r.session_id)
            s = found.copy() if found is not None else None
        if prior is not None and (prior.session_id != r.session_id or prior.figures != r.figures):
            results.append(Conflict(f"request {r.request_id} was already settled with different usage",
                                    request_id=r.request_id))
            continue
        if s is None:
            results.append(UnknownSession(f"no session {r.session_id!r}", session_id=r.session_id))
            continue
        live[r.session_id] = s
        if prior is not None:
            results.append(Settled(True, s.key_id, s.used, s.state))
        else:
            # Nothing fails past this point but Unsupported, which abandons the whole pass.
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
                            today.exists = today.created = True
                        if today.used + today.reserved + held <= r.limit:
                            today.reserved += held
                            carried = held
                s.leg_day, s.leg_held = r.day, carried
            consumed = min(r.total, s.leg_held)
            c = counter((s.key_id, r.day))
            if not c.exists:
                c.exists = c.created = True
            if c.reserved - consumed < 0:
                raise Unsupported("a counter's reserved figure would go below zero")
            c.used += r.total
            c.reserved -= consumed
            c.cost_usd = c.cost_usd + r.cost_usd
            c.cost_pusd += r.pusd
            counted = c.used + c.reserved
            s.used += r.total
            s.cost_usd = s.cost_usd + r.cost_usd
            s.cost_pusd += r.pusd
            s.leg_held -= consumed
            s.leg_used += r.total
            if s.state == "open":
                s.lease_expires_at = r.lease
            s.updated_at = r.stamp
            overrun = 0
            if r.limit is not None and counted > r.limit:
                view = cnt.get((r.view_key_id, r.day))
                if view is not None and view.exists:
                    overrun = past_limit(view.used, view.reserved, r.limit)
                    counted = view.used + view.reserved
            results.append(Settled(False, s.key_id, s.used, s.state, counted, overrun))
            seen[r.request_id] = Prior(r.session_id, r.figures)
        if r.close and s.state == "open":  # the sub-task's end: give back what is held, to its own day; close
            reserve_less(counter((s.key_id, s.leg_day)), s.leg_held)
            s.leg_held, s.state, s.closed_at, s.updated_at = 0, "closed", r.stamp, r.stamp
    return GroupSettlement(results, live, {k: v for k, v in cnt.items() if v.exists}, start)
