"""Turn a task description and a budget into sub-tasks with reserved shares (decompose, split, reserve)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from butler_skill.core import selection
from butler_skill.core.allocation import retry_shares, shares_usable, split_budget, subtask_lease_seconds
from butler_skill.core.decomposition import SubTaskSpec, decompose_plain
from butler_skill.core.share_keys import choose_share_keys
from butler_skill.errors import NoCapacity
from butler_skill.store.tasks import PlannedSubTask, SubTaskRow, TaskRow, TaskStore

if TYPE_CHECKING:
    from butler_skill.host.context import Context


def task_store(ctx: Context) -> TaskStore:
    return TaskStore(ctx.db)


def plan_task(ctx: Context, *, name: str, description: str, budget: int, mode: str, options: dict[str, Any],
              preferred_provider: str | None = None) -> tuple[str, list[SubTaskRow]]:
    """`plan`, answering the task's id and its sub-tasks."""
    task, planned = plan(ctx, name=name, description=description, budget=budget, mode=mode, options=options,
                         preferred_provider=preferred_provider)
    return task.id, planned


def plan(
    ctx: Context,
    *,
    name: str,
    description: str,
    budget: int,
    mode: str,
    options: dict[str, Any],
    preferred_provider: str | None = None,
    specs: list[SubTaskSpec] | None = None,
) -> tuple[TaskRow, list[SubTaskRow]]:
    """Decompose, split and write the plan (every share reserved, or nothing): the task and its sub-tasks as the
    ledger now holds them. Plain values throughout (the tool's input was validated at the boundary). `specs`: the
    description's decomposition (`decompose_plain(description, name)`) when the caller has made it already."""
    if specs is None:
        specs = decompose_plain(description, name)
    shares = split_budget(budget, [(s.estimated_tokens, s.priority) for s in specs])
    if not shares_usable(shares):
        # The sub-task count comes from the description's content, which no schema can bound: the budget
        # is too small for this task, not malformed (so no_capacity, not invalid_input).
        raise NoCapacity(f"a budget of {budget} tokens cannot give each of {len(specs)} sub-tasks a share",
                         path="/budget", subtasks=len(specs), requested=len(specs), largest_available=budget,
                         hint="raise the budget or merge sub-tasks")
    task_id = ctx.new_id("task")
    session_ids = ctx.new_ids("ses", len(specs))
    planned = [PlannedSubTask(s, share, sid) for s, share, sid in zip(specs, shares, session_ids, strict=True)]
    now = ctx.now()
    cfg = ctx.config
    return task_store(ctx).create(
        task_id=task_id, name=name, description=description, budget=budget, mode=mode, options=options,
        planned=planned, keys=cfg.resolved(), pick=_picker(now, preferred_provider),
        threshold_ratio=cfg.rotation_threshold, now=now, lease_seconds=_lease(ctx, options),
    )


def replan_failed(ctx: Context, task_id: str, failed: Sequence[SubTaskRow], remaining_budget: int,
                  preferred_provider: str | None = None) -> list[SubTaskRow]:
    """Fresh shares for failed sub-tasks out of what the task's budget has left."""
    # Each retry is capped at its planned share (core/allocation.retry_shares), not at the last round's: never
    # the whole budget left. Sub-tasks that used more than their shares can leave the budget below zero: nothing
    # to split then.
    items = [(s.estimated_tokens, s.priority, s.planned_share) for s in failed]
    shares = retry_shares(max(0, remaining_budget), items)  # type: ignore[arg-type]
    if not failed or not shares_usable(shares):
        raise NoCapacity(f"{remaining_budget} tokens left in the budget cannot cover {len(failed)} retries",
                         path="/task_id", remaining_budget=remaining_budget)
    now = ctx.now()
    cfg = ctx.config
    store = task_store(ctx)
    task = store.task(task_id)
    store.reopen(
        task_id=task_id, shares={s.id: share for s, share in zip(failed, shares, strict=True)},
        session_ids={s.id: ctx.new_id("ses") for s in failed}, keys=cfg.resolved(),
        pick=_picker(now, preferred_provider), threshold_ratio=cfg.rotation_threshold, now=now,
        lease_seconds=_lease(ctx, task.options),
    )
    return store.subtasks(task_id)


class _Picker:
    """The key rule for a plan's shares: `choose_key` for one share (retries), `choose_share_keys` for a whole
    plan (the same choices, share after share, in one pass)."""

    def __init__(self, now: Any, preferred_provider: str | None) -> None:
        self.now = now
        self.preferred_provider = preferred_provider

    def __call__(self, views: list[selection.KeyView], share: int) -> selection.KeyView | None:
        return selection.choose_key(views, share, self.now, preferred_provider=self.preferred_provider)

    def many(self, views: list[selection.KeyView], shares: list[int]) -> tuple[list[int | None],
                                                                             list[selection.KeyView]]:
        return choose_share_keys(views, shares, self.now, preferred_provider=self.preferred_provider)


def _picker(now: Any, preferred_provider: str | None) -> _Picker:
    return _Picker(now, preferred_provider)


def _lease(ctx: Context, options: dict[str, Any]) -> int:
    return subtask_lease_seconds(ctx.config.lease_seconds, int(options.get("timeoutMs", 300_000)))


def spec_of(row: SubTaskRow) -> SubTaskSpec:
    return SubTaskSpec(id=row.id, title=row.title, text=row.text, kind=row.kind,  # type: ignore[arg-type]
                       weight_bp=row.weight_bp, estimated_tokens=row.estimated_tokens,
                       priority=row.priority, depends_on=row.depends_on)  # type: ignore[arg-type]
