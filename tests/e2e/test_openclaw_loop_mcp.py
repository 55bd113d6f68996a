"""The OpenClaw recipe, followed through the MCP server as OpenClaw would: over stdio, with the mcp SDK client.

plan_agents -> "spawn" each agent stage by stage (following submit_result's `ready`) -> submit_result with
the child's status, output and usage -> one child fails -> retry_failed_tasks -> spawn it again ->
aggregate_task_results. The aggregate must equal what was submitted; invalid input to each of these tools
must come back as `invalid_input` and leave the ledger as it was; no secret may appear in any response,
even when a child's output or a bad argument carries one.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.conftest import SECRETS

pytestmark = pytest.mark.slow

# Two gathering steps run side by side; the comparison waits for both, the memo for the comparison.
DESCRIPTION = """\
Competitive pricing memo:
- Research the list prices of our three main competitors
- Collect our own price history for the last year
- Compare our prices with the competitors' and estimate the gap
- Write a one-page memo with a recommendation
"""
BUDGET = 16_000
GROQ_SECRET = SECRETS["TEST_GROQ_KEY_1"]


class Host:
    """The agent's side of the MCP connection: every response text is kept for the secrets check."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.traffic: list[str] = []

    async def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.session.call_tool(tool, args)
        assert result.content and result.content[0].type == "text"
        text = result.content[0].text
        self.traffic.append(text)
        envelope = dict(json.loads(text))
        assert result.is_error is (not envelope["ok"])
        return envelope

    async def ok(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        envelope = await self.call(tool, args)
        assert envelope["ok"], (tool, args, envelope)
        return dict(envelope["result"])

    async def invalid(self, tool: str, args: dict[str, Any]) -> None:
        envelope = await self.call(tool, args)
        assert not envelope["ok"] and envelope["error"]["code"] == "invalid_input", (tool, args, envelope)

    async def snapshot(self, task_id: str | None = None) -> dict[str, Any]:
        """Everything a caller can see of the ledger: if an invalid call changed state, this changes."""
        shot = {
            "status": await self.ok("get_status", {"history_limit": 100}),
            "usage": await self.ok("monitor_usage", {}),
            "keys": await self.ok("get_available_keys", {"min_tokens": 0}),
        }
        if task_id is not None:
            shot["aggregate"] = await self.ok("aggregate_task_results", {"task_id": task_id})
        return shot

    async def all_invalid(self, tool: str, calls: list[dict[str, Any]], task_id: str | None = None) -> None:
        before = await self.snapshot(task_id)
        for args in calls:
            await self.invalid(tool, args)
        assert await self.snapshot(task_id) == before, f"an invalid {tool} call changed the ledger"


def run_host(env: dict[str, str], body: Callable[[Host], Awaitable[Any]]) -> Any:
    exe = shutil.which("butler-mcp", path=str(Path(sys.executable).parent))
    assert exe, "butler-mcp console script is not installed next to this interpreter"

    async def go() -> Any:
        params = StdioServerParameters(command=exe, args=[], env=env)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(Host(session))

    return anyio.run(go)


def child_usage(sub_task_id: str, round_no: int) -> dict[str, int]:
    """What a child's stats line reports: distinct figures per sub-task and round."""
    n = int(sub_task_id.removeprefix("st-"))
    return {"input_tokens": 300 + 37 * n + 1000 * (round_no - 1), "output_tokens": 120 + 11 * n,
            "cache_read_tokens": 5 * n}


def total(usage: dict[str, int]) -> int:
    return usage["input_tokens"] + usage["output_tokens"] + usage["cache_read_tokens"]


def test_plan_spawn_submit_retry_aggregate_over_mcp(env: dict[str, str]) -> None:
    async def body(host: Host) -> dict[str, Any]:
        # -- plan_agents: bad input first, while the ledger is empty -----------------------------------
        good = {"name": "pricing-memo", "description": DESCRIPTION, "budget": BUDGET}
        await host.all_invalid("plan_agents", [
            {**good, "budget": 0},
            {**good, "budget": "16000"},
            {**good, "name": ""},
            {"description": DESCRIPTION, "budget": BUDGET},
            {**good, "surprise": True},
            {**good, "options": {"runTimeoutSeconds": 1}},
            {**good, "options": {"maxConcurrent": 3}},  # a spawn option: plan_agents refuses it
        ])
        # Well-formed, but four sub-tasks cannot each get a share of 2 tokens: no_capacity, nothing changes.
        before = await host.snapshot()
        small = await host.call("plan_agents", {**good, "budget": 2})
        assert small["error"]["code"] == "no_capacity" and await host.snapshot() == before
        plan = await host.ok("plan_agents", {**good, "options": {"runTimeoutSeconds": 600}})
        task_id = plan["task_id"]
        agents = {a["sub_task_id"]: a for a in plan["agents"]}
        assert sorted(agents) == ["st-1", "st-2", "st-3", "st-4"]
        assert plan["stages"] == [["st-1", "st-2"], ["st-3"], ["st-4"]]
        assert sum(a["tokens"] for a in agents.values()) == BUDGET
        assert (await host.ok("monitor_usage", {}))["total"]["reserved"] == BUDGET
        for a in agents.values():
            assert a["runTimeoutSeconds"] == 600 and a["label"] and a["task"] and a["session_id"]
            assert all(agents[d]["stage"] < a["stage"] for d in a["depends_on"])

        # -- spawn stage by stage; st-1's first child fails ----------------------------------------------
        submitted: dict[str, int] = {}
        status: dict[str, str] = {}
        spawned: list[str] = []
        round_no = {sid: 1 for sid in agents}

        async def spawn_and_report(queue: list[str]) -> None:
            while queue:
                sid = queue.pop(0)
                a = agents[sid]
                assert all(status.get(d) == "success" for d in a["depends_on"]), f"{sid} spawned too early"
                spawned.append(sid)
                usage = child_usage(sid, round_no[sid])
                fails = sid == "st-1" and round_no[sid] == 1
                args: dict[str, Any] = {"session_id": a["session_id"], "status": "failed" if fails else "success",
                                        "usage": usage}
                if fails:
                    args["error"] = f"child crashed; its env had GROQ_API_KEY={GROQ_SECRET}"
                else:
                    # A careless child echoes a credential: Butler must not hand it back.
                    args["output"] = f"{sid} result" + (f" (debug: {GROQ_SECRET})" if sid == "st-2" else "")
                res = await host.ok("submit_result", args)
                submitted[sid] = submitted.get(sid, 0) + total(usage)
                status[sid] = res["status"]
                assert res["status"] == args["status"] and res["sub_task_id"] == sid and not res["duplicate"]
                assert res["tokens_used"] == submitted[sid]  # every round's tokens, failed ones included
                for ready in res["ready"]:
                    assert all(status.get(d) == "success" for d in agents[ready]["depends_on"])
                queue.extend(res["ready"])

        await spawn_and_report([s for s, a in agents.items() if not a["depends_on"]])
        assert status == {"st-1": "failed", "st-2": "success"}  # st-3 waits on st-1; st-4 on st-3

        # The same report again counts once.
        again = await host.ok("submit_result", {"session_id": agents["st-2"]["session_id"], "status": "success",
                                                "output": "st-2 result", "usage": child_usage("st-2", 1)})
        assert again["duplicate"] and again["tokens_used"] == submitted["st-2"]

        # -- submit_result: bad input changes nothing -------------------------------------------------------
        pending_sid = agents["st-3"]["session_id"]
        await host.all_invalid("submit_result", [
            {"session_id": pending_sid, "status": "done"},
            {"session_id": pending_sid, "status": "success", "usage": {"input_tokens": -1}},
            {"session_id": pending_sid, "status": "success", "usage": {"tokens": 5}},
            {"session_id": pending_sid, "status": "success", "usage": {"cost": -0.5}},
            {"session_id": "", "status": "success"},
            {"status": "success"},
            {"session_id": pending_sid, "status": "success", "bogus": True},
            {"session_id": GROQ_SECRET, "status": "won", "output": GROQ_SECRET},
        ], task_id)
        # st-2 was reported a success: it cannot turn into a failure afterwards (a conflict, nothing changes).
        before = await host.snapshot(task_id)
        flipped = await host.call("submit_result", {"session_id": agents["st-2"]["session_id"], "status": "failed",
                                                    "usage": {"input_tokens": 99}})
        assert flipped["error"]["code"] == "conflict" and await host.snapshot(task_id) == before
        unknown = await host.call("submit_result", {"session_id": GROQ_SECRET, "status": "success"})
        assert unknown["error"]["code"] == "unknown_session"

        # -- retry_failed_tasks: bad input changes nothing, then the real retry -----------------------------
        await host.all_invalid("retry_failed_tasks", [
            {},
            {"task_id": ""},
            {"task_id": 42},
            {"task_id": task_id, "extra": 1},
            {"task_id": task_id, "options": {"maxConcurrent": 0}},
            {"task_id": task_id, "options": {"runTimeoutSeconds": 600}},
        ], task_id)
        used_before_retry = sum(submitted.values())
        retry = await host.ok("retry_failed_tasks", {"task_id": task_id})
        assert retry["retried"] == ["st-1"] and [a["sub_task_id"] for a in retry["agents"]] == ["st-1"]
        assert 0 < retry["remaining_budget"] <= BUDGET - used_before_retry
        fresh = retry["agents"][0]
        assert fresh["session_id"] != agents["st-1"]["session_id"]
        assert 0 < fresh["tokens"] <= retry["remaining_budget"]
        # A late report from the failed first run has no sub-task any more.
        stale = await host.call("submit_result", {"session_id": agents["st-1"]["session_id"], "status": "success",
                                                  "usage": {"input_tokens": 5}})
        assert stale["error"]["code"] == "unknown_session"
        agents["st-1"] = fresh
        round_no["st-1"] = 2
        await spawn_and_report(["st-1"])
        assert status == dict.fromkeys(agents, "success")
        assert spawned == ["st-1", "st-2", "st-1", "st-3", "st-4"]

        # -- aggregate_task_results ---------------------------------------------------------------------------
        await host.all_invalid("aggregate_task_results", [
            {}, {"task_id": ""}, {"task_id": 7}, {"task_id": task_id, "verbose": True},
        ], task_id)
        agg = await host.ok("aggregate_task_results", {"task_id": task_id})
        after_retry = await host.ok("retry_failed_tasks", {"task_id": task_id})  # nothing left to retry
        assert after_retry["retried"] == [] and after_retry["agents"] == []
        return {"agg": agg, "submitted": submitted, "usage": await host.ok("monitor_usage", {}),
                "status": await host.ok("get_status", {}), "traffic": host.traffic}

    out = run_host(env, body)
    agg, submitted = out["agg"], out["submitted"]
    assert submitted["st-1"] == total(child_usage("st-1", 1)) + total(child_usage("st-1", 2))
    assert (agg["totalSubTasks"], agg["successful"], agg["failed"], agg["pending"]) == (4, 4, 0, 0)
    assert agg["successRate"] == 1.0
    assert agg["totalTokensUsed"] == sum(submitted.values())
    assert {d["subTaskId"]: d["tokensUsed"] for d in agg["details"]} == submitted
    assert {d["subTaskId"]: d["status"] for d in agg["details"]} == dict.fromkeys(submitted, "success")
    # The ledger agrees with the task: everything submitted is used today, nothing is left reserved.
    assert out["usage"]["total"]["used_today"] == sum(submitted.values())
    assert out["usage"]["total"]["reserved"] == 0
    assert out["status"]["tokens"]["active_sessions"] == 0

    traffic = "\n".join(out["traffic"])
    assert "[REDACTED]" in traffic  # the secret-bearing output and arguments were seen, and masked
    for name, secret in SECRETS.items():
        assert secret not in traffic, f"{name} leaked through an MCP response"


def test_retry_keeps_a_planned_task_within_its_budget(env: dict[str, str]) -> None:
    async def body(host: Host) -> tuple[int, int]:
        plan = await host.ok("plan_agents", {"name": "memo", "description": DESCRIPTION, "budget": BUDGET})
        agents = {a["sub_task_id"]: a for a in plan["agents"]}
        await host.ok("submit_result", {"session_id": agents["st-1"]["session_id"], "status": "failed",
                                        "usage": {"input_tokens": 400}})
        await host.ok("retry_failed_tasks", {"task_id": plan["task_id"]})
        usage = (await host.ok("monitor_usage", {}))["total"]
        return usage["used_today"], usage["reserved"]

    used, reserved = run_host(env, body)
    assert used + reserved <= BUDGET
