"""Example 4: the OpenClaw recipe, by hand: plan_agents -> spawn -> submit_result -> aggregate.

In OpenClaw a tool cannot spawn sub-agents: the agent does, with its `sessions_spawn` tool. So Butler
plans (sub-tasks, budget shares reserved on keys, task text, label, model, timeout), the agent spawns
each child, and reports every child's result and token usage back with submit_result. This script
plays the agent: "spawning" a child here means making up its output and usage.

One child fails on its first run; retry_failed_tasks gives it a fresh share out of the budget left and
hands it back to spawn again, and the sub-tasks waiting on it then become ready.

Built-in demo provider: no API keys, no network.

    .venv/bin/python examples/04_openclaw_plan_loop.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from butler_skill import Butler
from butler_skill.demo import demo_context
from butler_skill.handlers.agents import PlannedAgent

DESCRIPTION = """\
Competitive pricing memo:
- Research the list prices of our three main competitors
- Collect our own price history for the last year
- Compare our prices with the competitors' and estimate the gap
- Write a one-page memo with a recommendation
"""
FAIL_FIRST_RUN_OF = "st-2"  # this child crashes the first time it is spawned


def spawn_child(agent: PlannedAgent, inputs: dict[str, str], attempt: int) -> tuple[str, str, dict[str, int]]:
    """Stand-in for sessions_spawn: (status, output or error, usage the child's stats line reported)."""
    # A child uses part of its share; a crashed one still spent tokens before it died.
    usage = {"input_tokens": agent.tokens // 8 + 50 * len(inputs), "output_tokens": agent.tokens // 16}
    if agent.sub_task_id == FAIL_FIRST_RUN_OF and attempt == 1:
        usage = {"input_tokens": agent.tokens // 20, "output_tokens": 0}
        return "failed", "child exited: upstream page returned 503", usage
    used_inputs = f" using {', '.join(sorted(inputs))}" if inputs else ""
    return "success", f"[{agent.label}] done: {agent.title}{used_inputs}", usage


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="butler-ex4-") as tmp, \
            Butler(context=demo_context(Path(tmp))) as butler:
        run(butler)


def run(butler: Butler) -> None:
    plan = butler.plan_agents(name="pricing-memo", description=DESCRIPTION, budget=40_000,
                              options={"runTimeoutSeconds": 600})
    print(f"plan_agents: task {plan.task_id}, budget {plan.budget:,}, stages {plan.stages}")
    agents = {a.sub_task_id: a for a in plan.agents}
    for a in plan.agents:
        deps = f", after {', '.join(a.depends_on)}" if a.depends_on else ""
        print(f"  {a.sub_task_id} stage {a.stage} [{a.kind}] share {a.tokens:,} on {a.model} ({a.key_id}){deps}")

    outputs: dict[str, str] = {}
    attempts: dict[str, int] = {}
    submitted_tokens = 0
    # Stage 1 has no dependencies: spawn it at once. Later agents come from submit_result's `ready`.
    queue = [a.sub_task_id for a in plan.agents if not a.depends_on]
    retries_left = 2  # a child that always fails must not loop forever
    while True:
        while queue:
            agent = agents[queue.pop(0)]
            attempts[agent.sub_task_id] = attempts.get(agent.sub_task_id, 0) + 1
            # A real host appends the outputs of the agent's dependencies to its task text.
            inputs = {d: outputs[d] for d in agent.depends_on}
            status, text, usage = spawn_child(agent, inputs, attempts[agent.sub_task_id])
            res = butler.submit_result(session_id=agent.session_id, status=status, usage=usage,
                                       **({"output": text} if status == "success" else {"error": text}))
            submitted_tokens += usage["input_tokens"] + usage["output_tokens"]
            if status == "success":
                outputs[agent.sub_task_id] = text
            print(f"submit_result {agent.sub_task_id} (run {attempts[agent.sub_task_id]}): {res.status}, "
                  f"{res.tokens_used:,} tokens so far, ready {res.ready}, pending {res.pending}")
            queue.extend(res.ready)
        agg = butler.aggregate_task_results(task_id=plan.task_id)
        if agg.failed == 0 or retries_left == 0:
            break
        # Something failed and what depended on it is stuck: ask Butler for fresh shares and spawn again.
        retry = butler.retry_failed_tasks(task_id=plan.task_id)
        retries_left -= 1
        print(f"retry_failed_tasks: retrying {retry.retried}, {retry.remaining_budget:,} tokens left in the budget")
        for a in retry.agents:
            agents[a.sub_task_id] = a  # new session id and share for the new round
            print(f"  respawn {a.sub_task_id}: share {a.tokens:,} on {a.key_id}, new session {a.session_id}")
        queue = [a.sub_task_id for a in retry.agents]

    print(f"aggregate_task_results: {agg.successful}/{agg.total_sub_tasks} successful, {agg.failed} failed, "
          f"success rate {agg.success_rate:.0%}, total tokens {agg.total_tokens_used:,}")
    for d in agg.details:
        print(f"  {d.sub_task_id}: {d.status}, {d.tokens_used:,} tokens, {d.output}")
    print(f"tokens submitted by the children: {submitted_tokens:,}")
    usage = butler.monitor_usage().total
    print(f"ledger today: used {usage.used_today:,}, still reserved {usage.reserved:,}")


if __name__ == "__main__":
    main()
