"""Per-key and per-provider figures as plain values: what the read tools report, free of pydantic.

core/reporting wraps these sums in its models; the light read path (handlers/reads.py) returns them as they
are. Any object with a key's day figures will do (`core.selection.KeyView`, `store.reads.KeyDay`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from butler_skill.core.money import usd


class DayFigures(Protocol):
    @property
    def key_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def tokens_per_day(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def reserved(self) -> int: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def remaining(self) -> int: ...
    def cooling(self, now: datetime) -> bool: ...


def key_overrun(view: DayFigures) -> int:
    """How far a key's day is past its limit: used + reserved beyond tokens_per_day (0 within it).

    Grants never cause it (each is the conditional update `used + reserved + n <= limit`); only usage
    counted honestly beyond a hold does: a report after the session's lease expired, or more than was held.
    """
    return past_limit(view.used, view.reserved, view.tokens_per_day)


def past_limit(used: int, reserved: int, limit: int) -> int:
    """How far used + reserved is beyond `limit` (0 within it): `key_overrun` of a key-day's figures."""
    return max(0, used + reserved - limit)


def spend_key(label: str | None, task_id: str | None, created_at: str) -> tuple[str, str, str]:
    """Where a session's spend is filed in the per-day rollups (migration 0015): (group, the UTC day it was opened
    on, name): a task's sessions under the task's id, any other under its label ('' when it has none)."""
    day = created_at[:10]
    return ("label", day, label or "") if task_id is None else ("task", day, task_id)


def usable(view: DayFigures, now: datetime) -> bool:
    return view.enabled and not view.cooling(now) and view.remaining > 0


def provider_figures(views: Iterable[DayFigures], costs: Mapping[str, Decimal],
                     provider_of: Callable[[Any], str] | None = None) -> dict[str, dict[str, Any]]:
    """Figures per provider (or per ``provider_of(view)``: ``lambda v: "all"`` gives the total), sorted by name,
    as JSON-ready dicts with reporting.ProviderUsage's fields in its order. Costs are summed exactly and given as
    JSON numbers (see money.usd). Disabled keys count nowhere."""
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
    return {name: {"keys": p[0], "total_capacity": p[1], "used_today": p[2], "reserved": p[3], "remaining": p[4],
                   "cost_today": usd(p[5]), "overrun": p[6]} for name, p in sorted(sums.items())}
