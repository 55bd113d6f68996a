"""A hostile provider echoes the credential it received in every way it can (error bodies of 401/403/429/500,
response headers, the request id, a 200 completion's text streamed in 3-character SSE pieces, the key without
its prefix, partial runs, base64). Whatever Butler does with those answers, through the CLI and a real MCP
stdio client, no run of MIN_RUN characters of any key's body, or of its base64, appears in stdout, stderr,
the log file, the MCP traffic, or the raw bytes of the database, its WAL and its SHM."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from butler_skill.host.redaction import MIN_RUN
from tests.conftest import write_keys
from tests.security.test_no_leaks import BIN, SECRETS
from tests.servers.fake_llm import FakeLLM, hostile, hostile_echoes, start_fake_llm

pytestmark = pytest.mark.slow

# Keys Butler holds in this test (inline and from the environment), one per wire shape.
HELD = {name: SECRETS[name] for name in ("openai", "anthropic", "groq", "nvidia", "openrouter")}
ERRORS = (401, 429, 500, 403, 429, 500)


def forbidden_runs(secret: str) -> set[str]:
    """Every MIN_RUN-character run of the key's body and of the body's base64 at each byte alignment."""
    body = hostile_echoes(secret)[1]
    forms = [body]
    raw = body.encode()
    for skip in range(3):
        part = raw[skip:]
        forms.append(base64.b64encode(part[: len(part) // 3 * 3]).decode())
    return {f[i:i + MIN_RUN] for f in forms for i in range(len(f) - MIN_RUN + 1)}


FORBIDDEN = {name: forbidden_runs(s) for name, s in HELD.items()}


def assert_no_key_material(text: str, where: str) -> None:
    for name, runs in FORBIDDEN.items():
        hit = next((r for r in runs if r in text), None)
        assert hit is None, f"{MIN_RUN} characters of the {name} key (or its base64) in {where}"


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with start_fake_llm(default=hostile(200)) as s:
        yield s


@pytest.fixture
def world(tmp_path: Path, server: FakeLLM) -> dict[str, Any]:
    keys = [
        {"id": "nv", "provider": "nvidia", "key": HELD["nvidia"], "base_url": server.base_url, "scope": "a",
         "limits": {"tokens_per_day": 200_000}},
        {"id": "an", "provider": "anthropic", "key_env": "H_ANTHROPIC", "base_url": server.base_url, "scope": "b",
         "limits": {"tokens_per_day": 200_000}},
        {"id": "gq", "provider": "groq", "key_env": "H_GROQ", "base_url": server.base_url, "scope": "c",
         "limits": {"tokens_per_day": 200_000}},
        {"id": "oa", "provider": "openai", "key": HELD["openai"], "base_url": server.base_url, "scope": "d",
         "limits": {"tokens_per_day": 200_000}},
        {"id": "or", "provider": "openrouter", "key_env": "H_OR", "base_url": server.base_url, "scope": "e",
         "limits": {"tokens_per_day": 200_000}},
    ]
    write_keys(tmp_path / "keys.json", keys)
    env = {
        "HOME": str(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}",
        "BUTLER_KEYS_PATH": str(tmp_path / "keys.json"), "BUTLER_STATE_PATH": str(tmp_path / "state.db"),
        "BUTLER_LOG_LEVEL": "DEBUG", "BUTLER_LOG_FILE": str(tmp_path / "butler.log"),
        "H_ANTHROPIC": HELD["anthropic"], "H_GROQ": HELD["groq"], "H_OR": HELD["openrouter"],
        "BUTLER_CIRCLE_BASE_URL": "http://127.0.0.1:9", "BUTLER_OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1",
    }
    return {"env": env, "dir": tmp_path}


def spawn_input(stream: bool, provider: str) -> dict[str, Any]:
    return {"name": f"hostile-{provider}-{stream}", "budget": 9_000,
            "description": "1. Research the prices\n2. Write the summary\n3. Review the summary",
            "options": {"maxRetries": 10, "backoffBaseMs": 1, "backoffMaxMs": 2, "stream": stream,
                        "maxConcurrent": 1, "preferredProvider": provider}}


def pasted_inputs(session_id: str) -> list[tuple[str, dict[str, Any]]]:
    """A caller pasting key material in every text field that ends up stored."""
    body = hostile_echoes(HELD["nvidia"])[1]
    return [
        ("submit_result", {"session_id": session_id, "status": "failed", "error": f"saw {body[:20]}",
                           "output": f"model output repeating {HELD['groq']} and {body}"}),
        ("allocate_tokens", {"prd_text": f"- use key {body[5:30]}", "tokens": 100, "label": body[2:40]}),
    ]


def hold(path: Path) -> sqlite3.Connection:
    """A connection kept open by the test, so the -wal and -shm files outlive the Butler process that wrote
    them (the last connection to close would fold and delete them) and their raw bytes can be read."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # maps the -shm: this connection counts
    return conn


