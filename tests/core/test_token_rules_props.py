"""Properties of the token rules: estimate, key choice, threshold, cooldowns, UTC days."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butler_skill.core import estimate, rotation, selection
from butler_skill.core.days import next_utc_midnight, utc_day

LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
lines = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS), max_size=80)


@given(st.lists(lines, max_size=30), lines)
def test_adding_a_requirement_never_lowers_the_estimate(existing: list[str], requirement: str) -> None:
    before = estimate.estimate_prd("\n".join(existing))
    after = estimate.estimate_prd("\n".join([*existing, f"- {requirement or 'more'}"]))
    assert after.total >= before.total
    assert after.requirements >= before.requirements


@given(st.text(max_size=5000))
def test_estimate_is_bounded_and_adds_up(text: str) -> None:
    e = estimate.estimate_prd(text)
    assert estimate.MIN_ESTIMATE <= e.total <= estimate.MAX_ESTIMATE
    assert e.requirements >= 1
    raw = -(-(e.input_tokens + e.output_tokens) * 12 // 10)
    assert e.total == min(estimate.MAX_ESTIMATE, max(estimate.MIN_ESTIMATE, raw))


def test_estimate_worked_example() -> None:
    e = estimate.estimate_prd("- a\n- b")  # 7 chars -> 2 context tokens, 2 requirements
    assert (e.context_tokens, e.requirements, e.input_tokens, e.output_tokens) == (2, 2, 3, 4000)
    assert e.total == 4804


key_views = st.builds(
    selection.KeyView,
    key_id=st.text(alphabet="abcdefgh123", min_size=1, max_size=6),
    provider=st.sampled_from(["groq", "openai", "nvidia"]),
    scope=st.sampled_from(["s1", "s2", "s3"]),
    tokens_per_day=st.integers(1, 100_000),
    used=st.integers(0, 100_000),
    reserved=st.integers(0, 100_000),
    price_in_per_m=st.floats(0, 20),
    price_out_per_m=st.floats(0, 60),
    cooldown_until=st.none() | st.datetimes(timezones=st.just(UTC)),
    enabled=st.booleans(),
)
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@given(st.lists(key_views, max_size=12, unique_by=lambda k: k.key_id), st.integers(0, 120_000),
       st.none() | st.sampled_from(["groq", "openai", "nvidia", "anthropic"]),
       st.none() | st.sampled_from(["s1", "s2"]))
def test_choice_never_exceeds_capacity_nor_picks_a_resting_key(
    keys: list[selection.KeyView], need: int, preferred: str | None, avoid: str | None
) -> None:
    chosen = selection.choose_key(keys, need, NOW, preferred_provider=preferred, avoid_scope=avoid)
    fits = [k for k in keys if k.enabled and not k.cooling(NOW) and k.remaining >= need]
    if chosen is None:
        assert fits == []
        return
    assert chosen.remaining >= need and chosen.enabled and not chosen.cooling(NOW)
    if preferred and any(k.provider == preferred for k in fits):
        assert chosen.provider == preferred
    if avoid and any(k.scope != avoid and (not preferred or k.provider == chosen.provider) for k in fits):
        same_pref = [k for k in fits if not preferred or (k.provider == preferred) == (chosen.provider == preferred)]
        if any(k.scope != avoid for k in same_pref):
            assert chosen.scope != avoid


@given(st.lists(key_views, max_size=12, unique_by=lambda k: k.key_id), st.integers(-5, 120_000),
       st.none() | st.sampled_from(["groq", "openai", "nvidia", "anthropic"]),
       st.none() | st.sampled_from(["s1", "s2"]), st.lists(st.text(alphabet="abcdefgh123", min_size=1, max_size=6)),
       st.floats(0, 1))
def test_choice_is_the_first_of_the_ranking_of_the_eligible_keys(
    keys: list[selection.KeyView], need: int, preferred: str | None, avoid: str | None, exclude: list[str],
    input_share: float,
) -> None:
    """The one-pass choice equals its definition: sort the keys that are enabled, not excluded, not resting and
    have room (`eligible`) by `rank`'s order and take the first; nothing when none is eligible."""
    chosen = selection.choose_key(keys, need, NOW, preferred_provider=preferred, avoid_scope=avoid,
                                  exclude=exclude, input_share=input_share)
    ranked = selection.rank(selection.eligible(keys, need, NOW, exclude), preferred_provider=preferred,
                            avoid_scope=avoid, input_share=input_share)
    assert chosen == (ranked[0] if ranked else None)
    assert chosen is None or (chosen.remaining >= need and chosen.key_id not in exclude)


