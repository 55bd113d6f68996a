"""Should a running sub-task switch keys? One pure decision per provider answer.

Pure: no I/O, no clock (``now`` is a parameter), no randomness (jitter is a float in [0, 1) the caller
draws). The spawn runner asks after every call; for host-run sub-agents the answer is a recommendation.
The facts shared with sessions (the 75% boundary, the cooldown ladder, the 5 h auth rest, the next UTC
midnight) come from ``core/rotation.py`` and ``core/days.py``, so both agree on every number.

Rules, in order
---------------
1. ``auth`` → rotate; the key is disabled (``disable_key``) and rests ``rotation.AUTH_REST_S`` (5 h) so a
   person can look; any scope will do. A longer Retry-After wins here too.
2. ``quota_exhausted`` → rotate; the key is parked until the next 00:00 UTC after ``now`` (a daily quota does
   not come back sooner, so it is never retried the same day); the same scope is allowed (another key of the
   account may still have quota). A longer ``Retry-After`` wins.
3. ``rate_limit`` → rotate preferring another scope (limits belong to the account, not the key); the key
   cools down for ``Retry-After`` (whole seconds, at least 1) when the provider sent one, else OpenClaw's
   ladder by the number of consecutive rate limits on this key: 60 s, 300 s, 1500 s, 3600 s (and 3600 s on).
4. ``server`` / ``timeout`` → once ``attempt`` (1-based number of the attempt that just failed) reaches
   ``policy.max_attempts``: fail. Otherwise, if the share is past its threshold: rotate (a fresh key costs
   nothing extra); else retry on the same key after ``backoff_seconds(attempt, jitter)``, never sooner than
   ``Retry-After``.
5. ``bad_response`` → as 4 but with ``policy.bad_response_attempts`` (default 2: one retry), since a
   malformed or rejected answer rarely improves on its own.
6. no failure → rotate (reason ``threshold``, same scope allowed) once ``used`` reaches
   ``rotation.threshold_tokens(allocated, threshold)`` = floor(allocated × threshold) in exact decimal
   arithmetic, else continue. As ``used`` is whole tokens, this never continues once
   ``used >= threshold × allocated``. (Unlike a session's alert, a zero boundary is not exempt: a sub-task
   whose share rounds to a zero boundary rotates rather than spend on.)

Retry-After is honoured everywhere (a wait is never shorter), up to ``MAX_RETRY_AFTER_S`` (30 days): a
longer value is read as 30 days. Negative or NaN values are ignored.

Backoff: ``min(max_delay_s, base_delay_s * 2 ** (attempt - 1) * (1 + jitter_ratio * jitter))``: for a fixed
jitter it never decreases as attempts grow and never exceeds ``max_delay_s``. Only an explicit Retry-After
from the provider can make a retry wait longer than the cap.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from butler_skill.core import rotation
from butler_skill.errors import InvalidInput

__all__ = [
    "RATE_LIMIT_LADDER_S",
    "Continue",
    "Fail",
    "FailureKind",
    "InflightAction",
    "RetryPolicy",
    "RetrySame",
    "Rotate",
    "RotateReason",
    "backoff_seconds",
    "decide",
    "threshold_reached",
    "when_no_key_to_rotate_to",
]

FailureKind = Literal["none", "rate_limit", "quota_exhausted", "auth", "server", "timeout", "bad_response"]
FAILURE_KINDS: tuple[FailureKind, ...] = get_args(FailureKind)
RotateReason = Literal["threshold", "rate_limit", "quota_exhausted", "auth"]

RATE_LIMIT_LADDER_S: tuple[int, ...] = rotation.RATE_LIMIT_LADDER_S
DEFAULT_THRESHOLD = 0.75
MAX_RETRY_AFTER_S = 30 * 86400.0


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=30.0, gt=0)
    jitter_ratio: float = Field(default=0.5, ge=0)
    max_attempts: int = Field(default=3, ge=1)
    bad_response_attempts: int = Field(default=2, ge=1)


class Continue(BaseModel):
    model_config = ConfigDict(frozen=True)
    action: Literal["continue"] = "continue"


class Rotate(BaseModel):
    model_config = ConfigDict(frozen=True)
    action: Literal["rotate"] = "rotate"
    reason: RotateReason
    prefer_other_scope: bool
    cooldown_seconds: float = Field(ge=0)
    cooldown_until: datetime | None = None
    disable_key: bool = False


class RetrySame(BaseModel):
    model_config = ConfigDict(frozen=True)
    action: Literal["retry_same"] = "retry_same"
    after_seconds: float = Field(ge=0)
    attempt: int = Field(ge=2, description="number of the attempt about to be made")


class Fail(BaseModel):
    model_config = ConfigDict(frozen=True)
    action: Literal["fail"] = "fail"
    reason: str


InflightAction = Annotated[Continue | Rotate | RetrySame | Fail, Field(discriminator="action")]


def threshold_reached(used: int, allocated: int, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """``used >= floor(allocated * threshold)``, the boundary ``core.rotation`` uses for sessions."""
    if used < 0:
        raise InvalidInput("used must not be negative", used=used)
    try:
        boundary = rotation.threshold_tokens(allocated, threshold)
    except ValueError as exc:
        raise InvalidInput(str(exc), allocated=allocated, threshold=threshold) from None
    return used >= boundary


def backoff_seconds(attempt: int, jitter: float, policy: RetryPolicy | None = None) -> float:
    """Delay before retrying after failed attempt number ``attempt`` (1-based); ``jitter`` in [0, 1)."""
    p = policy or RetryPolicy()
    if attempt < 1:
        raise InvalidInput("attempt is 1-based", attempt=attempt)
    if not 0.0 <= jitter < 1.0:
        raise InvalidInput("jitter must be in [0, 1)", jitter=jitter)
    exponent = min(attempt - 1, 64)  # past the cap anyway; keeps the float finite
    return min(p.max_delay_s, p.base_delay_s * (2.0**exponent) * (1.0 + p.jitter_ratio * jitter))


def _rest(reason: RotateReason, now_utc: datetime, retry_after_s: float | None, strikes: int) -> datetime:
    until = rotation.cooldown_until(reason, now_utc, retry_after_s=retry_after_s, strikes=strikes)
    if until is None:  # pragma: no cover - every reason passed here rests
        raise InvalidInput("no cooldown for this reason", reason=reason)
    return until


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInput("now must be timezone-aware")


def decide(
    *,
    allocated: int,
    used: int,
    now: datetime,
    failure: FailureKind = "none",
    retry_after_s: float | None = None,
    consecutive_rate_limits: int = 1,
    attempt: int = 1,
    jitter: float = 0.0,
    threshold: float = DEFAULT_THRESHOLD,
    policy: RetryPolicy | None = None,
    cap_attempts: bool = False,
) -> Continue | Rotate | RetrySame | Fail:
    """Decide what a running sub-task does next. See the module doc for the rules.

    With `cap_attempts` (a runner with a fixed budget of calls per request) a rotation-worthy failure also
    ends the work once ``attempt`` reaches ``policy.max_attempts``: every attempt, on any key, counts.
    """
    _require_aware(now)
    if failure not in FAILURE_KINDS:
        raise InvalidInput("unknown failure kind", failure=str(failure))
    if retry_after_s is not None:
        # NaN or negative means nothing; an absurd wait is read as the longest we honour.
        retry_after_s = min(float(retry_after_s), MAX_RETRY_AFTER_S) if retry_after_s >= 0 else 0.0
    p = policy or RetryPolicy()
    past = threshold_reached(used, allocated, threshold)
    now_utc = now.astimezone(UTC)

    if failure in ("auth", "quota_exhausted", "rate_limit"):
        if cap_attempts and attempt >= p.max_attempts:
            return Fail(reason=f"{failure}: out of attempts")
        reason: RotateReason = failure  # type: ignore[assignment]
        if reason == "rate_limit" and consecutive_rate_limits < 1:
            raise InvalidInput("consecutive_rate_limits counts this rate limit too, so it is at least 1")
        until = _rest(reason, now_utc, retry_after_s, consecutive_rate_limits)
        seconds = (until - now_utc).total_seconds()
        if retry_after_s is not None and seconds < retry_after_s:
            # A longer Retry-After always wins; round up to the microsecond so it is never cut short.
            until = now_utc + timedelta(microseconds=math.ceil(retry_after_s * 1_000_000))
            seconds = max((until - now_utc).total_seconds(), retry_after_s)
        return Rotate(
            reason=reason,
            prefer_other_scope=rotation.prefer_other_scope(reason),
            cooldown_seconds=seconds,
            cooldown_until=until,
            disable_key=reason == "auth",
        )
    if failure in ("server", "timeout", "bad_response"):
        limit = p.bad_response_attempts if failure == "bad_response" else p.max_attempts
        if attempt >= limit:
            return Fail(reason=f"{failure} after {attempt} attempt(s)")
        if past:
            return Rotate(reason="threshold", prefer_other_scope=False, cooldown_seconds=0.0)
        delay = backoff_seconds(attempt, jitter, p)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return RetrySame(after_seconds=delay, attempt=attempt + 1)
    if past:
        return Rotate(reason="threshold", prefer_other_scope=False, cooldown_seconds=0.0)
    return Continue()


def when_no_key_to_rotate_to(action: Rotate, policy: RetryPolicy | None = None) -> RetrySame | Fail:
    """No other key can take the share. A rate limit short enough to sit out (at most the longest
    backoff) is waited for on the same key; anything else ends the sub-task."""
    p = policy or RetryPolicy()
    if action.reason == "rate_limit" and action.cooldown_seconds <= p.max_delay_s:
        return RetrySame(after_seconds=action.cooldown_seconds, attempt=2)
    return Fail(reason=f"{action.reason} and no other key can take the share")
