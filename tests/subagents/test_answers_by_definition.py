"""plan_agents' and spawn_agent's answers, now built as plain values validated once, equal the answers built the
previous way (read back from the ledger, one model per sub-task, `aggregate` over SubTaskResult models)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.core.aggregation import SubTaskResult, aggregate
from butler_skill.core.decomposition import stages
from butler_skill.core.prompts import spawn_label, subtask_prompt
from butler_skill.handlers.agents import (
    PlanAgentsInput,
    PlanAgentsOutput,
    PlannedAgent,
    SpawnAgentOutput,
    TaskResult,
    plan_agents,
    spawn_output,
)
from butler_skill.host.context import Context
from butler_skill.store.tasks import TaskStore
from butler_skill.subagents.planning import spec_of
from tests.conftest import SMALL_KEYS, Clock, Ids, write_keys

STATUSES = ["pending", "success", "failed", "timeout", "cancelled"]
ITEM = st.lists(st.sampled_from(["Research", "the", "prices", "analyze", "write", "a", "report", "urgent", "review",
                                 "deploy", "build", "then", "é", "x" * 30]), min_size=1, max_size=6).map(" ".join)


def plan_agents_by_definition(ctx: Context, task_id: str, budget: int, timeout_s: int) -> PlanAgentsOutput:
    store = TaskStore(ctx.db)
    task, rows = store.task(task_id), store.subtasks(task_id)
    keys = {k.id: k for k in ctx.config.resolved()}
    layers = stages([spec_of(r) for r in rows])
    layer = {sid: n for n, ids in enumerate(layers, start=1) for sid in ids}
    agents = [PlannedAgent(
        sub_task_id=r.id, title=r.title, kind=r.kind, priority=r.priority, stage=layer[r.id],
        depends_on=list(r.depends_on),
        task=subtask_prompt(task_name=task.name, task_description=task.description, subtask_id=r.id,
                            subtask_text=r.text, depends_on=r.depends_on, outputs={}, share=r.share),
        label=spawn_label(task.name, r.id), model=f"{keys[r.key_id].provider}/{keys[r.key_id].model}",
        runTimeoutSeconds=timeout_s, tokens=r.share, session_id=r.session_id, key_id=r.key_id) for r in rows]
    from butler_skill.handlers.agents import NEXT_STEPS

    return PlanAgentsOutput(task_id=task_id, budget=budget, stages=layers, agents=agents, next_steps=NEXT_STEPS)


def spawn_output_by_definition(ctx: Context, task_id: str) -> SpawnAgentOutput:
    rows = TaskStore(ctx.db).subtasks(task_id)
    results = [TaskResult(taskId=r.task_id, subTaskId=r.id, status=r.status, tokensUsed=r.tokens_used,  # type: ignore[arg-type]
                          error=r.error, output=r.output, key_id=r.key_id, attempts=r.attempts) for r in rows]
    agg = aggregate(task_id, [SubTaskResult(sub_task_id=r.id, status=r.status, tokens_used=r.tokens_used,  # type: ignore[arg-type]
                                            error=r.error, output=r.output, key_id=r.key_id, attempts=r.attempts)
                              for r in rows])
    return SpawnAgentOutput(task_id=task_id, results=results, aggregate=agg)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(ITEM, min_size=1, max_size=30), budget=st.integers(min_value=30, max_value=30_000),
       timeout_s=st.integers(min_value=10, max_value=600), data=st.data())
def test_answers_equal_their_previous_definition(tmp_path_factory: Any, items: list[str], budget: int,
                                                 timeout_s: int, data: st.DataObject) -> None:
    folder: Path = tmp_path_factory.mktemp("answers")
    write_keys(folder / "keys.json", SMALL_KEYS)
    ctx = Context(env={"HOME": str(folder), "TEST_GROQ_KEY_1": "gsk_" + "a" * 40, "TEST_GROQ_KEY_2": "gsk_" + "b" * 40,
                       "TEST_OPENAI_KEY": "sk-proj-" + "c" * 40}, keys_path=folder / "keys.json",
                  state_path=folder / "s.db", clock=Clock(datetime(2026, 12, 4, 10, tzinfo=UTC)), ids=Ids())
    try:
        description = "\n".join(f"- {i}" for i in items)
        try:
            out = plan_agents(ctx, PlanAgentsInput(name="Answers!", description=description, budget=budget,
                                                   options={"runTimeoutSeconds": timeout_s}))
        except Exception as refused:  # a budget too small for the plan: both ways refuse it
            assert type(refused).__name__ == "NoCapacity"
            return
        assert out == plan_agents_by_definition(ctx, out.task_id, budget, timeout_s)
        with ctx.db.write() as conn:  # some sub-tasks reported, with usage
            for agent in out.agents:
                status = data.draw(st.sampled_from(STATUSES))
                conn.execute("UPDATE subtasks SET status = ?, attempts = ?, output = ?, error = ? WHERE task_id = ?"
                             " AND id = ?", (status, data.draw(st.integers(0, 3)), f"out {agent.sub_task_id}",
                                             None if status in ("pending", "success") else "e", out.task_id,
                                             agent.sub_task_id))
                conn.execute("UPDATE sessions SET used = ? WHERE id = ?", (data.draw(st.integers(0, 900)),
                                                                           agent.session_id))
        assert spawn_output(ctx, out.task_id) == spawn_output_by_definition(ctx, out.task_id)
    finally:
        ctx.close()
