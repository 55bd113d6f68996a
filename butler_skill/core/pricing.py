"""What a call cost, from its normalised usage and the model's prices. Each token is priced once, in Decimal.

Usage is normalised (see adapters/providers/base.py): `input_tokens` is fresh input only; cache reads and
cache writes are counted apart (`cache_write_1h_tokens` is the part of the writes kept for an hour);
reasoning is inside `output_tokens`; `web_search_requests` counts server-side tool calls billed per request.

    cost = input * in + cache_read * read + (cache_write - write_1h) * write + write_1h * write_1h_price
           + output * out            (all per million tokens)
         + web_search_requests * web_search_fee

A cost the provider reported itself (OpenRouter's `usage.cost`) wins over this estimate and is kept exactly.
Money is `Decimal` from the price table to the ledger, which stores it as integer pico-USD (`to_pico`); only
outputs round, for display. Nothing here reads a clock, a file or the environment.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

# Amounts live in core/money (imported without pydantic by the light read path); re-exported here.
from butler_skill.core.money import PICO, from_pico, money, to_pico, usd

if TYPE_CHECKING:
    from butler_skill.core.usage import Usage

__all__ = [
    "PICO",
    "ModelPrices",
    "TokenParam",
    "UsageFigures",
    "call_cost",
    "cost_of",
    "display",
    "from_pico",
    "money",
    "output_limit",
    "to_pico",
    "usage_cost",
    "usd",
]

_MILLION = Decimal(1_000_000)
TokenParam = Literal["max_tokens", "max_completion_tokens"]


class ModelPrices(BaseModel):
    """USD per million tokens for one model, plus per-request tool fees and the output cap.

    Cache prices left None are derived by the caller from the provider's ratios (registry); here None
    means "same as input" for reads and writes, which never prices a token below its list price."""

    model_config = ConfigDict(frozen=True)

    input_per_m: Decimal = Field(ge=0)
    output_per_m: Decimal = Field(ge=0)
    cache_read_per_m: Decimal | None = Field(default=None, ge=0)
    cache_write_per_m: Decimal | None = Field(default=None, ge=0, description="5-minute cache writes")
    cache_write_1h_per_m: Decimal | None = Field(default=None, ge=0, description="1-hour cache writes")
    web_search_per_request: Decimal = Field(default=Decimal(0), ge=0)
    max_output_tokens: int | None = Field(default=None, ge=1)

    @property
    def read(self) -> Decimal:
        return self.cache_read_per_m if self.cache_read_per_m is not None else self.input_per_m

    @property
    def write(self) -> Decimal:
        return self.cache_write_per_m if self.cache_write_per_m is not None else self.input_per_m

    @property
    def write_1h(self) -> Decimal:
        return self.cache_write_1h_per_m if self.cache_write_1h_per_m is not None else self.write


class UsageFigures(BaseModel):
    """The countable parts of one call (what `usage_cost` prices); `core.usage.Usage` extends it."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0, description="all cache writes, 1-hour ones included")
    cache_write_1h_tokens: int = Field(default=0, ge=0, description="the 1-hour part of cache_write_tokens")
    web_search_requests: int = Field(default=0, ge=0)
    tool_fees_usd: Decimal = Field(default=Decimal(0), ge=0, description="other per-call fees, as reported")

    @property
    def counted_tokens(self) -> int:
        """What a call counts against a token budget: input, output, cache reads and cache writes."""
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


def usage_cost(u: UsageFigures, p: ModelPrices) -> Decimal:
    """USD for one call from its figures and prices, exact. The 1-hour writes are taken out of the writes
    (never priced twice); 1-hour writes above the total writes count as 1-hour writes only."""
    w1h = u.cache_write_1h_tokens
    w5m = max(0, u.cache_write_tokens - w1h)
    per_m = (u.input_tokens * p.input_per_m + u.cache_read_tokens * p.read + w5m * p.write
             + w1h * p.write_1h + u.output_tokens * p.output_per_m)
    return per_m / _MILLION + u.web_search_requests * p.web_search_per_request + u.tool_fees_usd


def call_cost(u: UsageFigures, p: ModelPrices, *, reported: Decimal | None = None,
              upstream: Decimal | None = None, byok: bool = False) -> Decimal:
    """What one call cost the user. A provider-reported cost wins (kept exactly). OpenRouter BYOK: the
    reported `cost` is OpenRouter's fee on its credits and `upstream` what the provider billed the user's
    own key; both were spent, so both count. Without BYOK, `upstream` is informational (already in cost)."""
    if reported is None:
        return usage_cost(u, p)
    return reported + (upstream if byok and upstream is not None else Decimal(0))


def cost_of(usage: Usage, prices: ModelPrices) -> Decimal:
    """USD for one call's `usage` at a key's prices (`config.model_prices`): the provider's own reported
    cost wins (plus the upstream bill under OpenRouter BYOK), else the table's prices."""
    return call_cost(usage, prices, reported=usage.cost_usd, upstream=usage.upstream_cost_usd,
                     byok=usage.byok)


def output_limit(room: int, cap: int | None) -> int:
    """The `max_tokens` to send: what is left of the share, never above the model's output cap."""
    return min(room, cap) if cap is not None else room


def display(amount: Decimal, places: int = 6) -> Decimal:
    """Round for a human (never for the ledger or a tool output)."""
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