@given(st.lists(key_views, min_size=1, max_size=8, unique_by=lambda k: k.key_id), st.integers(0, 50_000))
def test_exclusion_is_respected(keys: list[selection.KeyView], need: int) -> None:
    chosen = selection.choose_key(keys, need, NOW, exclude=[keys[0].key_id])
    assert chosen is None or chosen.key_id != keys[0].key_id


@given(st.integers(0, 10**9), st.floats(0.01, 1.0))
def test_threshold_is_floor_of_ratio_and_bounded(allocated: int, ratio: float) -> None:
    t = rotation.threshold_tokens(allocated, ratio)
    assert 0 <= t <= allocated
    assert t <= allocated * ratio + 1e-6 * allocated + 1
    assert rotation.threshold_tokens(allocated + 1, ratio) >= t


@given(st.integers(0, 10**7), st.floats(0.05, 1.0), st.floats(0.05, 1.0))
def test_threshold_monotone_in_ratio(allocated: int, r1: float, r2: float) -> None:
    lo, hi = sorted((r1, r2))
    assert rotation.threshold_tokens(allocated, lo) <= rotation.threshold_tokens(allocated, hi)


def test_threshold_default_is_75_percent() -> None:
    assert rotation.threshold_tokens(10_000, 0.75) == 7_500
    assert rotation.threshold_tokens(12_400, 0.75) == 9_300


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.booleans(), st.booleans())
def test_after_usage_never_rotates_below_threshold_or_with_nothing_left(
    used: int, granted: int, left: int, auto: bool, closing: bool
) -> None:
    step = rotation.after_usage(leg_used=used, leg_granted=granted, ratio=0.75, remaining_allocation=left,
                                auto_rotate=auto, closing=closing)
    below = not rotation.crossed(used, rotation.threshold_tokens(granted, 0.75))
    assert (step == "continue") == below
    if step == "rotate":
        assert auto and not closing and left > 0


@given(st.datetimes(timezones=st.just(UTC)), st.none() | st.floats(0, 86_400), st.integers(1, 10))
def test_cooldowns(now: datetime, retry_after: float | None, strikes: int) -> None:
    until = rotation.cooldown_until("rate_limit", now, retry_after_s=retry_after, strikes=strikes)
    assert until is not None and until >= now + timedelta(seconds=1)
    if retry_after is not None:
        assert until >= now + timedelta(seconds=retry_after)
    else:
        assert until - now == timedelta(seconds=rotation.RATE_LIMIT_LADDER_S[min(strikes, 4) - 1])
    parked = rotation.cooldown_until("quota_exhausted", now)
    assert parked == next_utc_midnight(now)
    assert rotation.cooldown_until("manual", now) is None and rotation.cooldown_until("threshold", now) is None


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)),
       st.integers(-14 * 60, 14 * 60))
def test_day_boundary_is_utc_midnight_whatever_the_zone(naive: datetime, offset_min: int) -> None:
    zone = timezone(timedelta(minutes=offset_min))
    local = naive.replace(tzinfo=zone)
    utc = local.astimezone(UTC)
    assert utc_day(local) == utc.date().isoformat()
    midnight = next_utc_midnight(local)
    assert midnight.hour == midnight.minute == midnight.second == midnight.microsecond == 0
    assert utc_day(midnight - timedelta(microseconds=1)) == utc_day(local)
    assert utc_day(midnight) != utc_day(local)
    assert timedelta(0) < midnight - utc <= timedelta(days=1)


def test_day_ignores_the_host_time_zone() -> None:
    moment = datetime(2026, 11, 24, 23, 59, 59, 999999, tzinfo=UTC)
    old = os.environ.get("TZ")
    try:
        for tz in ("Pacific/Kiritimati", "America/Adak", "UTC"):
            os.environ["TZ"] = tz
            time.tzset()
            assert utc_day(moment) == "2026-11-24"
            assert utc_day(moment + timedelta(microseconds=1)) == "2026-11-25"
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_naive_datetimes_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError):
        utc_day(datetime(2026, 1, 1))


@given(key_views, st.integers(0, 1_000))
def test_a_key_view_cannot_be_changed_in_place_only_copied(view: selection.KeyView, more: int) -> None:
    """A rule sees the figures the ledger read; what it changes is a copy (`_replace`, as the task store's
    planning does), the view it was handed stays as read."""
    with pytest.raises(AttributeError):
        view.reserved = view.reserved + more  # type: ignore[misc]
    copy = view._replace(reserved=view.reserved + more)
    assert copy.reserved == view.reserved + more and copy.key_id == view.key_id
    assert copy.remaining == max(0, view.tokens_per_day - view.used - view.reserved - more)
