"""How large one provider call can plausibly be: the bounds tool schemas put on a caller's figures, and the
test a provider's own report must pass before it is settled. Because every settled figure is bounded, no sum
the ledger keeps can grow to infinity."""

from __future__ import annotations

from decimal import Decimal

from butler_skill.core.usage import Usage

# One provider response: the largest context windows are about 2M tokens; 10M in one figure is no real call.
MAX_CALL_TOKENS = 10_000_000
# One response's cost in USD: the dearest models cost well under $1,000 for a full 2M-token call.
MAX_CALL_COST_USD = 10_000.0


def plausible_call(usage: Usage, cost: Decimal) -> bool:
    """Every token figure and the cost of one call within the bounds (a finite cost, never negative)."""
    figures = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)
    return max(figures) <= MAX_CALL_TOKENS and cost.is_finite() and 0 <= cost <= Decimal(MAX_CALL_COST_USD)
