"""Price a normalised Usage with core.pricing, exactly (Decimal, no rounding), for the adapter tests."""

from __future__ import annotations

from decimal import Decimal

from butler_skill.adapters.providers.base import Usage
from butler_skill.core.pricing import ModelPrices, money, usage_cost


def price(u: Usage, pin: float | str, pout: float | str, read: float | str | None,
          write: float | str | None = None, write_1h: float | str | None = None) -> Decimal:
    def opt(x: float | str | None) -> Decimal | None:
        return money(x) if x is not None else None

    return usage_cost(u, ModelPrices(input_per_m=money(pin), output_per_m=money(pout),
                                               cache_read_per_m=opt(read), cache_write_per_m=opt(write),
                                               cache_write_1h_per_m=opt(write_1h)))
