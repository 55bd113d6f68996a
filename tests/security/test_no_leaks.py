"""No key material leaves Butler: every CLI command, every tool through the host and the MCP server,
failing paths included, with a keys file full of realistic secrets and a provider that echoes them back.
Checked: stdout, stderr, the log file, the database bytes (main file and WAL) and the MCP traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from butler_skill.host.manifest import load_manifest
from tests.conftest import write_keys
from tests.servers.fake_llm import FakeLLM, start_fake_llm, unauthorized

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent

# Random, realistic, never real: one per shape Butler holds.
SECRETS = {
    "openai": "sk-proj-" + "Hq2Wm9Xc4Vb7Nk1Lp6Zr3Ts8Yd5Fg0Ja" + "T3BlbkFJ" + "Uu4Ii3Oo2Pp1Aa0Ss9Dd",
    "anthropic": "sk-ant-api03-" + "Vn8Bm2Cx6Zl4Kj9Hg1Fd7Sa3Qw5Er0Ty" + "Ui2Op8As4Df6Gh1Jk3Lz9Xc7Vb5Nm-Pq2Wq3AA",
    "groq": "gsk_" + "Lm3Nb8Vc2Xz7Qa4Ws1Ed6Rf9Tg5Yh0Uj" + "Ik2Ol7Pm4Nn9Bb3Vv",
    "nvidia": "nvapi-" + "Aa1Ss2Dd3Ff4Gg5Hh6Jj7Kk8Ll9Zz0Xx" + "Cc1Vv2Bb3Nn4Mm5Qq6Ww7Ee8Rr9Tt0Yy",
    "openrouter": "sk-or-v1-" + "0f1e2d3c4b5a69788796a5b4c3d2e1f0" + "1a2b3c4d5e6f708192a3b4c5d6e7f8091",
    "circle": "TEST_API_KEY:" + "8f3c2a9e7d6b5c4a3f2e1d0c9b8a7f6e" + ":" + "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d",
    "entity": "4be9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0",
}


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with start_fake_llm(default=unauthorized(echo_auth=True)) as s:
        yield s


@pytest.fixture
def world(tmp_path: Path, server: FakeLLM) -> dict[str, Any]:
    keys = [
        {"id": "oa", "provider": "openai", "key": SECRETS["openai"], "base_url": server.base_url, "scope": "a",
         "limits": {"tokens_per_day": 100_000}},
        {"id": "an", "provider": "anthropic", "key_env": "LEAK_ANTHROPIC", "base_url": server.base_url,
         "scope": "b", "limits": {"tokens_per_day": 100_000}},
        {"id": "gq", "provider": "groq", "key_env": "LEAK_GROQ", "base_url": server.base_url, "scope": "c",
         "limits": {"tokens_per_day": 100_000}},
        {"id": "nv", "provider": "nvidia", "key": SECRETS["nvidia"], "base_url": server.base_url, "scope": "d",
         "limits": {"tokens_per_day": 100_000}},
        {"id": "or", "provider": "openrouter", "key_env": "LEAK_OR", "base_url": server.base_url, "scope": "e",
         "limits": {"tokens_per_day": 100_000}},
    ]
    write_keys(tmp_path / "keys.json", keys)
    env = {
        "HOME": str(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}",
        "BUTLER_KEYS_PATH": str(tmp_path / "keys.json"), "BUTLER_STATE_PATH": str(tmp_path / "state.db"),
        "BUTLER_LOG_LEVEL": "DEBUG", "BUTLER_LOG_FILE": str(tmp_path / "butler.log"),
        "LEAK_ANTHROPIC": SECRETS["anthropic"], "LEAK_GROQ": SECRETS["groq"], "LEAK_OR": SECRETS["openrouter"],
        "CIRCLE_API_KEY": SECRETS["circle"], "CIRCLE_ENTITY_SECRET": SECRETS["entity"],
        "CIRCLE_WALLET_ID": "wallet-1", "BUTLER_CIRCLE_BASE_URL": "http://127.0.0.1:9",
        # The treasury reads the OpenRouter key's credit: keep that on loopback too (port 9 refuses).
        "BUTLER_OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1",
    }
    return {"env": env, "dir": tmp_path}


def assert_clean(text: str, where: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} secret leaked through {where}"
        # a long enough slice of the secret is a leak too (a truncated echo, a half-redacted value)
        assert secret[:24] not in text and secret[-16:] not in text, f"part of the {name} secret in {where}"


def butler(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    res = subprocess.run([str(BIN / "butler"), *args], env=env, input=stdin, capture_output=True, text=True,
                         timeout=120)
    return f"[exit {res.returncode}]\n{res.stdout}\n{res.stderr}"


def tool_inputs(session_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("allocate_tokens", {"prd_text": "- leak test", "tokens": 1_000}),
        ("allocate_tokens", {"prd_text": SECRETS["groq"], "tokens": -1}),  # a pasted key in bad input
        ("allocate_tokens", {"prd_text": "x", "preferred_provider": SECRETS["openai"]}),
        ("get_available_keys", {}),
        ("monitor_usage", {}),
        ("get_status", {}),
        ("record_usage", {"session_id": session_id, "request_id": SECRETS["nvidia"], "input_tokens": 5,
                          "output_tokens": 5}),
        ("record_usage", {"session_id": SECRETS["anthropic"], "request_id": "r", "input_tokens": 1,
                          "output_tokens": 1}),
        ("rotate_key", {"session_id": session_id, "reason": "auth"}),
        ("rotate_key", {"session_id": session_id, "new_key_id": SECRETS["openrouter"]}),
        ("plan_agents", {"name": "leaks", "description": "1. Research\n2. Write", "budget": 4_000}),
        ("spawn_agent", {"name": "leaks", "description": "1. Research prices", "budget": 3_000,
                         "options": {"maxRetries": 0}}),
        ("submit_result", {"session_id": session_id, "status": "success", "output": "ok"}),
        ("aggregate_task_results", {"task_id": SECRETS["groq"]}),
        ("retry_failed_tasks", {"task_id": "task_nope"}),
        ("treasury_status", {}),
        ("treasury_autobuy", {"mode": "evaluate"}),
        ("treasury_autobuy", {"mode": "execute", "dry_run": False}),
    ] + ([("scan_secrets", {"paths": ["keys.json"]})] if load_manifest().tool("scan_secrets") else [])


def test_every_cli_command_and_tool_stays_clean(world: dict[str, Any]) -> None:
    env, folder = world["env"], world["dir"]
    seen: list[str] = []
    first = json.loads(butler(env, "call", "allocate_tokens", "--input",
                              '{"prd_text": "x", "tokens": 500}').split("\n", 1)[1].rsplit("\n", 2)[0])
    session_id = first["result"]["session_id"]
    for tool, payload in tool_inputs(session_id):
        seen.append(butler(env, "call", tool, "--input", json.dumps(payload)))
    for command in (["status"], ["keys"], ["tools"], ["doctor"], ["doctor", "--json"], ["schemas", "--check"],
                    ["treasury", "status"], ["treasury", "policy"], ["treasury", "reconcile"],
                    ["call", "get_status", "--input", "not json " + SECRETS["groq"]],
                    ["init", "--path", str(folder / "new-keys.json")]):
        seen.append(butler(env, *command))
    if load_manifest().tool("scan_secrets"):
        for fmt in ("text", "json", "sarif"):
            seen.append(butler(env, "scan", str(folder / "keys.json"), "--format", fmt))
    for i, text in enumerate(seen):
        assert_clean(text, f"CLI run {i}")
    assert "[exit 0]" in seen[0] or "[exit 1]" in seen[0]
    spawn_out = next(t for t in seen if '"task_id"' in t and '"results"' in t)
    assert "auth" in spawn_out  # the provider did refuse, echoing the key, and the error came back clean
    log = (folder / "butler.log").read_text("utf-8")
    assert log.strip(), "the DEBUG log file is empty: the test would prove nothing"
    assert_clean(log, "the log file")
    for path in folder.glob("state.db*"):
        assert_clean(path.read_bytes().decode("latin-1"), path.name)


def test_mcp_traffic_stays_clean(world: dict[str, Any]) -> None:
    env = world["env"]
    params = StdioServerParameters(command=str(BIN / "butler-mcp"), env=env)
    errlog = world["dir"] / "mcp-stderr.txt"

    async def run() -> list[str]:
        texts: list[str] = []
        with errlog.open("w") as err:
            async with stdio_client(params, errlog=err) as (r, w), ClientSession(r, w) as session:
                await session.initialize()
                listed = await session.list_tools()
                texts.append(listed.model_dump_json())
                alloc = await session.call_tool("allocate_tokens", {"prd_text": "x", "tokens": 500})
                sid = json.loads(alloc.content[0].text)["result"]["session_id"]
                for tool, payload in tool_inputs(sid):
                    result = await session.call_tool(tool, payload)
                    texts.append(result.model_dump_json())
        return texts

    texts = anyio.run(run)
    assert len(texts) > 10
    for i, text in enumerate(texts):
        assert_clean(text, f"MCP response {i}")
    assert_clean(errlog.read_text("utf-8"), "the MCP server's stderr")
    assert_clean((world["dir"] / "butler.log").read_text("utf-8"), "the MCP server's log file")
