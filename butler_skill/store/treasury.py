"""The treasury ledger: intents, their history, double-entry postings and the failure breaker.

Every write runs inside `db.write()` (BEGIN IMMEDIATE), so a policy check and the state change it allows
happen in one serialised transaction: two processes cannot both claim the last of a daily cap. State
changes are conditional on the current state; entries and events are append-only, enforced by triggers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from butler_skill.core.days import utc_month
from butler_skill.core.treasury import (
    OPEN_STATES,
    ZERO,
    Breaker,
    Decision,
    IntentFacts,
    IntentState,
    PostingDraft,
    breaker_after,
    can_transition,
    decimal_str,
    provider_account,
)
from butler_skill.errors import Conflict, NotFound, PolicyDenied
from butler_skill.store.db import Database
from butler_skill.store.timestamps import parse_ts, ts


class Intent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    idempotency_key: str
    provider: str
    destination: str
    amount: Decimal
    currency: str
    reason: str
    state: IntentState
    auto_approved: bool
    approved_by: str | None
    approved_at: datetime | None
    request: dict[str, Any] | None
    provider_tx_id: str | None
    provider_state: str | None
    attempts: int
    failure: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    settled_at: datetime | None

    def facts(self) -> IntentFacts:
        return IntentFacts(id=self.id, provider=self.provider, amount=self.amount,
                           destination=self.destination, state=self.state, sent_at=self.sent_at)


class NewIntent(BaseModel):
    id: str
    idempotency_key: str
    provider: str
    destination: str
    amount: Decimal
    reason: str
    auto_approved: bool = False


class Entry(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    posting_id: str
    intent_id: str
    account: str
    currency: str
    amount: Decimal
    idempotency_key: str
    provider_tx_id: str
    created_at: datetime


class IntentEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq: int
    intent_id: str
    at: datetime
    from_state: str | None
    to_state: str
    actor: str
    note: str


Authorizer = Callable[[Intent, list[IntentFacts], Breaker], str | None]


class TreasuryStore:
    def __init__(self, db: Database) -> None:
        # Append-only and frozen terms are enforced by triggers (migration 0004), whoever writes.
        self.db = db

    # ---- reads -------------------------------------------------------------------------------------
    def intent(self, intent_id: str) -> Intent:
        with self.db.read() as conn:
            return _intent(conn, intent_id)

    def intents(self, *, states: Iterable[IntentState] | None = None, limit: int | None = None) -> list[Intent]:
        sql = "SELECT * FROM treasury_intents"
        params: list[Any] = []
        if states is not None:
            wanted = [s.value for s in states]
            sql += f" WHERE state IN ({', '.join('?' for _ in wanted)})"
            params.extend(wanted)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self.db.read() as conn:
            return [_row_intent(r) for r in conn.execute(sql, params)]

    def intents_that_count(self, now: datetime, *, exclude: str | None = None) -> list[Intent]:
        """The intents the policy's rules read at `now`: every open one, and every one sent in the current UTC
        month (what `core.treasury.spend_windows` and `decide` count; nothing older can change a decision).
        Bounded by what is open and by the month, not by history: two indexed reads (migration 0013)."""
        with self.db.read() as conn:
            return [_row_intent(r) for r in _counting_rows(conn, now, exclude)]

    def breaker(self) -> Breaker:
        with self.db.read() as conn:
            return _breaker(conn)

    def entries(self, intent_id: str | None = None) -> list[Entry]:
        sql = "SELECT * FROM treasury_entries"
        params: tuple[Any, ...] = ()
        if intent_id is not None:
            sql += " WHERE intent_id = ?"
            params = (intent_id,)
        with self.db.read() as conn:
            return [_row_entry(r) for r in conn.execute(sql + " ORDER BY seq", params)]

    def postings_of(self, intent_id: str) -> list[str]:
        with self.db.read() as conn:
            return [r["kind"] for r in conn.execute(
                "SELECT kind FROM treasury_postings WHERE intent_id = ? ORDER BY kind", (intent_id,))]

    def events(self, intent_id: str) -> list[IntentEvent]:
        with self.db.read() as conn:
            return [IntentEvent(seq=r["seq"], intent_id=r["intent_id"], at=parse_ts(r["at"]),
                                from_state=r["from_state"], to_state=r["to_state"], actor=r["actor"],
                                note=r["note"])
                    for r in conn.execute(
                        "SELECT * FROM treasury_intent_events WHERE intent_id = ? ORDER BY seq", (intent_id,))]

    def bought_by_provider(self) -> dict[str, Decimal]:
        """USDC recorded as sent into each provider's credit account."""
        totals: dict[str, Decimal] = {}
        prefix = provider_account("")
        for entry in self.entries():
            if entry.account.startswith(prefix) and entry.currency == "USDC":
                name = entry.account[len(prefix):]
                totals[name] = totals.get(name, ZERO) + entry.amount
        return totals

    # ---- writes ------------------------------------------------------------------------------------
    def propose(
        self,
        decide: Callable[[list[IntentFacts], Breaker], Sequence[Decision]],
        make: Callable[[Decision], NewIntent],
        now: datetime,
        actor: str,
    ) -> tuple[list[Decision], list[Intent]]:
        """Decide against the ledger as it is inside this transaction, and store each proposal as an intent."""
        with self.db.write() as tx:
            facts = [_row_intent(r).facts() for r in _counting_rows(tx, now, None)]
            decisions = list(decide(facts, _breaker(tx)))
            created: list[Intent] = []
            for decision in decisions:
                if decision.action != "propose":
                    continue
                new = make(decision)
                state = IntentState.APPROVED if new.auto_approved else IntentState.PROPOSED
                tx.execute(
                    "INSERT INTO treasury_intents (id, idempotency_key, provider, destination, amount, reason, state,"
                    " auto_approved, approved_by, approved_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (new.id, new.idempotency_key, new.provider, new.destination, decimal_str(new.amount),
                     new.reason, state.value, int(new.auto_approved), "policy" if new.auto_approved else None,
                     ts(now) if new.auto_approved else None, ts(now), ts(now)),
                )
                _event(tx, new.id, now, None, IntentState.PROPOSED, actor, new.reason)
                if new.auto_approved:
                    _event(tx, new.id, now, IntentState.PROPOSED, IntentState.APPROVED, "policy",
                           "amount within auto_approve_max")
                created.append(_intent(tx, new.id))
            return decisions, created

    def approve(self, intent_id: str, actor: str, now: datetime) -> Intent:
        with self.db.write() as tx:
            current = _intent(tx, intent_id)
            if current.state is IntentState.APPROVED:
                return current
            _move(tx, current, IntentState.APPROVED, now, actor, "approved by a person",
                  approved_by=actor, approved_at=ts(now))
            return _intent(tx, intent_id)

    def reject(self, intent_id: str, actor: str, now: datetime, note: str = "rejected by a person") -> Intent:
        with self.db.write() as tx:
            current = _intent(tx, intent_id)
            if current.state is IntentState.REJECTED:
                return current
            _move(tx, current, IntentState.REJECTED, now, actor, note)
            return _intent(tx, intent_id)

    def claim(self, intent_id: str, now: datetime, actor: str, authorize: Authorizer,
              request: dict[str, Any]) -> Intent:
        """approved -> sending, if the policy allows it against everything sent so far. The request body
        (without any ciphertext) is stored with it: every retry re-sends exactly this."""
        with self.db.write() as tx:
            current = _intent(tx, intent_id)
            if current.state is not IntentState.APPROVED:
                raise Conflict(f"intent {intent_id} is {current.state.value}, not approved: another process may "
                               "be sending it", intent_id=intent_id, state=current.state.value)
            others = [_row_intent(r).facts() for r in _counting_rows(tx, now, intent_id)]
            why = authorize(current, others, _breaker(tx))
            if why is not None:
                raise PolicyDenied(f"intent {intent_id} may not be sent: {why}", intent_id=intent_id)
            stored = current.request if current.request is not None else request
            _move(tx, current, IntentState.SENDING, now, actor, "claimed for sending",
                  sent_at=ts(now), request=json.dumps(stored, sort_keys=True))
            return _intent(tx, intent_id)

    def count_attempt(self, intent_id: str, now: datetime) -> None:
        with self.db.write() as tx:
            tx.execute("UPDATE treasury_intents SET attempts = attempts + 1, updated_at = ? WHERE id = ?",
                       (ts(now), intent_id))

    def mark(self, intent_id: str, target: IntentState, now: datetime, actor: str, note: str, *,
             provider_tx_id: str | None = None, provider_state: str | None = None,
             failure: str | None = None, max_failures: int | None = None) -> Intent:
        """A state change that moves no money in the ledger (submitted, unknown, failed, back to approved).
        With `max_failures`, the change counts as a failed payment for the breaker."""
        with self.db.write() as tx:
            current = _intent(tx, intent_id)
            fields: dict[str, Any] = {}
            if provider_tx_id is not None:
                fields["provider_tx_id"] = provider_tx_id
            if provider_state is not None:
                fields["provider_state"] = provider_state
            if failure is not None:
                fields["failure"] = failure
            if target in (IntentState.FAILED, IntentState.FAILED_SAFE):
                fields["settled_at"] = ts(now)
            if target is IntentState.APPROVED:
                fields["sent_at"] = None
            if current.state is not target:
                _move(tx, current, target, now, actor, note, **fields)
            elif fields:
                _update(tx, intent_id, now, **fields)
            if max_failures is not None:
                _save_breaker(tx, breaker_after(_breaker(tx), "failure", now, max_failures), now)
            return _intent(tx, intent_id)

    def settle_complete(self, intent_id: str, *, provider_tx_id: str, provider_state: str,
                        postings: Sequence[PostingDraft], now: datetime, actor: str,
                        max_failures: int) -> bool:
        """Record a completed transfer exactly once. Returns False when it was already recorded."""
        with self.db.write() as tx:
            current = _intent(tx, intent_id)
            if current.state is IntentState.COMPLETE:
                return False
            if current.provider_tx_id is not None and current.provider_tx_id != provider_tx_id:
                raise Conflict(f"intent {intent_id} is already linked to another provider transaction",
                               intent_id=intent_id)
            wrote = False
            for posting in postings:
                posting_id = f"{intent_id}/{posting.kind}"
                cur = tx.execute(
                    "INSERT INTO treasury_postings (id, intent_id, kind, idempotency_key, provider_tx_id,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (posting_id, intent_id, posting.kind, current.idempotency_key, provider_tx_id, ts(now)),
                )
                if cur.rowcount != 1:
                    continue
                wrote = True
                for entry in posting.entries:
                    tx.execute(
                        "INSERT INTO treasury_entries (posting_id, intent_id, account, currency, amount,"
                        " idempotency_key, provider_tx_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (posting_id, intent_id, entry.account, entry.currency, decimal_str(entry.amount),
                         current.idempotency_key, provider_tx_id, ts(now)),
                    )
            _move(tx, current, IntentState.COMPLETE, now, actor, "transfer complete",
                  provider_tx_id=provider_tx_id, provider_state=provider_state, settled_at=ts(now), failure=None)
            _save_breaker(tx, breaker_after(_breaker(tx), "success", now, max_failures), now)
            return wrote

    def reset_breaker(self, actor: str, now: datetime) -> Breaker:
        with self.db.write() as tx:
            tx.execute(
                "UPDATE treasury_breaker SET consecutive_failures = 0, tripped_at = NULL, reset_at = ?,"
                " reset_by = ?, updated_at = ? WHERE id = 1",
                (ts(now), actor, ts(now)),
            )
            return _breaker(tx)


