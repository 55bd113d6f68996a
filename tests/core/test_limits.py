"""The plausibility bound on one call, as a property: it is a box (each figure and the cost bounded alone)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from butler_skill.core.limits import MAX_CALL_COST_USD, MAX_CALL_TOKENS, plausible_call
from butler_skill.core.usage import Usage

counts = st.integers(0, 2 * MAX_CALL_TOKENS)
costs = st.decimals(min_value=-10, max_value=2 * MAX_CALL_COST_USD, places=12)


@given(counts, st.sampled_from([Decimal("Infinity"), Decimal("-Infinity"), Decimal("NaN")]))
def test_a_cost_that_is_no_number_is_never_plausible(n: int, cost: Decimal) -> None:
    assert not plausible_call(Usage.of(input_tokens=n), cost)


def test_the_bounds_themselves_are_plausible_and_one_past_is_not() -> None:
    top = Decimal(MAX_CALL_COST_USD)
    assert plausible_call(Usage.of(input_tokens=MAX_CALL_TOKENS, output_tokens=MAX_CALL_TOKENS), top)
    assert not plausible_call(Usage.of(cache_write_tokens=MAX_CALL_TOKENS + 1), Decimal(0))
    assert not plausible_call(Usage.of(), top + Decimal("0.000001"))
    assert not plausible_call(Usage.of(), Decimal("-0.000001"))


@given(counts, costs)
def test_lowering_a_figure_never_makes_a_plausible_call_implausible(n: int, cost: Decimal) -> None:
    if plausible_call(Usage.of(input_tokens=n), cost):
        assert plausible_call(Usage.of(input_tokens=n // 2), cost)
