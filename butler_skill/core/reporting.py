"""Per-key and per-provider figures, from what the ledger counted."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

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


def by_provider(views: Iterable[KeyView], costs: Mapping[str, Decimal],
                provider_of: Callable[[KeyView], str] | None = None) -> dict[str, ProviderUsage]:
    """Figures per provider (or per ``provider_of(view)``: ``lambda v: "all"`` gives the total); costs are summed
    exactly and given as JSON numbers (see pricing.usd). Sums are kept in plain numbers and turned into models
    once per group: a model per key made a keys file of 10,000 keys cost a second per call."""
    sums: dict[str, list[Any]] = {}
    for v in views:
        if not v.enabled:
            continue
        name = provider_of(v) if provider_of else v.provider
        p = sums.get(name)
        if p is None:
            p = sums[name] = [0, 0, 0, 0, 0, Decimal(0), 0]
        p[0] += 1
        p[1] += v.tokens_per_day
        p[2] += v.used
        p[3] += v.reserved
        p[4] += v.remaining
        p[5] += costs.get(v.key_id, Decimal(0))
        p[6] += key_overrun(v)
    return {name: ProviderUsage(keys=p[0], total_capacity=p[1], used_today=p[2], reserved=p[3], remaining=p[4],
                                cost_today=usd(p[5]), overrun=p[6]) for name, p in sorted(sums.items())}


def usable(view: KeyView, now: datetime) -> bool:
    return view.enabled and not view.cooling(now) and view.remaining > 0
