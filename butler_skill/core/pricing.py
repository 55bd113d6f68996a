"""What a call cost, from its normalised usage and the key's prices. Each token is priced once.

Usage is normalised (see adapters/providers/base.py): `input_tokens` is fresh input only; cache reads and
writes are counted apart; reasoning is inside `output_tokens`. Cache writes are billed as input; cache
reads at a tenth of the input price (Anthropic's and OpenAI's current discount). A cost the provider
reported itself (OpenRouter's `usage.cost`) always wins over this estimate.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from butler_skill.core.usage import Usage

CACHE_READ_PRICE_RATIO = Decimal("0.1")
_MILLION = Decimal(1_000_000)


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def usage_cost(
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    price_in_per_m: float,
    price_out_per_m: float,
    price_cache_read_per_m: float | None = None,
    price_cache_write_per_m: float | None = None,
    reported: float | None = None,
    digits: int | None = 6,
) -> float:
    """USD for one call. Cache prices default to a tenth of the input price (reads) and the input price
    (writes); `digits` rounds the result (None: exact to the float)."""
    if reported is not None:
        return round(float(reported), digits) if digits is not None else float(reported)
    pin = _d(price_in_per_m)
    read = _d(price_cache_read_per_m) if price_cache_read_per_m is not None else pin * CACHE_READ_PRICE_RATIO
    write = _d(price_cache_write_per_m) if price_cache_write_per_m is not None else pin
    total = (input_tokens * pin + cache_read_tokens * read + cache_write_tokens * write
             + output_tokens * _d(price_out_per_m))
    value = float(total / _MILLION)
    return round(value, digits) if digits is not None else value


class Priced(Protocol):
    """What pricing needs of a key (``models.ResolvedKey`` has it)."""

    @property
    def price_in_per_m(self) -> float: ...

    @property
    def price_out_per_m(self) -> float: ...


def cost_of(usage: Usage, key: Priced) -> float:
    """USD for one call's `usage` at `key`'s prices; the provider's own reported cost wins."""
    return usage_cost(
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
        price_in_per_m=key.price_in_per_m, price_out_per_m=key.price_out_per_m, reported=usage.cost_usd,
    )
