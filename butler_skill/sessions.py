"""Sessions, one service for every front: open, settle, rotate, rest a key.

`record_usage` and `submit_result` (usage a host reports), the sub-agent runner (calls Butler makes itself)
and the gateway (calls an agent makes through Butler) all settle and rotate through these functions, so a
session behaves the same whoever drives it. The rules themselves live in `core/` (selection, rotation,
pricing, inflight); the state in the store. This module only wires the two together for a `Context`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, cast

from pydantic import AwareDatetime, BaseModel

from butler_skill.config import model_prices
from butler_skill.core import inflight, pricing, rotation, selection
from butler_skill.core.days import utc_day
from butler_skill.core.limits import MAX_CALL_COST_USD, MAX_CALL_TOKENS, plausible_call
from butler_skill.core.usage import Usage
from butler_skill.errors import NoCapacity, ProviderError, UnknownKey, UnknownSession
from butler_skill.models import Alert, ResolvedKey, RotationReason, SessionInfo
from butler_skill.store.ledger import (
    UsageReport,
    commit_usage_in,
    commit_usages_in,
    expire_leases_in,
    raise_alert_in,
    session_key_in,
)
from butler_skill.store.protocol import Grant, Rotation, UsageOutcome

if TYPE_CHECKING:
    from sqlite3 import Connection

    from butler_skill.host.context import Context

SettleStatus = Literal["ok", "rotated", "rotate_recommended", "closed"]
FailureKind = Literal["rate_limit", "quota_exhausted", "auth", "server", "timeout", "bad_response"]


class RotationOutcome(BaseModel):
    rotated: bool
    from_key_id: str
    to_key_id: str | None = None
    reason: RotationReason
    moved_tokens: int = 0
    cooldown_until: AwareDatetime | None = None
    message: str


@dataclass(frozen=True)
class Committed:
    """Usage written to the ledger, what it cost, and the `overrun` alert when it took the key-day past
    its limit."""

    outcome: UsageOutcome
    cost: Decimal
    alert: Alert | None = None


@dataclass(frozen=True)
class Settlement:
    """Usage settled, and what it led to (an alert, a rotation, the session's end)."""

    duplicate: bool
    session: SessionInfo
    cost: Decimal
    threshold_crossed: bool
    alert: Alert | None
    rotation: RotationOutcome | None
    status: SettleStatus


@contextmanager
def transaction(ctx: Context) -> Iterator[Context]:
    """One write transaction for several operations: the context it yields runs every store operation (the
    functions here, `ledger`, stores built on its `db`) inside it, so they commit together, once, or not at all
    (an exception rolls all of them back). Use the yielded context only inside the block; it shares the
    configuration, clock and ids of `ctx`. Open a session last: on PostgreSQL its insert is sent with the
    COMMIT (`execute_last`), and no statement may follow it in the transaction."""
    from butler_skill.store.joined import Joined
    from butler_skill.store.ledger import Ledger

    with ctx.db.write() as conn:
        joined = Joined(conn, ctx.db.dialect)
        tx = copy.copy(ctx)
        # Context's `db` and `ledger` are cached properties: set on the copy, they shadow the originals there.
        tx.__dict__["db"] = joined
        tx.__dict__["ledger"] = Ledger(joined)  # type: ignore[arg-type]
        yield tx


def key_of(ctx: Context, key_id: str) -> ResolvedKey:
    return next(k for k in ctx.config.resolved() if k.id == key_id)


def open_session(
    ctx: Context, need: int, *, label: str | None = None, task_id: str | None = None,
    preferred_provider: str | None = None, input_share: float = 0.5, session_id: str | None = None,
    lease_seconds: int | None = None, now: datetime | None = None, keys: Sequence[ResolvedKey] | None = None,
) -> Grant | list[selection.KeyView]:
    """Reserve `need` tokens on the key `core.selection` chooses (among `keys`, default all) and open a
    session on it; the key views seen when nothing fits (nothing changes then)."""
    cfg = ctx.config
    now = now or ctx.now()
    return ctx.ledger.open_session(
        keys=cfg.resolved() if keys is None else keys,
        pick=lambda views: selection.choose_key(
            views, need, now, preferred_provider=preferred_provider, input_share=input_share
        ),
        need=need, session_id=session_id or ctx.new_id("ses"), label=label, task_id=task_id,
        threshold_ratio=cfg.rotation_threshold, now=now,
        lease_seconds=cfg.lease_seconds if lease_seconds is None else lease_seconds, minted_id=session_id is None,
    )


def provider_request_id(key_id: str, provider_request_id: str | None, fallback: str) -> str:
    """Provider ids are unique per provider, not across them: namespace them by the key that was used."""
    return f"{key_id}:{provider_request_id}" if provider_request_id else fallback


def scoped_request_id(session_id: str, request_id: str) -> str:
    """The ledger's idempotency key: a request id within its session. Provider ids are not unique across
    sessions (some providers repeat them), so one session's report never swallows another's."""
    return f"{session_id}/{request_id}"


def commit(ctx: Context, session_id: str, request_id: str, usage: Usage, *, key_id: str | None = None,
           now: datetime | None = None) -> Committed:
    """Price `usage` exactly at the key it was spent on and settle it, idempotently by request id within
    the session. Besides an `overrun` alert when the key-day goes past its limit, nothing else happens (no
    threshold alert, no rotation): for a caller that ends the session itself. `commit_in` in a write transaction
    of its own (stale leases expired first): the usage and its alert commit together or not at all."""
    now = now or ctx.now()
    with ctx.db.write() as conn:
        expire_leases_in(conn, now)
        if key_id is None:
            key_id = session_key_in(conn, session_id)
            if key_id is None:
                raise UnknownSession(f"no session {session_id!r}", session_id=session_id)
        return commit_in(ctx, conn, session_id, request_id, usage, key=key_of(ctx, key_id), now=now)


def commit_in(ctx: Context, conn: Connection, session_id: str, request_id: str, usage: Usage, *,
              key: ResolvedKey, now: datetime) -> Committed:
    """`commit` inside the caller's write transaction (the sub-agent runner's fallback when its group write fails):
    the same exact price, bounds, idempotency and `overrun` alert as `commit_group_in`, by the same rules (the
    ledger settles it as a group of one, `store.ledger.commit_usage_in`)."""
    cost = pricing.cost_of(usage, model_prices(key))
    _plausible(usage, cost, key.id)
    done, outcome = commit_usage_in(conn, UsageReport(
        scoped_request_id(session_id, request_id), session_id, usage, cost, now, ctx.config.lease_seconds,
        key.tokens_per_day, key.id))
    alert = None
    if done.overrun:  # the key-day went past the key's limit with this report
        alert = _overrun_alert_in(ctx, conn, key, session_id, done.key_id, done.counted, done.overrun, done.state, now)
    return Committed(outcome, cost, alert)


@dataclass(slots=True)  # one per settlement: not frozen (a frozen dataclass takes five times as long to build)
class Report:
    """One usage report of a group (`commit_group_in`): `commit_in`'s arguments, and `close`: end the session after
    it, giving back what it still holds (the sub-agent runner's settlement ends its sub-task)."""

    session_id: str
    request_id: str
    usage: Usage
    key: ResolvedKey
    now: datetime
    close: bool = False


@dataclass(slots=True)
class Counted:
    """What one report of a group did: a duplicate or not, the session's tokens used right after it, its exact
    cost, and the `overrun` alert it raised."""

    duplicate: bool
    used: int
    cost: Decimal
    alert: Alert | None = None


def commit_group_in(ctx: Context, conn: Connection, reports: Sequence[Report]) -> list[Counted | Exception]:
    """`commit_in` (then, with `close`, the session's release) for each report in order, inside the caller's write
    transaction, with a few statements for the whole group (`store.ledger.commit_usages_in`): the ledger ends
    exactly as settling them one by one would. Per report what it did, or the exception settling it alone would
    raise (an implausible report, a conflicting request id, an unknown session: it then changed nothing). Raises
    when the group cannot be settled in one pass (the caller then settles it one by one)."""
    out: list[Counted | Exception | None] = [None] * len(reports)
    costs: list[Decimal] = []
    todo: list[UsageReport] = []
    where: list[int] = []
    lease = ctx.config.lease_seconds
    prices: dict[str, pricing.ModelPrices] = {}
    for i, r in enumerate(reports):
        key_prices = prices.get(r.key.id)
        if key_prices is None:
            key_prices = prices[r.key.id] = model_prices(r.key)
        cost = pricing.cost_of(r.usage, key_prices)
        try:
            _plausible(r.usage, cost, r.key.id)
        except ProviderError as exc:
            out[i] = exc
            continue
        costs.append(cost)
        where.append(i)
        todo.append(UsageReport(scoped_request_id(r.session_id, r.request_id), r.session_id, r.usage, cost, r.now,
                                lease, r.key.tokens_per_day, r.key.id, r.close))
    group = commit_usages_in(conn, todo)
    for i, cost, done in zip(where, costs, group.results, strict=True):
        if isinstance(done, Exception):
            out[i] = done
            continue
        alert = None
        if done.overrun:  # the key-day went past the key's limit with this report: the same alert `commit_in` raises
            r = reports[i]
            alert = _overrun_alert_in(ctx, conn, r.key, r.session_id, done.key_id, done.counted, done.overrun,
                                      done.state, r.now)
        out[i] = Counted(done.duplicate, done.used, cost, alert)
    return out  # type: ignore[return-value]


def _overrun_alert_in(ctx: Context, conn: Connection, key: ResolvedKey, session_id: str, key_id: str, counted: int,
                      over: int, state: str, now: datetime) -> Alert | None:
    """Raise the `overrun` alert of a settlement that left the key-day past the key's limit (once per session and
    key); the new alert, or None when it was raised before."""
    alert_id = ctx.new_id("alr")
    message = _overrun_message(key, counted, over, session_id, state, now)
    if not raise_alert_in(conn, alert_id=alert_id, session_id=session_id, key_id=key_id, kind="overrun",
                          message=message, now=now):
        return None
    return Alert(alert_id=alert_id, kind="overrun", session_id=session_id, key_id=key_id, message=message,
                 created_at=now)


def _plausible(usage: Usage, cost: Decimal, key_id: str) -> None:
    """The same bounds the tool schemas put on a caller's figures, for figures a provider reported (the runner
    and the gateway settle those): past them the report is broken, and counting it could take the ledger's
    sums past what they can hold. Nothing is settled then."""
    if not plausible_call(usage, cost):
        raise ProviderError(f"implausible usage reported on key {key_id}: a figure over {MAX_CALL_TOKENS} tokens "
                            f"or a cost outside 0..{MAX_CALL_COST_USD:g} USD; nothing was settled", key_id=key_id)


def _overrun_message(key: ResolvedKey, counted: int, over: int, session_id: str, state: str, now: datetime) -> str:
    late = " after its lease expired" if state == "expired" else ""
    return (f"key {key.id} counted {counted} tokens on {utc_day(now)}, "
            f"{over} past its daily limit of {key.tokens_per_day}: session "
            f"{session_id} reported usage{late} beyond what it held")


def _alert(ctx: Context, session: SessionInfo, kind: str, now: datetime, message: str) -> Alert | None:
    """Raise an alert once per (session, key, kind); the Alert when it is new."""
    alert_id = ctx.new_id("alr")
    if not ctx.ledger.raise_alert(alert_id=alert_id, session_id=session.session_id, key_id=session.key_id,
                                  kind=kind, message=message, now=now):
        return None
    return Alert(alert_id=alert_id, kind=kind, session_id=session.session_id, key_id=session.key_id,
                 message=message, created_at=now)


def settle(ctx: Context, session_id: str, request_id: str, usage: Usage, *, close: bool = False) -> Settlement:
    """Settle one response's usage on a session, then follow `core.rotation.after_usage`: past the threshold
    an alert, and with auto-rotate a move of the session's next calls to another key; `close` ends the
    session and releases what it still holds; usage past the allocation leaves an overrun alert."""
    cfg = ctx.config
    now = ctx.now()
    committed = commit(ctx, session_id, request_id, usage, now=now)
    outcome, cost = committed.outcome, committed.cost
    session = outcome.session
    step = rotation.after_usage(
        leg_used=outcome.leg_used, leg_granted=outcome.leg_granted, ratio=cfg.rotation_threshold,
        remaining_allocation=session.allocated - session.used, auto_rotate=cfg.auto_rotate, closing=close,
    ) if session.state == "open" and not outcome.duplicate else "continue"
    alert: Alert | None = committed.alert
    rotated: RotationOutcome | None = None
    status: SettleStatus = "ok"
    if step != "continue":
        threshold = rotation.threshold_tokens(outcome.leg_granted, cfg.rotation_threshold)
        alert = _alert(ctx, session, "rotation_threshold", now,
                       f"session {session.session_id} used {outcome.leg_used} of {outcome.leg_granted} tokens "
                       f"on {session.key_id} (threshold {threshold})") or alert
        status = "rotate_recommended"
    if step == "rotate":
        rotated, session = rotate(ctx, session.session_id, "threshold")
        if rotated.rotated:
            status = "rotated"
    if close:
        session = ctx.ledger.close_session(session.session_id, now)
        status = "closed"
    over = rotation.overrun(session.used, session.allocated)
    if over and not outcome.duplicate:
        # Raised after closing, so closing does not resolve it: the work cost more than it was given. It is pending
        # until the end of the UTC day (core.alerts).
        alert = _alert(ctx, session, "overrun", now, f"session {session.session_id} used {session.used} tokens, "
                       f"{over} more than its allocation of {session.allocated}") or alert
    return Settlement(duplicate=outcome.duplicate, session=session, cost=cost, threshold_crossed=step != "continue",
                      alert=alert, rotation=rotated, status=status)


def rotate(
    ctx: Context, session_id: str, reason: RotationReason, *, new_key_id: str | None = None,
    retry_after_s: float | None = None, keys: Sequence[ResolvedKey] | None = None,
) -> tuple[RotationOutcome, SessionInfo]:
    """Move a session's remaining allocation to the key `core.selection.rotation_target` picks among `keys`
    (default all; or to `new_key_id`); the key left behind rests as `core.rotation.cooldown_until` says."""
    cfg = ctx.config
    keys = cfg.resolved() if keys is None else keys
    if new_key_id is not None and not any(k.id == new_key_id for k in keys):
        raise UnknownKey(f"no key with id {new_key_id!r}", key_id=new_key_id)
    now = ctx.now()

    def pick(views: list[selection.KeyView], current: selection.KeyView | None,
             need: int) -> selection.KeyView | None:
        return selection.rotation_target(
            views, current, need, now, rests_whole_scope=rotation.rests_whole_scope(reason),
            prefer_other_scope=rotation.prefer_other_scope(reason), only_key_id=new_key_id,
        )

    before = ctx.ledger.session(session_id)
    result = ctx.ledger.rotate_session(
        session_id=session_id, keys=keys, pick=pick, reason=reason,
        cooldown=lambda strikes: rotation.cooldown_until(reason, now, retry_after_s=retry_after_s, strikes=strikes),
        now=now, lease_seconds=cfg.lease_seconds, rest_scope=rotation.rests_whole_scope(reason),
    )
    if isinstance(result, Rotation):
        return RotationOutcome(
            rotated=True, from_key_id=result.from_key_id, to_key_id=result.to_key_id, reason=reason,
            moved_tokens=result.moved, cooldown_until=result.cooldown_until,
            message=f"session moved from {result.from_key_id} to {result.to_key_id} ({reason})",
        ), result.session
    need = max(0, before.allocated - before.used)
    if new_key_id is not None:
        raise NoCapacity(f"key {new_key_id} cannot take {need} tokens now (capacity, cooldown or disabled)",
                         key_id=new_key_id, requested=need)
    return RotationOutcome(
        rotated=False, from_key_id=before.key_id, reason=reason,
        message=f"no other key can take {need} tokens now; the session stays on {before.key_id}",
    ), before


def rest_key(ctx: Context, key_id: str, reason: RotationReason, *, retry_after_s: float | None = None,
             strikes: int = 1) -> datetime | None:
    """Put a key (and, for a rate limit, its whole scope) in the cooldown `reason` calls for; until when."""
    now = ctx.now()
    until = rotation.cooldown_until(reason, now, retry_after_s=retry_after_s, strikes=strikes)
    if until is not None:
        ctx.ledger.set_cooldown(key_id, until, reason, now, keys=ctx.config.resolved(),
                                rest_scope=rotation.rests_whole_scope(reason))
    return until


def rotate_or_rest(
    ctx: Context, session_id: str, reason: RotationReason, *, new_key_id: str | None = None,
    retry_after_s: float | None = None,
) -> tuple[RotationOutcome, SessionInfo]:
    """Rotate; when there is nowhere to go but the provider refused the key, rest it anyway
    (`core.rotation.rests_without_rotation`) so nothing else picks it up."""
    outcome, session = rotate(ctx, session_id, reason, new_key_id=new_key_id, retry_after_s=retry_after_s)
    if not outcome.rotated and rotation.rests_without_rotation(reason):
        until = rest_key(ctx, session.key_id, reason, retry_after_s=retry_after_s)
        if until is not None:
            outcome = outcome.model_copy(update={"cooldown_until": until})
    return outcome, session


@dataclass(frozen=True)
class Recovery:
    """What to do after a provider refused a call: call again after `wait_s` (on the session's key, which a
    rotation may just have changed: `rotation`), or give up (`give_up` says why)."""

    wait_s: float = 0.0
    rotation: RotationOutcome | None = None
    give_up: str | None = None


def recover(
    ctx: Context, session_id: str, *, failure: FailureKind, retry_after_s: float | None, attempt: int,
    consecutive_rate_limits: int, jitter: float, policy: inflight.RetryPolicy,
    keys: Sequence[ResolvedKey] | None = None,
) -> Recovery:
    """One path for every front that makes calls (the sub-agent runner, the gateway): `core.inflight.decide`
    says retry, rotate or fail; a rotation with nowhere to go falls back as `inflight.when_no_key_to_rotate_to`
    says; and a key the provider refused rests even when the call gives up on it, so nothing else picks it up."""
    session = ctx.ledger.session(session_id)
    action = inflight.decide(
        allocated=session.allocated, used=session.used, now=ctx.now(), failure=failure,
        retry_after_s=retry_after_s, consecutive_rate_limits=max(1, consecutive_rate_limits), attempt=attempt,
        jitter=jitter, threshold=ctx.config.rotation_threshold, policy=policy, cap_attempts=True,
    )
    if isinstance(action, inflight.RetrySame):
        return Recovery(wait_s=action.after_seconds)
    if isinstance(action, inflight.Rotate):
        outcome, _ = rotate(ctx, session_id, action.reason, retry_after_s=retry_after_s, keys=keys)
        if outcome.rotated:
            return Recovery(rotation=outcome)
        fallback = inflight.when_no_key_to_rotate_to(action, policy)
        if isinstance(fallback, inflight.RetrySame):
            return Recovery(wait_s=fallback.after_seconds, rotation=outcome)
        reason = fallback.reason
    elif isinstance(action, inflight.Fail):
        reason = action.reason
    else:  # Continue never answers a failure
        reason = f"{failure}: no way forward"
    refused = cast(RotationReason, failure)
    if rotation.rests_without_rotation(refused):
        rest_key(ctx, session.key_id, refused, retry_after_s=retry_after_s)
    return Recovery(rotation=None, give_up=reason)
