"""Aggregation: the original's summary shape, camelCase on the wire, and properties over any results."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.aggregation import RESULT_STATUSES, SubTaskResult, TaskAggregate, aggregate


def result(sid: str, status: str, tokens: int = 0, **kw: object) -> SubTaskResult:
    return SubTaskResult(sub_task_id=sid, status=status, tokens_used=tokens, **kw)  # type: ignore[arg-type]


def test_example_counts_rate_and_shape() -> None:
    results = [
        result("st-10", "success", 1_200, output="done", key_id="groq-1", attempts=1),
        result("st-2", "failed", 300, error="bad answer", key_id="groq-2", attempts=3),
        result("st-1", "success", 2_000, key_id="groq-1", attempts=1),
        result("st-3", "timeout", 50, attempts=2),
        result("st-4", "cancelled"),
        result("st-5", "pending"),
    ]
    agg = aggregate("task-7", results)
    assert (agg.total_sub_tasks, agg.successful, agg.failed, agg.pending) == (6, 2, 3, 1)
    assert (agg.timed_out, agg.cancelled) == (1, 1)
    assert agg.total_tokens_used == 3_550  # failed attempts spent tokens too
    assert agg.success_rate == 2 / 6
    assert [d.sub_task_id for d in agg.details] == ["st-1", "st-2", "st-3", "st-4", "st-5", "st-10"]

    wire = json.loads(agg.model_dump_json())
    assert wire["taskId"] == "task-7"
    assert wire["totalSubTasks"] == 6
    assert wire["successful"] == 2 and wire["failed"] == 3
    assert wire["totalTokensUsed"] == 3_550
    assert wire["successRate"] == 2 / 6
    assert wire["details"][0] == {
        "subTaskId": "st-1", "status": "success", "tokensUsed": 2_000, "error": None, "output": None,
        "keyId": "groq-1", "attempts": 1,
    }
    assert "task_id" not in wire and "total_tokens_used" not in wire


def test_models_accept_both_spellings() -> None:
    camel = SubTaskResult.model_validate({"subTaskId": "st-1", "status": "success", "tokensUsed": 5, "keyId": "k"})
    snake = SubTaskResult.model_validate({"sub_task_id": "st-1", "status": "success", "tokens_used": 5, "key_id": "k"})
    assert camel == snake
    agg = aggregate("t", [camel])
    assert TaskAggregate.model_validate(json.loads(agg.model_dump_json())) == agg


def test_no_sub_tasks() -> None:
    agg = aggregate("empty", [])
    assert (agg.total_sub_tasks, agg.successful, agg.failed, agg.pending, agg.total_tokens_used) == (0, 0, 0, 0, 0)
    assert agg.success_rate == 0.0
    assert agg.details == []


def test_all_successful() -> None:
    assert aggregate("t", [result("a", "success", 1), result("b", "success", 2)]).success_rate == 1.0


results_st = st.lists(
    st.builds(
        SubTaskResult,
        sub_task_id=st.from_regex(r"st-[0-9]{1,3}", fullmatch=True) | st.text(max_size=8),
        status=st.sampled_from(RESULT_STATUSES),
        tokens_used=st.integers(min_value=0, max_value=10**9),
        error=st.none() | st.text(max_size=10),
        attempts=st.integers(min_value=0, max_value=5),
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(results_st)
def test_counts_and_totals_add_up(results: list[SubTaskResult]) -> None:
    agg = aggregate("t", results)
    assert agg.successful + agg.failed + agg.pending == agg.total_sub_tasks == len(results)
    assert agg.total_tokens_used == sum(r.tokens_used for r in results)
    assert 0.0 <= agg.success_rate <= 1.0
    assert agg.success_rate == (agg.successful / len(results) if results else 0.0)
    assert sorted(agg.details, key=lambda r: r.model_dump_json()) == sorted(results, key=lambda r: r.model_dump_json())


@settings(max_examples=200)
@given(results_st, st.randoms(use_true_random=False))
def test_order_of_arrival_does_not_matter(results: list[SubTaskResult], rnd: object) -> None:
    shuffled = list(results)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert aggregate("t", shuffled) == aggregate("t", results)


def by_definition(task_id: str, details: list[SubTaskResult]) -> TaskAggregate:
    """The rule stated over models, as `aggregate` computed it before `aggregate_values` (the reference)."""
    from butler_skill.core.aggregation import _natural_key

    counts = dict.fromkeys(RESULT_STATUSES, 0)
    for r in details:
        counts[r.status] += 1
    total, successful = len(details), counts["success"]
    return TaskAggregate(
        task_id=task_id, total_sub_tasks=total, successful=successful,
        failed=counts["failed"] + counts["timeout"] + counts["cancelled"], pending=counts["pending"],
        timed_out=counts["timeout"], cancelled=counts["cancelled"],
        total_tokens_used=sum(r.tokens_used for r in details),
        success_rate=successful / total if total else 0.0, details=sorted(details, key=_natural_key))


@settings(max_examples=300)
@given(results_st, st.booleans())
def test_plain_aggregation_equals_the_definition(results: list[SubTaskResult], twice: bool) -> None:
    from butler_skill.core.aggregation import ResultValues, TaskAggregate, aggregate_values

    results = results + results[:3] if twice else results  # repeated ids and attempts: the JSON tie-break decides
    values = [ResultValues(r.sub_task_id, r.status, r.tokens_used, r.error, r.output, r.key_id, r.attempts)
              for r in results]
    plain = aggregate_values("t", values)
    expected = by_definition("t", results)
    assert aggregate("t", results) == expected
    assert plain == expected.model_dump(by_alias=True)
    assert TaskAggregate.model_validate(plain) == expected


@given(st.from_regex(r"st-[0-9]{1,4}", fullmatch=True) | st.text(max_size=8))
def test_the_id_shortcut_is_the_natural_key(sub_task_id: str) -> None:
    from butler_skill.core.aggregation import _id_key, _natural_key

    assert _id_key(sub_task_id) == _natural_key(SubTaskResult(sub_task_id=sub_task_id, status="success"))[0]
