"""Sub-agent tools: plan (the host spawns), spawn (Butler runs), submit, aggregate, retry."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from butler_skill import sessions
from butler_skill.core.aggregation import ResultValues, TaskAggregate, aggregate_values
from butler_skill.core.decomposition import layers_of, ready_after
from butler_skill.core.decomposition import stages as stage_layers
from butler_skill.core.prompts import spawn_label, subtask_prompt
from butler_skill.core.usage import Usage
from butler_skill.errors import Conflict, UnknownSession
from butler_skill.handlers.bounds import MAX_CALL_REQUESTS, Budget, Id, Money, ProviderName, TokenCount
from butler_skill.store.tasks import SubTaskRow, TaskRow, TaskStore
from butler_skill.subagents.clients import ClientFactory
from butler_skill.subagents.planning import plan, replan_failed, spec_of
from butler_skill.subagents.runner import SpawnOptions, plan_and_run, run_in_loop, run_task

if TYPE_CHECKING:
    from butler_skill.host.context import Context

FINAL = ("success", "failed", "timeout", "cancelled")
RETRYABLE = ("failed", "timeout", "cancelled")


class TaskResult(BaseModel):
    """The original's TaskResult, plus the output, the key that served it and the attempts made."""

    taskId: str
    subTaskId: str
    status: Literal["pending", "running", "success", "failed", "timeout", "cancelled"]
    tokensUsed: int
    error: str | None = None
    output: str | None = None
    key_id: str
    attempts: int


def _values(rows: list[SubTaskRow]) -> list[ResultValues]:
    return [ResultValues(r.id, r.status, r.tokens_used, r.error, r.output, r.key_id, r.attempts) for r in rows]


def _results(task_id: str, values: list[ResultValues]) -> list[dict[str, Any]]:
    """Each sub-task's `TaskResult` as plain values: the output model is validated once, with all of them."""
    return [{"taskId": task_id, "subTaskId": v.sub_task_id, "status": v.status, "tokensUsed": v.tokens_used,
             "error": v.error, "output": v.output, "key_id": v.key_id, "attempts": v.attempts} for v in values]


def task_aggregate(task_id: str, rows: list[SubTaskRow]) -> TaskAggregate:
    """The aggregate of rows read with `TaskStore.subtasks`, as `aggregate_task_results` computes it (the dashboard's
    task view uses it, so the page and the tool agree)."""
    return TaskAggregate.model_validate(aggregate_values(task_id, _values(rows)))


def _answer(task_id: str, values: list[ResultValues]) -> dict[str, Any]:
    """The results and the aggregate of a task, as plain values."""
    return {"results": _results(task_id, values), "aggregate": aggregate_values(task_id, values)}


# ---- plan_agents -------------------------------------------------------------------------------
class PlanOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runTimeoutSeconds: int = Field(default=300, ge=10, le=86_400)
    preferredProvider: ProviderName | None = None


class PlanAgentsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="The task's name.")
    description: str = Field(min_length=1, max_length=50_000, description="What to do: a list or prose.")
    budget: Budget = Field(description="Tokens for the whole task, split over sub-tasks.")
    options: PlanOptions = Field(default_factory=PlanOptions)


class PlannedAgent(BaseModel):
    sub_task_id: str
    title: str
    kind: str
    priority: str
    stage: int = Field(description="Spawn stage by stage: every dependency is in an earlier stage.")
    depends_on: list[str]
    task: str = Field(description="The instruction to give the sub-agent (sessions_spawn `task`).")
    label: str = Field(description="sessions_spawn `label`.")
    model: str = Field(description="sessions_spawn `model`, as provider/model.")
    runTimeoutSeconds: int
    tokens: int = Field(description="This sub-agent's reserved share of the budget.")
    session_id: str = Field(description="Pass it to submit_result with the child's result and usage.")
    key_id: str


class PlanAgentsOutput(BaseModel):
    task_id: str
    budget: int
    stages: list[list[str]]
    agents: list[PlannedAgent]
    next_steps: str


def _planned(ctx: Context, task: TaskRow, rows: list[SubTaskRow], timeout_s: int,
             layers: list[list[str]] | None = None) -> list[dict[str, Any]]:
    """Each sub-task as a `PlannedAgent`, in plain values (validated once, in the tool's output)."""
    keys = {k.id: k for k in ctx.config.resolved()}
    if layers is None:
        layers = _layers(rows)
    layer = {sid: n for n, ids in enumerate(layers, start=1) for sid in ids}
    label = spawn_label(task.name, "")
    return [
        {"sub_task_id": r.id, "title": r.title, "kind": r.kind, "priority": r.priority, "stage": layer[r.id],
         "depends_on": list(r.depends_on),
         "task": subtask_prompt(task_name=task.name, task_description=task.description, subtask_id=r.id,
                                subtask_text=r.text, depends_on=r.depends_on, outputs={}, share=r.share),
         "label": label + r.id, "model": f"{keys[r.key_id].provider}/{keys[r.key_id].model}",
         "runTimeoutSeconds": timeout_s, "tokens": r.share, "session_id": r.session_id, "key_id": r.key_id}
        for r in rows
    ]


