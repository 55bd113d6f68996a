"""Amounts of money: exact Decimal USD, integer pico-USD as the ledger stores it, JSON numbers for outputs.

Pure and free of pydantic, so the light read path (`butler call get_status`) can price without importing
it; core/pricing re-exports every name here.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

PICO = Decimal("1e-12")


def money(value: Any) -> Decimal:
    """A USD amount as Decimal, exactly as written: floats through their shortest repr (0.00001623 stays
    0.00001623), strings and ints as they are. Raises ValueError for anything else, NaN, infinity or < 0."""
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    else:
        raise ValueError(f"not an amount: {value!r}")
    if not d.is_finite() or d < 0:
        raise ValueError(f"not an amount: {value!r}")
    return d


def to_pico(amount: Decimal) -> int:
    """Integer pico-USD (1e-12), as the ledger stores money. Exact for every price in the table times a
    token count; anything finer (a custom price with more than 6 decimals per million) rounds half-even."""
    return int((amount / PICO).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_pico(pico: int) -> Decimal:
    return (Decimal(pico) * PICO).normalize() if pico else Decimal(0)


def usd(amount: Decimal) -> float:
    """An exact amount as a JSON number for tool outputs: Python's float keeps 15 significant digits, so
    every amount the ledger holds (pico-USD) below 1,000 USD comes out digit for digit (0.00001623 prints
    as 1.623e-05). Outputs never round to fewer digits; only tables for people do (`display`)."""
    return float(amount)