# ---- rows ------------------------------------------------------------------------------------------
def _opt_ts(text: str | None) -> datetime | None:
    return parse_ts(text) if text else None


def _row_intent(r: sqlite3.Row) -> Intent:
    return Intent(
        id=r["id"], idempotency_key=r["idempotency_key"], provider=r["provider"], destination=r["destination"],
        amount=Decimal(r["amount"]), currency=r["currency"], reason=r["reason"], state=IntentState(r["state"]),
        auto_approved=bool(r["auto_approved"]), approved_by=r["approved_by"],
        approved_at=_opt_ts(r["approved_at"]), request=json.loads(r["request"]) if r["request"] else None,
        provider_tx_id=r["provider_tx_id"], provider_state=r["provider_state"], attempts=r["attempts"],
        failure=r["failure"], created_at=parse_ts(r["created_at"]), updated_at=parse_ts(r["updated_at"]),
        sent_at=_opt_ts(r["sent_at"]), settled_at=_opt_ts(r["settled_at"]),
    )


def _row_entry(r: sqlite3.Row) -> Entry:
    return Entry(seq=r["seq"], posting_id=r["posting_id"], intent_id=r["intent_id"], account=r["account"],
                 currency=r["currency"], amount=Decimal(r["amount"]), idempotency_key=r["idempotency_key"],
                 provider_tx_id=r["provider_tx_id"], created_at=parse_ts(r["created_at"]))



