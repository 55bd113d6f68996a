"""Price a normalised Usage with core.pricing, exactly (no rounding), for the adapter tests."""

from __future__ import annotations

from butler_skill.adapters.providers.base import Usage
from butler_skill.core.pricing import usage_cost


def price(u: Usage, pin: float, pout: float, read: float | None, write: float | None = None) -> float:
    return usage_cost(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                      cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                      price_in_per_m=pin, price_out_per_m=pout, price_cache_read_per_m=read,
                      price_cache_write_per_m=write, digits=None)