def check_state(folder: Path) -> None:
    files = sorted(folder.glob("state*.db*"))
    assert any(p.name.endswith("-wal") for p in files) and any(p.name.endswith("-shm") for p in files)
    for path in files:
        assert_no_key_material(path.read_bytes().decode("latin-1"), path.name)
    log = (folder / "butler.log").read_text("utf-8")
    assert log.strip()
    assert_no_key_material(log, "the log file")


def run(env: dict[str, str], *args: str) -> tuple[dict[str, Any] | None, str]:
    res = subprocess.run([str(BIN / "butler"), *args], env=env, capture_output=True, text=True, timeout=120)
    try:
        out = json.loads(res.stdout)
    except ValueError:
        out = None
    return out, f"[exit {res.returncode}]\n{res.stdout}\n{res.stderr}"


def spawn_everywhere(env: dict[str, str], server: FakeLLM, folder: Path,
                     holders: list[sqlite3.Connection]) -> tuple[list[dict[str, Any]], list[str]]:
    """spawn_agent on each provider, streamed and not, each after the full list of hostile errors. Each spawn
    gets a fresh ledger (state-N.db): an auth failure benches a key for the day, and every spawn should meet
    every kind of answer."""
    outs, seen = [], []
    for n, (provider, stream) in enumerate((p, s) for p in ("nvidia", "anthropic", "groq", "openai")
                                           for s in (True, False)):
        server.script(*(hostile(s) for s in ERRORS))
        before = len(server.requests)
        holders.append(hold(folder / f"state-{n}.db"))
        out, text = run({**env, "BUTLER_STATE_PATH": str(folder / f"state-{n}.db")}, "call", "spawn_agent",
                        "--input", json.dumps(spawn_input(stream, provider)))
        assert out is not None and out["ok"], text
        assert len(server.requests) - before >= len(ERRORS) + 3  # every error, then the three sub-tasks
        outs.append(out)
        seen.append(text)
    return outs, seen


def test_cli_against_a_hostile_provider(world: dict[str, Any], server: FakeLLM) -> None:
    env, folder = world["env"], world["dir"]
    holders: list[sqlite3.Connection] = []
    outs, seen = spawn_everywhere(env, server, folder, holders)
    results = [r for o in outs for r in o["result"]["results"]]
    assert all(r["status"] == "success" and "[REDACTED]" in r["output"] for r in results)
    errors = [a for o in outs for a in [*o["result"]["aggregate"]["details"]]]
    assert errors
    last = {**env, "BUTLER_STATE_PATH": str(folder / "state-7.db")}
    task_id = outs[-1]["result"]["task_id"]
    plan, text = run(last, "call", "plan_agents", "--input",
                     json.dumps({"name": "paste", "description": "1. One", "budget": 500}))
    assert plan is not None, text
    sid = plan["result"]["agents"][0]["session_id"]
    for tool, payload in pasted_inputs(sid):
        seen.append(run(last, "call", tool, "--input", json.dumps(payload))[1])
    for command in (["call", "aggregate_task_results", "--input", json.dumps({"task_id": task_id})],
                    ["call", "get_status", "--input", '{"history_limit": 100}'], ["call", "monitor_usage"],
                    ["status"], ["keys"], ["doctor"]):
        seen.append(run(last, *command)[1])
    for i, text in enumerate(seen):
        assert_no_key_material(text, f"CLI run {i}")
    check_state(folder)
    for conn in holders:
        conn.close()


def test_mcp_against_a_hostile_provider(world: dict[str, Any], server: FakeLLM) -> None:
    env, folder = world["env"], world["dir"]
    params = StdioServerParameters(command=str(BIN / "butler-mcp"), env=env)
    errlog = folder / "mcp-stderr.txt"

    async def run() -> list[str]:
        texts: list[str] = []
        with errlog.open("w") as err:
            async with stdio_client(params, errlog=err) as (r, w), ClientSession(r, w) as session:
                await session.initialize()
                for provider, stream in (("nvidia", True), ("anthropic", True), ("groq", False)):
                    server.script(*(hostile(s) for s in ERRORS if s not in (401, 403)))
                    res = await session.call_tool("spawn_agent", spawn_input(stream, provider))
                    texts.append(res.model_dump_json())
                task_id = json.loads(res.content[0].text)["result"]["task_id"]
                # Every key the provider refused rests for its Retry-After (0, so the 1-second minimum).
                await anyio.sleep(1.1)
                plan = await session.call_tool("plan_agents", {"name": "p", "description": "1. One", "budget": 500})
                sid = json.loads(plan.content[0].text)["result"]["agents"][0]["session_id"]
                for tool, payload in [*pasted_inputs(sid), ("aggregate_task_results", {"task_id": task_id}),
                                      ("get_status", {"history_limit": 100})]:
                    texts.append((await session.call_tool(tool, payload)).model_dump_json())
        return texts

    holder = hold(Path(env["BUTLER_STATE_PATH"]))
    texts = anyio.run(run)
    check_state(folder)
    holder.close()
    assert any("[REDACTED]" in t for t in texts[:3])  # the echoes did come back, masked
    for i, text in enumerate(texts):
        assert_no_key_material(text, f"MCP response {i}")
    assert_no_key_material(errlog.read_text("utf-8"), "the MCP server's stderr")
