"""`butler demo`: Butler's main job on the built-in demo provider, end to end, with no keys.

Part one, tokens: it writes the demo key set into a scratch folder, allocates tokens for a sample PRD,
settles usage as the work reports it, crosses the 75% threshold (alert, then rotation to the next key).
Part two, sub-agents: it splits a five-step task into sub-tasks with budget shares and runs them in
parallel on the demo provider, which answers one call with a rate limit (Butler rotates to another
account) and fails the review step (Butler retries it, then `retry_failed_tasks` finishes it). It ends
with the aggregate and the status tables a person would read. Everything goes through the same tool
dispatch as the CLI and the MCP server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, TextIO

from butler_skill.adapters.providers.demo import DemoFaults
from butler_skill.config import DEMO_KEYS, write_keys_file
from butler_skill.demo_data import FAILING_MARKER, SAMPLE_PRD, SAMPLE_TASK, SAMPLE_TASK_NAME
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.progress import printer
from butler_skill.host.tables import fmt_int, status_tables, table


def demo_context(state_dir: Path, env: dict[str, str] | None = None) -> Context:
    keys_path = state_dir / "api-keys.json"
    if not keys_path.exists():
        write_keys_file(keys_path, DEMO_KEYS)
    base = {k: v for k, v in (env or os.environ).items() if not k.startswith("BUTLER_")}
    return Context(env=base, keys_path=keys_path, state_path=state_dir / "butler-state.db")


def _ok(envelope: dict[str, Any]) -> dict[str, Any]:
    if not envelope["ok"]:
        err = envelope["error"]
        raise RuntimeError(f"demo step failed: {err['code']}: {err['message']}")
    result: dict[str, Any] = envelope["result"]
    return result


def run_demo(state_dir: Path | None = None, out: TextIO | None = None) -> int:
    import sys

    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="butler-demo-") as scratch:
        folder = state_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        ctx = demo_context(folder)
        try:
            return _run(ctx, out)
        finally:
            ctx.close()


def _run(ctx: Context, out: TextIO) -> int:
    def say(line: str = "") -> None:
        print(line, file=out)

    say("Butler demo: token management on the built-in demo provider (no API keys, no network)")
    say(f"keys file: {ctx.keys_path}  ledger: {ctx.state_path}")
    say()
    alloc = _ok(call_tool("allocate_tokens", {"prd_text": SAMPLE_PRD, "label": "market-brief"}, ctx))
    est = alloc["estimate"]
    say(f"1. allocate_tokens: {est['requirements']} requirements, {est['formula']}")
    say(f"   -> {fmt_int(alloc['allocated'])} tokens reserved on {alloc['key_id']} ({alloc['provider']}/"
        f"{alloc['model']}), rotation at {fmt_int(alloc['rotation_threshold'])}, "
        f"cost estimate ${alloc['cost_estimate']:.4f}")
    session = alloc["session_id"]
    step = max(1, alloc["allocated"] // 5)
    say("2. record_usage as the work reports each response:")
    for n in range(1, 6):
        report = _ok(call_tool("record_usage", {
            "session_id": session, "request_id": f"demo-req-{n}",
            "input_tokens": step * 2 // 3, "output_tokens": step - step * 2 // 3,
        }, ctx))
        s = report["session"]
        line = f"   response {n}: session used {fmt_int(s['used'])} of {fmt_int(s['allocated'])}, on {s['key_id']}"
        if report["alert"]:
            line += f"\n   ! alert: {report['alert']['message']}"
        if report["rotation"] and report["rotation"]["rotated"]:
            r = report["rotation"]
            line += (f"\n   -> rotated {r['from_key_id']} -> {r['to_key_id']}: "
                     f"{fmt_int(r['moved_tokens'])} tokens of the allocation moved with it")
        say(line)
    again = _ok(call_tool("record_usage", {
        "session_id": session, "request_id": "demo-req-5",
        "input_tokens": step * 2 // 3, "output_tokens": step - step * 2 // 3,
    }, ctx))
    say(f"3. the same request id again is settled once: duplicate={again['duplicate']}")
    _ok(call_tool("record_usage", {"session_id": session, "request_id": "demo-req-close",
                                   "input_tokens": 0, "output_tokens": 0, "close": True}, ctx))
    say("4. the session closed and released what it still held")
    say()
    from butler_skill.demo_gateway import run_gateway_demo

    # Before the sub-agents: their rate limit rests an account, and the gateway's session must have somewhere to
    # rotate to.
    run_gateway_demo(ctx, say)
    say()
    _subagents(ctx, say, out)
    say()
    say(status_tables(_ok(call_tool("get_status", {"history_limit": 5}, ctx))))
    return 0


def _subagents(ctx: Context, say: Any, out: TextIO) -> None:
    say(f"Sub-agents: spawn_agent splits \"{SAMPLE_TASK_NAME}\" and runs the parts in parallel (maxConcurrent 3)")
    ctx.progress = printer(out)
    ctx.demo_faults = DemoFaults(rate_limit_calls=frozenset({2}), retry_after_s=1, server_error_marker=FAILING_MARKER)
    options = {"maxConcurrent": 3, "maxRetries": 2, "backoffBaseMs": 50}
    first = _ok(call_tool("spawn_agent", {"name": SAMPLE_TASK_NAME, "description": SAMPLE_TASK, "budget": 40_000,
                                         "options": options}, ctx))
    task_id = first["task_id"]
    say(table(["sub-task", "status", "key", "tokens", "attempts", "note"], [
        [r["subTaskId"], r["status"], r["key_id"], fmt_int(r["tokensUsed"]), r["attempts"],
         (r["error"] or (r["output"] or "").splitlines()[0])[:60]] for r in first["results"]
    ], right=(3, 4)))
    agg = first["aggregate"]
    say(f"first round: {agg['successful']} of {agg['totalSubTasks']} succeeded, "
        f"{fmt_int(agg['totalTokensUsed'])} tokens")
    say("retry_failed_tasks: the failed part gets a fresh share (at most its original one) from what is left")
    ctx.demo_faults = None  # the provider has recovered
    retry = _ok(call_tool("retry_failed_tasks", {"task_id": task_id, "options": options}, ctx))
    ctx.progress = None
    final = _ok(call_tool("aggregate_task_results", {"task_id": task_id}, ctx))
    say(f"aggregate_task_results: {final['successful']}/{final['totalSubTasks']} succeeded "
        f"(success rate {final['successRate']:.0%}), {fmt_int(final['totalTokensUsed'])} tokens of the "
        f"{fmt_int(40_000)} budget; retried {', '.join(retry['retried']) or 'nothing'}")
