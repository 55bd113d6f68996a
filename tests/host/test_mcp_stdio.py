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
from tests.conftest import SECRETS

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
    for tool in listed.tools:
        assert tool.input_schema["type"] == "object"
        assert len(f"butler__{tool.name}") <= 64


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
    assert a["result"]["key_id"] in {"alpha-1", "alpha-2", "beta-1"}
    b = _envelope(bad)
    assert bad.is_error is True and b["error"]["code"] == "invalid_input" and b["error"]["details"]["path"] == "/tokens"
    assert _envelope(unknown)["error"]["code"] == "unknown_session"
    s = _envelope(status)["result"]
    assert s["tokens"]["active_sessions"] == 1  # the bad call changed nothing
    traffic = json.dumps([a, b, s])
    for secret in SECRETS.values():
        assert secret not in traffic
