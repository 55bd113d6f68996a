"""Per-key and per-provider figures, from what the ledger counted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from butler_skill.core.pricing import usd
from butler_skill.core.selection import KeyView


class ProviderUsage(BaseModel):
    keys: int
    total_capacity: int
    used_today: int
    reserved: int
    remaining: int
    cost_today: float
    overrun: int = Field(default=0, description="Tokens counted today past the keys' limits (used + reserved "
                         "beyond tokens_per_day): usage reported late or beyond what was reserved. 0 when every "
                         "key kept its limit; above 0 there is an `overrun` alert.")


def key_overrun(view: KeyView) -> int:
    """How far a key's day is past its limit: used + reserved beyond tokens_per_day (0 within it).

    Grants never cause it (each is the conditional update `used + reserved + n <= limit`); only usage
    counted honestly beyond a hold does: a report after the session's lease expired, or more than was held.
    """
    return max(0, view.used + view.reserved - view.tokens_per_day)


def by_provider(views: Iterable[KeyView], costs: Mapping[str, Decimal]) -> dict[str, ProviderUsage]:
    """Figures per provider; costs are summed exactly and given as JSON numbers (see pricing.usd)."""
    out: dict[str, ProviderUsage] = {}
    exact: dict[str, Decimal] = {}
    for v in views:
        if not v.enabled:
            continue
        p = out.get(v.provider) or ProviderUsage(
            keys=0, total_capacity=0, used_today=0, reserved=0, remaining=0, cost_today=0.0
        )
        exact[v.provider] = exact.get(v.provider, Decimal(0)) + costs.get(v.key_id, Decimal(0))
        out[v.provider] = ProviderUsage(
            keys=p.keys + 1,
            total_capacity=p.total_capacity + v.tokens_per_day,
            used_today=p.used_today + v.used,
            reserved=p.reserved + v.reserved,
            remaining=p.remaining + v.remaining,
            cost_today=usd(exact[v.provider]),
            overrun=p.overrun + key_overrun(v),
        )
    return dict(sorted(out.items()))


def usable(view: KeyView, now: datetime) -> bool:
    return view.enabled and not view.cooling(now) and view.remaining > 0
