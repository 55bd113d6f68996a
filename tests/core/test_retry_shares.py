"""Retry shares: a failed sub-task's retry is capped at its original share and never starves waiting ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butler_skill.core.allocation import PRIORITIES, retry_shares, split_budget
from butler_skill.errors import InvalidInput

failed_items = st.lists(
    st.tuples(st.integers(0, 50_000), st.sampled_from(PRIORITIES), st.integers(0, 50_000)), min_size=1, max_size=8)


def test_the_reported_case_gets_its_original_share_not_the_whole_remainder() -> None:
    # OpenClaw run: one sub-task of share 8,261 failed with 17,827 tokens left; it used to get all 17,827.
    assert retry_shares(17_827, [(8_000, "medium", 8_261)]) == [8_261]


def test_a_tight_budget_is_split_by_weight_and_rounded_down() -> None:
    assert retry_shares(10, [(1, "medium", 100)] * 3) == [3, 3, 3]
    assert retry_shares(100, [(50_000, "low", 1_000), (50_000, "critical", 1_000)]) == [20, 80]


def test_owed_tokens_are_set_aside_first() -> None:
    assert retry_shares(1_000, [(10, "medium", 900)], owed=400) == [600]
    assert retry_shares(1_000, [(10, "medium", 900)], owed=1_000) == [0]
    assert retry_shares(1_000, [(10, "medium", 900)], owed=5_000) == [0]


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInput):
        retry_shares(-1, [(1, "medium", 1)])
    with pytest.raises(InvalidInput):
        retry_shares(10, [(1, "medium", -1)])
    with pytest.raises(InvalidInput):
        retry_shares(10, [(1, "medium", 1)], owed=-1)
    assert retry_shares(10, []) == []


@given(free=st.integers(0, 200_000), failed=failed_items, owed=st.integers(0, 200_000))
def test_a_retry_never_gets_more_than_its_original_share(free: int, failed: list, owed: int) -> None:
    shares = retry_shares(free, failed, owed)
    assert len(shares) == len(failed)
    assert all(0 <= s <= original for s, (_, _, original) in zip(shares, failed, strict=True))


@given(free=st.integers(0, 200_000), failed=failed_items, owed=st.integers(0, 200_000))
def test_retries_and_waiting_sub_tasks_fit_in_what_is_free(free: int, failed: list, owed: int) -> None:
    shares = retry_shares(free, failed, owed)
    assert sum(shares) <= max(0, free - owed)
    if owed <= free:
        assert sum(shares) + owed <= free


@given(free=st.integers(0, 200_000), more=st.integers(0, 200_000), failed=failed_items, owed=st.integers(0, 50_000))
def test_more_free_budget_never_gives_a_retry_less(free: int, more: int, failed: list, owed: int) -> None:
    low, high = retry_shares(free, failed, owed), retry_shares(free + more, failed, owed)
    assert all(a <= b for a, b in zip(low, high, strict=True))


@given(free=st.integers(0, 200_000), failed=failed_items)
def test_below_the_caps_it_is_the_proportional_split_rounded_down(free: int, failed: list) -> None:
    shares = retry_shares(free, failed)
    split = split_budget(free, [(e, p) for e, p, _ in failed])
    for s, prop, (_, _, original) in zip(shares, split, failed, strict=True):
        assert s == original or prop - 1 <= s <= prop
