"""Properties of the rules the gateway and the sessions service ask: what a call may hold, how a model id
binds, where a rotating session goes, and the plan rules moved out of subagents/planning.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from butler_skill.core import admission, allocation, rotation, selection

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
counts = st.integers(0, 10**7)


@given(held=counts, in_flight=counts, prompt=st.integers(1, 10**6), wanted=st.integers(1, 10**6))
def test_a_bound_call_never_holds_more_than_its_session_has_free(held: int, in_flight: int, prompt: int,
                                                                  wanted: int) -> None:
    cap = admission.session_output_cap(held=held, in_flight=in_flight, prompt=prompt, wanted=wanted)
    assert 0 <= cap <= wanted
    if cap >= 1:
        assert in_flight + admission.need(prompt, cap) <= held
    else:
        assert held - in_flight - prompt < 1


@given(st.integers(0, 10**7))
def test_the_prompt_estimate_is_at_least_a_quarter_of_the_bytes(n: int) -> None:
    est = admission.prompt_estimate(n)
    assert est >= 1 and 4 * est >= n and 4 * (est - 1) < max(n, 1)


@given(st.from_regex(r"ses_[A-Za-z0-9_-]{1,30}", fullmatch=True), st.sampled_from(["", "butler/"]),
       st.sampled_from(["", "/gpt-4o-mini", "/anything/else"]))
def test_a_session_id_in_the_model_binds_the_call(sid: str, prefix: str, suffix: str) -> None:
    b = admission.bind(prefix + sid + suffix)
    assert b.session_id == sid and b.model is None


@given(st.from_regex(r"[a-z][a-z0-9.-]{0,20}(/[a-z0-9.-]{1,20})?", fullmatch=True))
def test_any_other_model_is_unbound(model: str) -> None:
    b = admission.bind(model)
    assert b.session_id is None
    assert b.model == (None if model == "auto" else model)
    assert admission.bind("butler/" + model) == b


def test_a_header_binds_whatever_the_model() -> None:
    assert admission.bind("gpt-4o", "ses_abc").session_id == "ses_abc"


views = st.lists(st.builds(
    selection.KeyView, key_id=st.sampled_from([f"k{i}" for i in range(6)]), provider=st.just("openai"),
    scope=st.sampled_from(["a", "b", "c"]), tokens_per_day=st.integers(0, 10_000), used=st.integers(0, 5_000),
    reserved=st.integers(0, 5_000), price_in_per_m=st.floats(0, 5), price_out_per_m=st.floats(0, 5),
    cooldown_until=st.sampled_from([None, NOW - timedelta(seconds=1), NOW + timedelta(hours=1)]),
    enabled=st.booleans(),
), min_size=1, max_size=8, unique_by=lambda v: v.key_id)


@given(views, st.integers(0, 3_000), st.sampled_from(["threshold", "rate_limit", "quota_exhausted", "auth",
                                                      "manual"]))
def test_a_rotation_target_is_another_usable_key_outside_a_throttled_account(vs: list[selection.KeyView],
                                                                              need: int, reason: str) -> None:
    current = vs[0]
    whole = rotation.rests_whole_scope(reason)  # type: ignore[arg-type]
    target = selection.rotation_target(vs, current, need, NOW, rests_whole_scope=whole,
                                       prefer_other_scope=rotation.prefer_other_scope(reason))  # type: ignore[arg-type]
    if target is None:
        assert not [v for v in vs[1:] if v.enabled and not v.cooling(NOW) and v.remaining >= need
                    and not (whole and v.scope == current.scope)]
        return
    assert target.key_id != current.key_id and target.enabled and not target.cooling(NOW)
    assert target.remaining >= need
    if whole:
        assert target.scope != current.scope


def test_a_refused_key_rests_even_with_nowhere_to_go() -> None:
    assert [r for r in ("threshold", "manual", "rate_limit", "quota_exhausted", "auth")
            if rotation.rests_without_rotation(r)] == ["rate_limit", "quota_exhausted", "auth"]  # type: ignore[arg-type]


@given(st.lists(st.integers(0, 100), max_size=6))
def test_a_plan_needs_a_token_for_every_sub_task(shares: list[int]) -> None:
    assert allocation.shares_usable(shares) == (bool(shares) and all(s >= 1 for s in shares))


@given(st.integers(1, 10**6), st.integers(100, 86_400_000))
def test_a_sub_task_hold_outlives_its_run(default: int, timeout_ms: int) -> None:
    lease = allocation.subtask_lease_seconds(default, timeout_ms)
    assert lease >= default and lease >= 2 * (timeout_ms // 1000) + 60
