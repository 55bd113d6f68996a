"""Budget split: worked examples and properties (exact sum, within one token, priority order, invariances)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.allocation import PRIORITIES, Priority, split_budget
from butler_skill.errors import InvalidInput

MULT = {"low": Fraction(1, 2), "medium": Fraction(1), "high": Fraction(3, 2), "critical": Fraction(2)}
RANK = {p: i for i, p in enumerate(PRIORITIES)}


def exact(budget: int, items: list[tuple[int, Priority]]) -> list[Fraction]:
    """An independent statement of the rule the module implements."""
    weights = [e * MULT[p] for e, p in items]
    if sum(weights) == 0:
        weights = [MULT[p] for _, p in items]
    return [budget * w / sum(weights) for w in weights]


# ----------------------------------------------------------------------------------------------- examples


def test_worked_example_low_and_critical() -> None:
    # 50k x 0.5 = 25k and 50k x 2 = 100k: 1/5 and 4/5 of the budget (no hidden cap; the original said 33k/67k)
    assert split_budget(100_000, [(50_000, "low"), (50_000, "critical")]) == [20_000, 80_000]


def test_proportional_to_estimates_at_equal_priority() -> None:
    assert split_budget(100_000, [(30_000, "medium"), (40_000, "medium"), (30_000, "medium")]) == [
        30_000, 40_000, 30_000,
    ]


def test_largest_remainder_with_ties_by_order() -> None:
    # 10 / 3 = 3.33.. each: one spare token goes to the first
    assert split_budget(10, [(1, "medium")] * 3) == [4, 3, 3]
    # 2/3 and 1/3 of 100: 66.67 -> 67, 33.33 -> 33
    assert split_budget(100, [(2, "medium"), (1, "medium")]) == [67, 33]
    # 1 token over 4 equal items goes to the first
    assert split_budget(1, [(5, "high")] * 4) == [1, 0, 0, 0]


def test_all_zero_estimates_split_by_multiplier() -> None:
    assert split_budget(100, [(0, "low"), (0, "critical")]) == [20, 80]
    assert split_budget(10, [(0, "medium")] * 3) == [4, 3, 3]


def test_a_zero_estimate_next_to_real_ones_gets_nothing() -> None:
    assert split_budget(1_000, [(0, "critical"), (10, "low")]) == [0, 1_000]


def test_all_equal_fallback_with_zero_multipliers() -> None:
    zeros = dict.fromkeys(PRIORITIES, Fraction(0))
    assert split_budget(9, [(5, "low"), (7, "high"), (0, "medium")], multipliers=zeros) == [3, 3, 3]


def test_empty_and_zero_budget() -> None:
    assert split_budget(0, [(10, "high"), (5, "low")]) == [0, 0]
    assert split_budget(500, []) == []


@pytest.mark.parametrize(
    ("budget", "items"),
    [(-1, [(1, "low")]), (10, [(-5, "low")]), (10, [(5, "urgent")]), (10, [(1.5, "low")]), (True, [(1, "low")])],
)
def test_invalid_input(budget: object, items: object) -> None:
    with pytest.raises(InvalidInput):
        split_budget(budget, items)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- properties

priorities = st.sampled_from(PRIORITIES)
estimates = st.integers(min_value=0, max_value=10**9)
items_st = st.lists(st.tuples(estimates, priorities), min_size=1, max_size=30)
budgets = st.integers(min_value=0, max_value=10**12)


@settings(max_examples=300)
@given(budgets, items_st)
def test_sum_is_exact_and_each_share_is_within_one_token(budget: int, items: list[tuple[int, Priority]]) -> None:
    shares = split_budget(budget, items)
    assert len(shares) == len(items)
    assert sum(shares) == budget
    for share, want in zip(shares, exact(budget, items), strict=True):
        assert share >= 0
        assert abs(share - want) < 1


@settings(max_examples=300)
@given(budgets, st.lists(st.tuples(estimates, priorities), max_size=10), estimates, priorities, priorities,
       st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=10))
def test_higher_priority_never_gets_less_at_the_same_estimate(
    budget: int, others: list[tuple[int, Priority]], estimate: int, p: Priority, q: Priority, i: int, j: int
) -> None:
    low, high = sorted((p, q), key=RANK.__getitem__)
    items = list(others)
    i = min(i, len(items))
    items.insert(i, (estimate, low))
    j = min(j, len(items))
    if j <= i:
        i += 1
    items.insert(j, (estimate, high))
    shares = split_budget(budget, items)
    if RANK[high] > RANK[low]:
        assert shares[j] >= shares[i]
    else:  # equal priority and estimate: only the tie-break (earlier first) may separate them
        assert abs(shares[j] - shares[i]) <= 1


@settings(max_examples=300)
@given(budgets, items_st, st.randoms(use_true_random=False))
def test_permuting_items_permutes_shares_up_to_tie_breaking(
    budget: int, items: list[tuple[int, Priority]], rnd: object
) -> None:
    order = list(range(len(items)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    shares = split_budget(budget, items)
    permuted = split_budget(budget, [items[k] for k in order])
    assert sum(permuted) == budget
    for pos, k in enumerate(order):
        assert abs(permuted[pos] - shares[k]) <= 1


@settings(max_examples=300)
@given(budgets, items_st, st.integers(min_value=1, max_value=10**6))
def test_scaling_every_estimate_changes_nothing(budget: int, items: list[tuple[int, Priority]], k: int) -> None:
    assert split_budget(budget, [(e * k, p) for e, p in items]) == split_budget(budget, items)


@given(budgets, items_st)
def test_same_input_same_output(budget: int, items: list[tuple[int, Priority]]) -> None:
    assert split_budget(budget, items) == split_budget(budget, list(items))


# ------------------------------------------------------------------- the integer split equals the definition

multipliers_st = st.fixed_dictionaries({p: st.fractions(min_value=-3, max_value=5, max_denominator=12)
                                        for p in PRIORITIES})


@settings(max_examples=400)
@given(budgets, st.lists(st.tuples(estimates, priorities), max_size=40), st.none() | multipliers_st)
def test_integer_split_equals_the_fraction_definition(budget: int, items: list[tuple[int, Priority]],
                                                      multipliers: dict[Priority, Fraction] | None) -> None:
    """split_budget computes in integers; the rule is stated in Fractions (largest remainder of exact_shares)."""
    from butler_skill.core.allocation import PRIORITY_MULTIPLIERS, exact_shares, largest_remainder

    mult = PRIORITY_MULTIPLIERS if multipliers is None else multipliers
    assert split_budget(budget, items, mult) == largest_remainder(budget, exact_shares(budget, items, mult))


@given(st.integers(min_value=0, max_value=10**9),
       st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=40))
def test_largest_remainder_int_equals_largest_remainder(total: int, weights: list[int]) -> None:
    from butler_skill.core.allocation import largest_remainder, largest_remainder_int

    weights = weights if sum(weights) else [1] * len(weights)
    denominator = sum(weights)
    numerators = [total * w for w in weights]
    assert largest_remainder_int(total, numerators, denominator) == largest_remainder(
        total, [Fraction(n, denominator) for n in numerators])
