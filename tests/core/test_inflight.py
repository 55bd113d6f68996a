"""In-flight key decision: examples for each failure kind and properties (threshold, backoff, Retry-After)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.adapters.providers.base import ProviderFailureKind
from butler_skill.core.inflight import (
    Fail,
    FailureKind,
    RetryPolicy,
    RetrySame,
    Rotate,
    backoff_seconds,
    decide,
    threshold_reached,
)
from butler_skill.errors import InvalidInput

NOW = datetime(2026, 3, 1, 22, 15, tzinfo=timezone(timedelta(hours=-5)))  # 03:15 UTC on 2 March


def test_every_provider_failure_kind_is_understood() -> None:
    assert set(get_args(ProviderFailureKind)) <= set(get_args(FailureKind))


def test_below_and_at_the_threshold() -> None:
    assert decide(allocated=1_000, used=749, now=NOW).action == "continue"
    rotated = decide(allocated=1_000, used=750, now=NOW)
    assert isinstance(rotated, Rotate)
    assert (rotated.reason, rotated.prefer_other_scope, rotated.cooldown_seconds) == ("threshold", False, 0.0)
    assert decide(allocated=1_000, used=899, now=NOW, threshold=0.9).action == "continue"
    assert decide(allocated=1_000, used=900, now=NOW, threshold=0.9).action == "rotate"


def test_rate_limit_prefers_another_scope_and_honours_retry_after() -> None:
    action = decide(allocated=1_000, used=10, now=NOW, failure="rate_limit", retry_after_s=7)
    assert isinstance(action, Rotate)
    assert action.reason == "rate_limit" and action.prefer_other_scope and not action.disable_key
    assert action.cooldown_seconds == 7
    assert action.cooldown_until == datetime(2026, 3, 2, 3, 15, 7, tzinfo=UTC)


@pytest.mark.parametrize(("strikes", "seconds"), [(1, 60), (2, 300), (3, 1500), (4, 3600), (9, 3600)])
def test_rate_limit_ladder_without_retry_after(strikes: int, seconds: int) -> None:
    action = decide(allocated=1_000, used=10, now=NOW, failure="rate_limit", consecutive_rate_limits=strikes)
    assert isinstance(action, Rotate) and action.cooldown_seconds == seconds


def test_quota_parks_the_key_until_the_next_utc_midnight() -> None:
    action = decide(allocated=1_000, used=10, now=NOW, failure="quota_exhausted", retry_after_s=30)
    assert isinstance(action, Rotate)
    assert action.reason == "quota_exhausted" and not action.prefer_other_scope
    # 22:15 at UTC-5 is 03:15 UTC on 2 March: the key is back at 00:00 UTC on 3 March, not local midnight
    assert action.cooldown_until == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert action.cooldown_until.tzinfo is not None
    assert action.cooldown_seconds == 20 * 3600 + 45 * 60


def test_auth_disables_the_key() -> None:
    action = decide(allocated=1_000, used=10, now=NOW, failure="auth")
    assert isinstance(action, Rotate)
    assert action.reason == "auth" and action.disable_key and not action.prefer_other_scope
    assert action.cooldown_seconds == 5 * 3600


def test_server_errors_retry_with_backoff_then_fail() -> None:
    first = decide(allocated=1_000, used=10, now=NOW, failure="server", attempt=1, jitter=0.0)
    second = decide(allocated=1_000, used=10, now=NOW, failure="timeout", attempt=2, jitter=0.5)
    assert first == RetrySame(after_seconds=1.0, attempt=2)
    assert second == RetrySame(after_seconds=2.0 * 1.25, attempt=3)
    assert isinstance(decide(allocated=1_000, used=10, now=NOW, failure="server", attempt=3), Fail)
    # bad answers get one retry only
    assert decide(allocated=1_000, used=10, now=NOW, failure="bad_response", attempt=1).action == "retry_same"
    assert decide(allocated=1_000, used=10, now=NOW, failure="bad_response", attempt=2).action == "fail"


def test_server_error_past_the_threshold_moves_on_instead_of_retrying() -> None:
    action = decide(allocated=1_000, used=800, now=NOW, failure="server", attempt=1)
    assert isinstance(action, Rotate) and action.reason == "threshold"


def test_retry_after_beats_the_backoff_cap() -> None:
    action = decide(allocated=1_000, used=1, now=NOW, failure="server", retry_after_s=120)
    assert action == RetrySame(after_seconds=120, attempt=2)


def test_backoff_values_and_cap() -> None:
    policy = RetryPolicy(base_delay_s=1, max_delay_s=30, jitter_ratio=0.5)
    assert [backoff_seconds(a, 0.0, policy) for a in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_seconds(1, 0.999, policy) == pytest.approx(1.4995)
    assert backoff_seconds(10**6, 0.5, policy) == 30


@pytest.mark.parametrize(
    "kwargs",
    [
        {"now": datetime(2026, 1, 1)},  # naive
        {"now": NOW, "failure": "mystery"},
        {"now": NOW, "threshold": 0.0},
        {"now": NOW, "threshold": 1.5},
        {"now": NOW, "used": -1},
    ],
)
def test_invalid_input(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"allocated": 100, "used": 1, **kwargs}
    with pytest.raises(InvalidInput):
        decide(**args)  # type: ignore[arg-type]


def test_jitter_outside_unit_interval_is_refused() -> None:
    with pytest.raises(InvalidInput):
        backoff_seconds(1, 1.0)
    with pytest.raises(InvalidInput):
        backoff_seconds(0, 0.5)


# --------------------------------------------------------------------------------------------- properties

thresholds = st.sampled_from([0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 1.0])
failures = st.sampled_from(get_args(FailureKind))
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
nows = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=13, minutes=45))]),
)


@settings(max_examples=400)
@given(st.integers(0, 10**9), st.integers(0, 10**9), thresholds, failures, st.integers(1, 6), jitters, nows)
def test_never_continue_once_the_threshold_is_used(
    allocated: int, used: int, threshold: float, failure: str, attempt: int, jitter: float, now: datetime
) -> None:
    action = decide(
        allocated=allocated, used=used, now=now, failure=failure, attempt=attempt, jitter=jitter,  # type: ignore[arg-type]
        threshold=threshold,
    )
    if used >= Decimal(str(threshold)) * allocated:
        assert action.action != "continue"
        assert threshold_reached(used, allocated, threshold)
    if failure == "none" and used < math.floor(Decimal(str(threshold)) * allocated):
        assert action.action == "continue"


@settings(max_examples=300)
@given(st.integers(1, 200), st.integers(1, 200), jitters, st.floats(0.01, 10), st.floats(0.01, 1000), st.floats(0, 3))
def test_backoff_is_monotone_and_bounded(
    a: int, b: int, jitter: float, base: float, cap: float, ratio: float
) -> None:
    policy = RetryPolicy(base_delay_s=base, max_delay_s=cap, jitter_ratio=ratio)
    lo, hi = sorted((a, b))
    assert 0 < backoff_seconds(lo, jitter, policy) <= backoff_seconds(hi, jitter, policy) <= cap


@settings(max_examples=400)
@given(failures.filter(lambda f: f != "none"), st.floats(0, 10**6), st.integers(1, 6), jitters, nows,
       st.integers(1, 6))
def test_retry_after_is_always_honoured(
    failure: str, retry_after: float, attempt: int, jitter: float, now: datetime, strikes: int
) -> None:
    action = decide(
        allocated=10**6, used=0, now=now, failure=failure, retry_after_s=retry_after,  # type: ignore[arg-type]
        attempt=attempt, jitter=jitter, consecutive_rate_limits=strikes,
        policy=RetryPolicy(max_attempts=10, bad_response_attempts=10),
    )
    if isinstance(action, Rotate):
        assert action.cooldown_seconds >= retry_after
        assert action.cooldown_until is not None
        assert action.cooldown_until - now >= timedelta(seconds=retry_after) - timedelta(microseconds=1)
    else:
        assert isinstance(action, RetrySame)
        assert action.after_seconds >= retry_after


@settings(max_examples=300)
@given(nows)
def test_quota_until_is_the_next_utc_midnight(now: datetime) -> None:
    action = decide(allocated=100, used=0, now=now, failure="quota_exhausted")
    assert isinstance(action, Rotate) and action.cooldown_until is not None
    until = action.cooldown_until
    assert until.utcoffset() == timedelta(0)
    assert (until.hour, until.minute, until.second, until.microsecond) == (0, 0, 0, 0)
    assert timedelta(0) < until - now <= timedelta(days=1)


@given(st.sampled_from(["rate_limit", "quota_exhausted", "auth", "threshold"]), st.floats(0, 7200))
def test_without_a_target_only_short_rate_limits_are_waited_out(reason: str, cooldown: float) -> None:
    from butler_skill.core.inflight import Fail, RetrySame, Rotate, when_no_key_to_rotate_to

    policy = RetryPolicy(max_delay_s=30)
    action = Rotate(reason=reason, prefer_other_scope=reason == "rate_limit", cooldown_seconds=cooldown)
    out = when_no_key_to_rotate_to(action, policy)
    if reason == "rate_limit" and cooldown <= 30:
        assert isinstance(out, RetrySame) and out.after_seconds == cooldown
    else:
        assert isinstance(out, Fail)