# The term of the partial index treasury_intents_open (migration 0013), literal for literal: the states are
# constants of the code, never input.
_OPEN_TERM = "state IN (" + ", ".join(f"'{s}'" for s in sorted(state.value for state in OPEN_STATES)) + ")"


def _counting_rows(conn: Any, now: datetime, exclude: str | None) -> list[Any]:
    """Open intents and those sent since the start of `now`'s UTC month (sent_at is UTC text, so a text
    comparison is a time comparison), newest first, without `exclude`. Two index searches (by state, by
    sent_at) in a UNION: an OR could lead a planner to walk every intent in created_at order instead."""
    month_start = f"{utc_month(now)}-01T00:00:00.000000Z"
    rows = conn.execute(
        f"SELECT * FROM treasury_intents WHERE {_OPEN_TERM}"
        " UNION SELECT * FROM treasury_intents WHERE sent_at >= ? ORDER BY created_at DESC, id DESC",
        (month_start,)).fetchall()
    return [r for r in rows if r["id"] != exclude]

def _intent(conn: sqlite3.Connection, intent_id: str) -> Intent:
    row = conn.execute("SELECT * FROM treasury_intents WHERE id = ?", (intent_id,)).fetchone()
    if row is None:
        raise NotFound(f"no treasury intent with id {intent_id!r}", intent_id=intent_id)
    return _row_intent(row)