def _layers(rows: list[SubTaskRow]) -> list[list[str]]:
    """The spawn stages: in one pass (`layers_of`) when every dependency names an earlier sub-task, as a plan's
    always do; otherwise by `stages`, which also checks them."""
    seen: set[str] = set()
    for r in rows:
        if not seen.issuperset(r.depends_on):
            return stage_layers([spec_of(r) for r in rows])
        seen.add(r.id)
    return layers_of([r.depends_on for r in rows], [r.id for r in rows])


NEXT_STEPS = (
    "Spawn stage 1's agents now with sessions_spawn (task, label, model, runTimeoutSeconds as given). When a "
    "child reports back, call submit_result with its session_id, status, output and token usage. Spawn a "
    "stage once every agent it depends on succeeded, adding their outputs to its task text. When all are "
    "reported, call aggregate_task_results; retry_failed_tasks re-plans what failed within the budget left."
)


def plan_agents(ctx: Context, inp: PlanAgentsInput) -> PlanAgentsOutput:
    timeout_s = inp.options.runTimeoutSeconds
    task, rows = plan(ctx, name=inp.name, description=inp.description, budget=inp.budget, mode="plan",
                      options={"timeoutMs": timeout_s * 1000, **inp.options.model_dump(exclude_none=True)},
                      preferred_provider=inp.options.preferredProvider)
    layers = _layers(rows)
    return PlanAgentsOutput.model_validate({"task_id": task.id, "budget": inp.budget, "stages": layers,
                                            "agents": _planned(ctx, task, rows, timeout_s, layers),
                                            "next_steps": NEXT_STEPS})


# ---- spawn_agent -------------------------------------------------------------------------------
class SpawnAgentInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=50_000)
    budget: Budget
    options: SpawnOptions = Field(default_factory=SpawnOptions)


class SpawnAgentOutput(BaseModel):
    task_id: str
    results: list[TaskResult]
    aggregate: TaskAggregate


def _run(ctx: Context, task_id: str, options: SpawnOptions) -> None:
    async def go() -> None:
        async with ClientFactory(ctx.config, demo_faults=ctx.demo_faults, run_id=ctx.new_id("run")) as factory:
            await run_task(ctx, task_id, options, factory, progress=ctx.progress)

    run_in_loop(go())


def spawn_agent(ctx: Context, inp: SpawnAgentInput) -> SpawnAgentOutput:
    async def go() -> tuple[str, list[ResultValues] | None]:
        async with ClientFactory(ctx.config, demo_faults=ctx.demo_faults, run_id=ctx.new_id("run")) as factory:
            return await plan_and_run(ctx, name=inp.name, description=inp.description, budget=inp.budget,
                                      options=inp.options, factory=factory, progress=ctx.progress)

    return spawn_output(ctx, *run_in_loop(go()))


def spawn_output(ctx: Context, task_id: str, results: list[ResultValues] | None = None) -> SpawnAgentOutput:
    """The answer after a run: what it needs of each sub-task (`results` when the run knew them exactly, else one
    read, `TaskStore.results`), aggregated in plain values, and one validation of the whole."""
    if results is None:
        results = TaskStore(ctx.db).results(task_id)
    return SpawnAgentOutput.model_validate({"task_id": task_id, **_answer(task_id, results)})


# ---- submit_result -----------------------------------------------------------------------------
class ReportedUsage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    cache_write_1h_tokens: TokenCount = Field(default=0, description="The 1-hour part of cache_write_tokens.")
    web_search_requests: int = Field(default=0, ge=0, le=MAX_CALL_REQUESTS,
                                     description="Server-side searches billed per request.")
    tool_fees: Money = Field(default=Decimal(0), description="Other server-side tool fees, USD.")
    cost: Money | None = Field(default=None, description="USD the provider reported, kept exactly.")
    upstream_cost: Money | None = Field(default=None, description="OpenRouter upstream_inference_cost.")
    byok: bool = Field(default=False, description="OpenRouter is_byok: upstream_cost counts too.")


class SubmitResultInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: Id
    status: Literal["success", "failed", "timeout", "cancelled"]
    output: str | None = Field(default=None, max_length=200_000)
    error: str | None = Field(default=None, max_length=2_000)
    usage: ReportedUsage = Field(default_factory=ReportedUsage)
    request_id: Id | None = Field(default=None,
                                   description="Defaults to one per session, so a repeated report counts once.")


