"""Example 2: Butler splits a task into sub-agents and runs them itself (spawn_agent).

The description is a list: three research steps that can run side by side, then an analysis, a brief
and a review, each waiting for what it needs. Butler gives each sub-agent a share of the budget
(reserved up front), runs at most `maxConcurrent` at once against the provider, settles what each one
used, and aggregates the results.

To show what happens when a provider pushes back, the demo provider is told to answer its 2nd request
with a rate limit (HTTP 429): that sub-agent is retried on a key of the other account.

Built-in demo provider: no API keys, no network.

    .venv/bin/python examples/02_spawn_subagents.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from butler_skill import Butler
from butler_skill.adapters.providers.demo import DemoFaults
from butler_skill.demo import demo_context

DESCRIPTION = """\
Weekly market brief for the finance team:
- Research OpenAI and Anthropic list prices
- Research Groq and NVIDIA NIM list prices
- Research OpenRouter list prices
- Analyze week-over-week price changes and flag moves above 10%
- Write a two-page brief with the price table and the flagged moves
- Review the brief for errors
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="butler-ex2-") as tmp:
        ctx = demo_context(Path(tmp))
        ctx.demo_faults = DemoFaults(rate_limit_calls=frozenset({2}), retry_after_s=1)
        with Butler(context=ctx) as butler:
            run(butler)


def run(butler: Butler) -> None:
    budget = 60_000
    out = butler.spawn_agent(
        name="market-brief", description=DESCRIPTION, budget=budget,
        options={"maxConcurrent": 3, "retryOnFailure": True, "maxRetries": 2, "timeoutMs": 60_000},
    )
    print(f"spawn_agent: task {out.task_id}, budget {budget:,} tokens, {len(out.results)} sub-agents")
    for r in out.results:
        text = r.output or r.error or ""
        last_line = text.splitlines()[-1] if text else ""
        print(f"  TaskResult {r.subTaskId}: {r.status}, {r.tokensUsed:,} tokens on {r.key_id}, "
              f"{r.attempts} attempt(s) | {last_line[:70]}")

    # The aggregate is read back from the ledger, so any later call gives the same figures.
    agg = butler.aggregate_task_results(task_id=out.task_id)
    print(f"aggregate_task_results: {agg.successful}/{agg.total_sub_tasks} successful, {agg.failed} failed, "
          f"success rate {agg.success_rate:.0%}, total tokens {agg.total_tokens_used:,}")
    print(f"sum of TaskResult tokens: {sum(r.tokensUsed for r in out.results):,}")

    for e in butler.get_status().rotation_history:
        print(f"rotation during the run: {e.data['from_key_id']} -> {e.data['to_key_id']} ({e.data['reason']})")
    usage = butler.monitor_usage().total
    print(f"ledger today: used {usage.used_today:,}, still reserved {usage.reserved:,}, "
          f"cost ${usage.cost_today:.6f}")


if __name__ == "__main__":
    main()
