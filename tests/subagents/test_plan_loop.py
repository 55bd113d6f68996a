"""plan_agents / submit_result / retry_failed_tasks through the host: budgets, idempotency, attempts."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import Clock

DESCRIPTION = "1. Gather the figures\n2. Analyze them\n3. Write the memo\n4. Review the memo"


def ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["ok"], envelope
    return dict(envelope["result"])


def committed(ctx: Context, task_id: str) -> int:
    with ctx.db.read() as conn:
        row = conn.execute("SELECT SUM(used) + SUM(CASE WHEN state='open' THEN leg_held ELSE 0 END)"
                           " FROM sessions WHERE task_id = ?", (task_id,)).fetchone()
    return int(row[0])


def test_plan_reserves_exactly_the_budget_and_report_settles_it(ctx: Context) -> None:
    plan = ok(call_tool("plan_agents", {"name": "memo", "description": DESCRIPTION, "budget": 12_000}, ctx))
    assert sum(a["tokens"] for a in plan["agents"]) == 12_000 == committed(ctx, plan["task_id"])
    assert plan["stages"][0] == ["st-1"] and plan["agents"][0]["stage"] == 1
    first = plan["agents"][0]
    assert first["model"].count("/") >= 1 and first["label"].endswith("st-1") and first["runTimeoutSeconds"] == 300
    report = {"session_id": first["session_id"], "status": "success", "output": "figures",
              "usage": {"input_tokens": 900, "output_tokens": 100}}
    out = ok(call_tool("submit_result", report, ctx))
    assert out["tokens_used"] == 1_000 and not out["duplicate"] and out["ready"] == ["st-2"]
    again = ok(call_tool("submit_result", report, ctx))
    assert again["duplicate"] and again["tokens_used"] == 1_000
    changed = call_tool("submit_result", {**report, "usage": {"input_tokens": 5_000}}, ctx)
    assert changed["error"]["code"] == "conflict"
    flipped = call_tool("submit_result", {**report, "status": "failed"}, ctx)
    assert flipped["error"]["code"] == "conflict"  # a well-formed report that contradicts the first one
    agg = ok(call_tool("aggregate_task_results", {"task_id": plan["task_id"]}, ctx))
    assert agg["totalTokensUsed"] == 1_000 and agg["details"][0]["attempts"] == 1 and agg["pending"] == 3


def test_usage_beyond_the_share_leaves_an_overrun_alert(ctx: Context) -> None:
    plan = ok(call_tool("plan_agents", {"name": "memo", "description": "1. Gather the figures", "budget": 2_000},
                        ctx))
    sid = plan["agents"][0]["session_id"]
    ok(call_tool("submit_result", {"session_id": sid, "status": "success", "usage": {"output_tokens": 5_000}}, ctx))
    alerts = ok(call_tool("get_status", {}, ctx))["alerts"]
    assert [a["kind"] for a in alerts] == ["overrun"] and "3000 more" in alerts[0]["message"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.integers(4_000, 19_000), failures=st.lists(st.booleans(), min_size=4, max_size=4),
       spent=st.lists(st.integers(0, 900), min_size=4, max_size=4))
def test_retries_never_take_a_task_over_its_budget(ctx: Context, clock: Clock, budget: int, failures: list[bool],
                                                    spent: list[int]) -> None:
    plan = ok(call_tool("plan_agents", {"name": "memo", "description": DESCRIPTION, "budget": budget}, ctx))
    task_id = plan["task_id"]
    for agent, failed, tokens in zip(plan["agents"], failures, spent, strict=True):
        if agent["stage"] == 1 or not failed:
            ok(call_tool("submit_result", {"session_id": agent["session_id"], "status": "failed" if failed else
                                           "success", "usage": {"output_tokens": min(tokens, agent["tokens"])}}, ctx))
    assert committed(ctx, task_id) <= budget
    out = call_tool("retry_failed_tasks", {"task_id": task_id}, ctx)
    if out["ok"]:
        assert committed(ctx, task_id) <= budget
        assert out["result"]["remaining_budget"] >= 0
    else:
        assert out["error"]["code"] in {"invalid_input", "no_capacity"}
    # every example draws on the same small keys: the next one starts on a fresh UTC day
    clock.advance(days=1)


def test_a_retry_gets_its_original_share_not_the_whole_budget_left(ctx: Context) -> None:
    # The OpenClaw run: the first sub-task failed cheaply and the others finished under their shares; the retry
    # used to receive everything left. It is now capped at the share it was planned with.
    plan = ok(call_tool("plan_agents", {"name": "memo", "description": DESCRIPTION, "budget": 20_000}, ctx))
    shares = {a["sub_task_id"]: a["tokens"] for a in plan["agents"]}
    by_id = {a["sub_task_id"]: a for a in plan["agents"]}
    ok(call_tool("submit_result", {"session_id": by_id["st-1"]["session_id"], "status": "failed",
                                   "usage": {"output_tokens": 100}}, ctx))
    ok(call_tool("submit_result", {"session_id": by_id["st-2"]["session_id"], "status": "success",
                                   "usage": {"output_tokens": 50}}, ctx))
    retry = ok(call_tool("retry_failed_tasks", {"task_id": plan["task_id"]}, ctx))
    assert retry["retried"] == ["st-1"] and retry["remaining_budget"] > shares["st-1"]
    assert [a["tokens"] for a in retry["agents"]] == [shares["st-1"]]
    assert committed(ctx, plan["task_id"]) <= 20_000


def test_a_second_retry_is_capped_by_the_planned_share_not_by_the_first_retrys(ctx: Context) -> None:
    # The first retry of st-1 gets little (st-1 spent most of its share, the others still hold theirs); then st-2
    # finishes under its share and frees tokens. The second retry may take st-1's planned share again: the cap is
    # what was planned, which the first retry must not have overwritten.
    plan = ok(call_tool("plan_agents", {"name": "memo", "description": DESCRIPTION, "budget": 20_000}, ctx))
    shares = {a["sub_task_id"]: a["tokens"] for a in plan["agents"]}
    by_id = {a["sub_task_id"]: a for a in plan["agents"]}
    spent = shares["st-1"] * 9 // 10
    ok(call_tool("submit_result", {"session_id": by_id["st-1"]["session_id"], "status": "failed",
                                   "usage": {"output_tokens": spent}}, ctx))
    first = ok(call_tool("retry_failed_tasks", {"task_id": plan["task_id"]}, ctx))
    assert first["retried"] == ["st-1"]
    (first_share,) = [a["tokens"] for a in first["agents"]]
    assert 0 < first_share < shares["st-1"]
    ok(call_tool("submit_result", {"session_id": by_id["st-2"]["session_id"], "status": "success",
                                   "usage": {"output_tokens": 50}}, ctx))
    ok(call_tool("submit_result", {"session_id": first["agents"][0]["session_id"], "status": "failed",
                                   "usage": {"output_tokens": 1}}, ctx))
    second = ok(call_tool("retry_failed_tasks", {"task_id": plan["task_id"]}, ctx))
    assert second["remaining_budget"] > shares["st-1"]
    assert [a["tokens"] for a in second["agents"]] == [shares["st-1"]]
    assert committed(ctx, plan["task_id"]) <= 20_000