class SubmitResultOutput(BaseModel):
    task_id: str
    sub_task_id: str
    status: str
    tokens_used: int
    duplicate: bool
    ready: list[str] = Field(description="Sub-tasks whose dependencies have now all succeeded: spawn them.")
    pending: int


def submit_result(ctx: Context, inp: SubmitResultInput) -> SubmitResultOutput:
    store = TaskStore(ctx.db)
    row = store.subtask_by_session(inp.session_id)
    if row is None:
        raise UnknownSession(f"no sub-task has session {inp.session_id!r}", session_id=inp.session_id)
    u = inp.usage
    usage = Usage.of(
        input_tokens=u.input_tokens, output_tokens=u.output_tokens, cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens, cache_write_1h_tokens=u.cache_write_1h_tokens,
        web_search_requests=u.web_search_requests, tool_fees_usd=u.tool_fees, cost_usd=u.cost,
        upstream_cost_usd=u.upstream_cost, byok=u.byok,
    )
    total = usage.counted_tokens
    if row.status in FINAL:
        # One report per sub-task run: the same report again changes nothing; a different one is refused.
        if row.status != inp.status:
            raise Conflict(f"sub-task {row.id} was already reported as {row.status}", path="/status",
                           session_id=inp.session_id)
        if total != ctx.ledger.session(inp.session_id).used:
            raise Conflict(f"sub-task {row.id} was already reported with other usage", session_id=inp.session_id)
        duplicate = True
    else:
        now = ctx.now()
        sessions.settle(ctx, inp.session_id, inp.request_id or f"result:{inp.session_id}", usage, close=True)
        key_id = ctx.ledger.session(inp.session_id).key_id
        store.record_attempt(task_id=row.task_id, st_id=row.id, key_id=key_id, outcome=inp.status,
                             request_id=inp.request_id, tokens=total, error=inp.error, started=now, ended=now)
        store.set_status(row.task_id, row.id, inp.status, now, output=inp.output, error=inp.error)
        duplicate = False
    rows = store.subtasks(row.task_id)
    ready = ready_after(row.id, {r.id: r.depends_on for r in rows}, {r.id: r.status for r in rows})
    me = next(r for r in rows if r.id == row.id)
    return SubmitResultOutput(task_id=row.task_id, sub_task_id=row.id, status=me.status, tokens_used=me.tokens_used,
                              duplicate=duplicate, ready=ready, pending=sum(1 for r in rows if r.status == "pending"))


# ---- aggregate_task_results --------------------------------------------------------------------
class AggregateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: Id


def aggregate_task_results(ctx: Context, inp: AggregateInput) -> TaskAggregate:
    return TaskAggregate.model_validate(aggregate_values(inp.task_id, TaskStore(ctx.db).results(inp.task_id)))


# ---- retry_failed_tasks ------------------------------------------------------------------------
class RetryInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: Id
    options: SpawnOptions | None = Field(default=None, description="For spawned tasks: how to run the retries.")


class RetryOutput(BaseModel):
    task_id: str
    retried: list[str]
    remaining_budget: int = Field(description="Budget neither used nor held when the retry was planned.")
    results: list[TaskResult] = Field(default_factory=list, description="Spawned tasks: every sub-task's result.")
    agents: list[PlannedAgent] = Field(default_factory=list, description="Planned tasks: what to spawn again.")
    aggregate: TaskAggregate


def retry_failed_tasks(ctx: Context, inp: RetryInput) -> RetryOutput:
    store = TaskStore(ctx.db)
    task = store.task(inp.task_id)
    rows = store.subtasks(task.id)
    failed = [r for r in rows if r.status in RETRYABLE]
    # What is left: neither used nor still held by a sub-task that has not reported yet.
    remaining = task.budget - store.task_committed(task.id)
    if not failed:
        return RetryOutput.model_validate({"task_id": task.id, "retried": [], "remaining_budget": remaining,
                                           **_answer(task.id, _values(rows))})
    preferred = task.options.get("preferredProvider")
    replan_failed(ctx, task.id, failed, remaining, preferred_provider=preferred)
    retried = [r.id for r in failed]
    if task.mode == "spawn":
        options = inp.options or SpawnOptions.model_validate(task.options)
        _run(ctx, task.id, options)
        return RetryOutput.model_validate({"task_id": task.id, "retried": retried, "remaining_budget": remaining,
                                           **_answer(task.id, store.results(task.id))})
    rows = store.subtasks(task.id)
    timeout_s = int(task.options.get("runTimeoutSeconds", 300))
    again = set(retried)
    agents = [a for a in _planned(ctx, task, rows, timeout_s) if a["sub_task_id"] in again]
    return RetryOutput.model_validate({"task_id": task.id, "retried": retried, "remaining_budget": remaining,
                                       "agents": agents, "aggregate": aggregate_values(task.id, _values(rows))})
