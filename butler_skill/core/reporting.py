"""Per-key and per-provider figures, from what the ledger counted."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

from pydantic import BaseModel, Field

from butler_skill.core.selection import KeyView
from butler_skill.core.tally import key_overrun, provider_figures, usable

__all__ = ["ProviderUsage", "by_provider", "key_overrun", "usable"]


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


def by_provider(views: Iterable[KeyView], costs: Mapping[str, Decimal],
                provider_of: Callable[[KeyView], str] | None = None) -> dict[str, ProviderUsage]:
    """Figures per provider (or per ``provider_of(view)``: ``lambda v: "all"`` gives the total); costs are summed
    exactly and given as JSON numbers (see pricing.usd). Sums are kept in plain numbers (core/tally) and turned
    into models once per group: a model per key made a keys file of 10,000 keys cost a second per call."""
    return {name: ProviderUsage(**figures) for name, figures in provider_figures(views, costs, provider_of).items()}
