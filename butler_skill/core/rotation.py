"""When a session leaves its key, and how long the key it leaves rests.

- threshold: a session has used `ratio` (default 75%) of what it holds on its key;
- rate_limit: the account is throttled; wait Retry-After, else OpenClaw's ladder 1 m, 5 m, 25 m, 1 h;
  the next key should come from another scope (rate limits belong to the account);
- quota_exhausted: the key's daily quota is gone; park it until the next 00:00 UTC (never retry today);
- auth: the key is refused; rest it 5 h, as OpenClaw does for billing failures, so a person can look;
- manual: moved on request, no cooldown.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Literal

from butler_skill.core.days import next_utc_midnight

if TYPE_CHECKING:  # a type only: threshold_tokens is read by the light path, which imports no pydantic
    from butler_skill.models import RotationReason

RATE_LIMIT_LADDER_S = (60, 300, 1500, 3600)
AUTH_REST_S = 5 * 3600


def threshold_tokens(allocated: int, ratio: float) -> int:
    """Tokens after which a session should rotate: floor(allocated x ratio), exact decimal arithmetic."""
    if allocated < 0 or not 0 < ratio <= 1:
        raise ValueError("allocated must be >= 0 and ratio in (0, 1]")
    return int((Decimal(allocated) * Decimal(str(ratio))).to_integral_value(rounding=ROUND_FLOOR))


def crossed(used: int, threshold: int) -> bool:
    return threshold > 0 and used >= threshold


def cooldown_until(
    reason: RotationReason, now: datetime, *, retry_after_s: float | None = None, strikes: int = 1
) -> datetime | None:
    """When a key left for `reason` may be used again (None: it need not rest)."""
    if reason == "rate_limit":
        ladder = RATE_LIMIT_LADDER_S[min(max(strikes, 1), len(RATE_LIMIT_LADDER_S)) - 1]
        # Retry-After is whole seconds on the wire; never rest less than one.
        wait = ladder if retry_after_s is None else max(1, math.ceil(retry_after_s))
        return now + timedelta(seconds=wait)
    if reason == "quota_exhausted":
        return next_utc_midnight(now)
    if reason == "auth":
        return now + timedelta(seconds=AUTH_REST_S)
    return None


def rests_whole_scope(reason: RotationReason) -> bool:
    """A rate limit throttles the account: every key of that scope rests, not only the one that was refused."""
    return reason == "rate_limit"


def prefer_other_scope(reason: RotationReason) -> bool:
    """Rate limits are per account: move to another one. A spent daily quota is per key."""
    return reason == "rate_limit"


def rests_without_rotation(reason: RotationReason) -> bool:
    """A key the provider refused (rate limit, spent quota, auth) rests even when the session found no
    other key to move to, so that nothing else picks it up meanwhile."""
    return reason in ("rate_limit", "quota_exhausted", "auth")


AfterUsage = Literal["continue", "alert", "rotate"]


def overrun(used: int, allocated: int) -> int:
    """Tokens used beyond the whole allocation (0 when within it): a person should hear of it."""
    return max(0, used - allocated)


def after_usage(
    *, leg_used: int, leg_granted: int, ratio: float, remaining_allocation: int, auto_rotate: bool, closing: bool
) -> AfterUsage:
    """What settling usage on a session's current key leads to.

    Below the threshold nothing happens. Past it the person is alerted; the session moves only when
    auto-rotate is on, the session is not ending, and there is still some of its allocation to move.
    """
    if not crossed(leg_used, threshold_tokens(leg_granted, ratio)):
        return "continue"
    if auto_rotate and not closing and remaining_allocation > 0:
        return "rotate"
    return "alert"
