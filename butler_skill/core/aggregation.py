"""Aggregate recorded sub-task results into the original product's summary shape.

Pure: no I/O, no clock. Output field names follow the original (``taskId``, ``totalSubTasks``,
``successful``, ``failed``, ``totalTokensUsed``, ``successRate``, ``details``) through camelCase aliases;
models accept either spelling on input (``populate_by_name``) and serialise by alias.

Counting rules
--------------
* ``successful`` counts ``success``; ``failed`` counts ``failed``, ``timeout`` and ``cancelled``;
  ``pending`` counts ``pending``. So ``successful + failed + pending == totalSubTasks``. The three failure
  statuses are also broken out as ``timedOut`` and ``cancelled`` (both already inside ``failed``).
* ``totalTokensUsed`` sums ``tokensUsed`` over *all* results, failed ones included: a failed attempt still
  spent money.
* ``successRate = successful / totalSubTasks`` (0 when there are no sub-tasks), so it lies in [0, 1].
* Each input record counts once; a store that keeps several records per sub-task passes the latest one.

The totals are one pass (O(n)); ``details`` is sorted by sub-task id (``st-2`` before ``st-10``) so the
output does not depend on the order results arrived in: that sort is the only O(n log n) step.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "FAILED_STATUSES",
    "RESULT_STATUSES",
    "ResultStatus",
    "ResultValues",
    "SubTaskResult",
    "TaskAggregate",
    "aggregate",
    "aggregate_values",
]

ResultStatus = Literal["success", "failed", "timeout", "cancelled", "pending"]
RESULT_STATUSES: tuple[ResultStatus, ...] = get_args(ResultStatus)
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "timeout", "cancelled"})


class _CamelModel(BaseModel):
    # serialize_by_alias needs pydantic >= 2.11.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True
    )


class SubTaskResult(_CamelModel):
    """One recorded sub-task outcome (as ``submit_result`` or the spawn runner stores it)."""

    sub_task_id: str
    status: ResultStatus
    tokens_used: int = Field(default=0, ge=0)
    error: str | None = None
    output: str | None = None
    key_id: str | None = None
    attempts: int = Field(default=0, ge=0)


class TaskAggregate(_CamelModel):
    task_id: str
    total_sub_tasks: int = Field(ge=0)
    successful: int = Field(ge=0)
    failed: int = Field(ge=0)
    pending: int = Field(ge=0)
    timed_out: int = Field(ge=0)
    cancelled: int = Field(ge=0)
    total_tokens_used: int = Field(ge=0)
    success_rate: float = Field(ge=0.0, le=1.0)
    details: list[SubTaskResult]


_DIGITS = re.compile(r"([0-9]+)")  # ASCII only: int() refuses some Unicode digits (e.g. "²")


def _natural_key(result: SubTaskResult) -> tuple[tuple[tuple[int, int | str], ...], int, str]:
    parts = tuple(
        (0, int(p)) if i % 2 else (1, p) for i, p in enumerate(_DIGITS.split(result.sub_task_id)) if p != ""
    )
    # The tail makes the order total, so equal ids still sort the same way whatever the input order.
    return parts, result.attempts, result.model_dump_json()


def aggregate(task_id: str, results: Iterable[SubTaskResult]) -> TaskAggregate:
    """Totals, success rate and per-sub-task details for ``task_id`` (`aggregate_values`, the one rule, on models)."""
    values = [ResultValues(r.sub_task_id, r.status, r.tokens_used, r.error, r.output, r.key_id, r.attempts)
              for r in results]
    return TaskAggregate.model_validate(aggregate_values(task_id, values))


class ResultValues(NamedTuple):
    """A `SubTaskResult` as plain values (what a store reads), in the model's field order."""

    sub_task_id: str
    status: str
    tokens_used: int
    error: str | None
    output: str | None
    key_id: str | None
    attempts: int


def _id_key(sub_task_id: str) -> tuple[tuple[int, int | str], ...]:
    """`_natural_key`'s id part. Butler's own ids ("st-12") directly: the split gives exactly these two parts."""
    number = sub_task_id[3:]
    if sub_task_id[:3] == "st-" and number.isascii() and number.isdigit():
        return ((1, "st-"), (0, int(number)))
    return tuple((0, int(p)) if i % 2 else (1, p) for i, p in enumerate(_DIGITS.split(sub_task_id)) if p != "")


def aggregate_values(task_id: str, results: Sequence[ResultValues]) -> dict[str, Any]:
    """Totals, success rate and per-sub-task details (`TaskAggregate` by alias) on plain values: no model per
    result, and the order's last tie-break (a result's JSON) computed only when two results share an id and an
    attempt count (a task's sub-task ids are unique, so never for a task). Validate it into `TaskAggregate` once.
    A property test keeps it equal to the rule's statement over models (tests/core/test_aggregation.py)."""
    counts = dict.fromkeys(RESULT_STATUSES, 0)
    tokens = 0
    for r in results:
        counts[r.status] += 1
        tokens += r.tokens_used
    total = len(results)
    keys = [(_id_key(r.sub_task_id), r.attempts) for r in results]
    if len(set(keys)) == total:
        order = sorted(range(total), key=keys.__getitem__)
    else:
        models = [SubTaskResult(**r._asdict()) for r in results]  # type: ignore[arg-type]
        order = sorted(range(total), key=lambda i: _natural_key(models[i]))
    successful = counts["success"]
    return {
        "taskId": task_id,
        "totalSubTasks": total,
        "successful": successful,
        "failed": counts["failed"] + counts["timeout"] + counts["cancelled"],
        "pending": counts["pending"],
        "timedOut": counts["timeout"],
        "cancelled": counts["cancelled"],
        "totalTokensUsed": tokens,
        "successRate": successful / total if total else 0.0,
        "details": [{"subTaskId": r.sub_task_id, "status": r.status, "tokensUsed": r.tokens_used, "error": r.error,
                     "output": r.output, "keyId": r.key_id, "attempts": r.attempts}
                    for r in (results[i] for i in order)],
    }