def _breaker(conn: sqlite3.Connection) -> Breaker:
    row = conn.execute("SELECT * FROM treasury_breaker WHERE id = 1").fetchone()
    return Breaker(consecutive_failures=row["consecutive_failures"], tripped_at=_opt_ts(row["tripped_at"]))


def _save_breaker(conn: sqlite3.Connection, breaker: Breaker, now: datetime) -> None:
    conn.execute(
        "UPDATE treasury_breaker SET consecutive_failures = ?, tripped_at = ?, updated_at = ? WHERE id = 1",
        (breaker.consecutive_failures, ts(breaker.tripped_at) if breaker.tripped_at else None, ts(now)),
    )


def _event(conn: sqlite3.Connection, intent_id: str, now: datetime, from_state: IntentState | None,
           to_state: IntentState, actor: str, note: str) -> None:
    conn.execute(
        "INSERT INTO treasury_intent_events (intent_id, at, from_state, to_state, actor, note)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (intent_id, ts(now), from_state.value if from_state else None, to_state.value, actor, note),
    )


_UPDATABLE = frozenset({"state", "approved_by", "approved_at", "request", "provider_tx_id", "provider_state",
                        "failure", "sent_at", "settled_at"})


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not an updatable intent column: {sorted(unknown)}")


def _update(conn: sqlite3.Connection, intent_id: str, now: datetime, **fields: Any) -> None:
    _check_fields(fields)
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(f"UPDATE treasury_intents SET {assignments}, updated_at = ? WHERE id = ?",
                 (*fields.values(), ts(now), intent_id))


def _move(conn: sqlite3.Connection, current: Intent, target: IntentState, now: datetime, actor: str, note: str,
          **fields: Any) -> None:
    _check_fields(fields)
    if not can_transition(current.state, target):
        raise Conflict(f"intent {current.id} is {current.state.value}; it cannot become {target.value}",
                       intent_id=current.id, state=current.state.value)
    cur = conn.execute(
        f"UPDATE treasury_intents SET state = ?{''.join(f', {n} = ?' for n in fields)}, updated_at = ?"
        " WHERE id = ? AND state = ?",
        (target.value, *fields.values(), ts(now), current.id, current.state.value),
    )
    if cur.rowcount != 1:  # unreachable inside BEGIN IMMEDIATE; a guard against misuse outside it
        raise Conflict(f"intent {current.id} changed underneath", intent_id=current.id)
    _event(conn, current.id, now, current.state, target, actor, note)
