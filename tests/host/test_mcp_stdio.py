"""The MCP server, driven by the mcp SDK's own stdio client in a real subprocess."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from butler_skill.host.manifest import load_manifest
from tests.conftest import SECRETS, SMALL_KEYS, write_keys
from tests.servers.fake_llm import start_fake_llm

pytestmark = pytest.mark.slow


def _server_params(env: dict[str, str]) -> StdioServerParameters:
    exe = shutil.which("butler-mcp", path=str(Path(sys.executable).parent))
    assert exe, "butler-mcp console script is not installed next to this interpreter"
    return StdioServerParameters(command=exe, args=[], env=env)


async def _session_run(env: dict[str, str], body: Any) -> Any:
    async with stdio_client(_server_params(env)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await body(session)


def _envelope(result: Any) -> dict[str, Any]:
    assert result.content and result.content[0].type == "text"
    return dict(json.loads(result.content[0].text))


def test_lists_every_manifest_tool_with_schemas(env: dict[str, str]) -> None:
    async def body(session: ClientSession) -> Any:
        return await session.list_tools()

    listed = anyio.run(_session_run, env, body)
    names = [t.name for t in listed.tools]
    assert names == [t.name for t in load_manifest().tools]
    manifest = load_manifest()
    for tool in listed.tools:
        assert tool.input_schema["type"] == "object"
        assert len(f"butler__{tool.name}") <= 64
        spec = manifest.tool(tool.name)
        assert spec is not None
        # Each tool publishes the output schema its results validate against (MCP outputSchema).
        assert tool.output_schema == json.loads(manifest.schema_path(spec.output_schema).read_text("utf-8"))


def test_calls_tools_and_rejects_bad_input(env: dict[str, str]) -> None:
    async def body(session: ClientSession) -> Any:
        alloc = await session.call_tool("allocate_tokens", {"prd_text": "- one\n- two", "label": "mcp"})
        bad = await session.call_tool("allocate_tokens", {"prd_text": "x", "tokens": -5})
        unknown = await session.call_tool("record_usage", {"session_id": "nope", "request_id": "r",
                                                           "input_tokens": 1, "output_tokens": 1})
        status = await session.call_tool("get_status", {})
        return alloc, bad, unknown, status

    alloc, bad, unknown, status = anyio.run(_session_run, env, body)
    a = _envelope(alloc)
    assert a["ok"] is True and alloc.is_error is False
    # The result comes as structured content too, equal to the text envelope's result.
    assert alloc.structured_content == a["result"]
    assert a["result"]["key_id"] in {"alpha-1", "alpha-2", "beta-1"}
    b = _envelope(bad)
    assert bad.is_error is True and b["error"]["code"] == "invalid_input" and b["error"]["details"]["path"] == "/tokens"
    assert bad.structured_content is None  # an error is the envelope as text only
    assert _envelope(unknown)["error"]["code"] == "unknown_session"
    s = _envelope(status)["result"]
    assert s["tokens"]["active_sessions"] == 1  # the bad call changed nothing
    traffic = json.dumps([a, b, s])
    for secret in SECRETS.values():
        assert secret not in traffic


def test_every_tool_answers_valid_and_refuses_invalid_input(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing secret here\n")
    # spawn_agent calls providers for real: point every key at a loopback server, never a public host
    server = start_fake_llm()
    keys = [{**k, "base_url": server.base_url} for k in SMALL_KEYS]
    write_keys(tmp_path / "loopback-keys.json", keys)
    env = {**env, "BUTLER_KEYS_PATH": str(tmp_path / "loopback-keys.json")}

    def valid(session_id: str, task_id: str) -> dict[str, dict[str, Any]]:
        return {
            "allocate_tokens": {"prd_text": "- one", "tokens": 100},
            "get_available_keys": {},
            "monitor_usage": {},
            "get_status": {},
            "record_usage": {"session_id": session_id, "request_id": "mcp-1", "input_tokens": 5, "output_tokens": 5},
            "rotate_key": {"session_id": session_id},
            "plan_agents": {"name": "mcp", "description": "1. Research\n2. Write", "budget": 2_000},
            "spawn_agent": {"name": "mcp", "description": "1. Research", "budget": 1_000},
            "submit_result": {"session_id": session_id, "status": "success"},
            "aggregate_task_results": {"task_id": task_id},
            "retry_failed_tasks": {"task_id": task_id},
            "treasury_status": {},
            "treasury_autobuy": {"mode": "evaluate"},
            "scan_secrets": {"paths": [str(tmp_path / "notes.txt")]},
        }

    async def body(session: ClientSession) -> tuple[dict[str, Any], dict[str, Any]]:
        plan = _envelope(await session.call_tool("plan_agents", {"name": "p", "description": "1. a", "budget": 500}))
        sid, tid = plan["result"]["agents"][0]["session_id"], plan["result"]["task_id"]
        good = {name: _envelope(await session.call_tool(name, args)) for name, args in valid(sid, tid).items()}
        bad = {name: _envelope(await session.call_tool(name, {**args, "unexpected_field": 1}))
               for name, args in valid(sid, tid).items()}
        return good, bad

    try:
        good, bad = anyio.run(_session_run, env, body)
    finally:
        server.close()
    assert server.requests, "spawn_agent should have called the loopback provider"
    tools = [t.name for t in load_manifest().tools]
    assert sorted(good) == sorted(tools)
    assert all(env_["ok"] for env_ in good.values()), {k: v for k, v in good.items() if not v["ok"]}
    assert all(env_["error"]["code"] == "invalid_input" for env_ in bad.values())
