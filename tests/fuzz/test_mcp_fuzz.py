"""Every tool, driven through a real MCP client (the SDK's, over stdio, in a real `butler-mcp` process) with
inputs generated from schemas/: valid ones and ones just past the rules.

For every call: never `internal`; a schema-valid input never answers `invalid_input`; a success returns
structured content that validates against the tool's output schema (the SDK client checks that too) and
equals the text envelope's result; a schema-invalid input answers `invalid_input` and leaves every table
of the state database as it was. One MCP session serves every example, so the run stays short.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from butler_skill.host.manifest import load_manifest
from tests.conftest import SECRETS, SMALL_KEYS, write_keys
from tests.fuzz.schema_strategies import inputs
from tests.servers.fake_llm import start_fake_llm

pytestmark = pytest.mark.slow

MANIFEST = load_manifest()
TOOLS = [t.name for t in MANIFEST.tools]
# Per tool: about 350 calls over one session, well under a minute. BUTLER_FUZZ_EXAMPLES=500 digs deeper.
EXAMPLES = int(os.environ.get("BUTLER_FUZZ_EXAMPLES", "25"))


def _schema(rel: str) -> dict[str, Any]:
    return dict(json.loads(MANIFEST.schema_path(rel).read_text("utf-8")))


@asynccontextmanager
async def _client(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()  # the client learns the output schemas it validates results against
        yield session


@dataclass
class Harness:
    portal: BlockingPortal
    session: ClientSession
    db_path: Path
    pool: dict[str, list[Any]] = field(default_factory=dict)

    def call(self, tool: str, args: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        result = self.portal.call(self.session.call_tool, tool, args)
        assert result.content and result.content[0].type == "text"
        envelope = dict(json.loads(result.content[0].text))
        assert result.is_error is (not envelope["ok"])
        return envelope, result

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, read beside the server (WAL lets a reader in)."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {t: sorted(map(tuple, conn.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}
        finally:
            conn.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("fuzz")
    work = root / "work" / "here"  # the server's working directory; ".." holds nothing but it
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("nothing secret here\n", "utf-8")
    (work / "prd.md").write_text("# Memo\n- gather the figures\n- write it up\n", "utf-8")
    server = start_fake_llm()  # spawn_agent calls providers for real: a loopback one
    keys = write_keys(root / "keys.json", [{**k, "base_url": server.base_url} for k in SMALL_KEYS])
    db_path = root / "state" / "state.db"
    db_path.parent.mkdir()
    env = {"HOME": str(root), "PATH": "/usr/bin:/bin", **SECRETS,
           "BUTLER_KEYS_PATH": str(keys), "BUTLER_STATE_PATH": str(db_path)}
    exe = shutil.which("butler-mcp", path=str(Path(sys.executable).parent))
    assert exe, "butler-mcp console script is not installed next to this interpreter"
    params = StdioServerParameters(command=exe, args=[], env=env, cwd=str(work))
    try:
        with start_blocking_portal() as portal, portal.wrap_async_context_manager(_client(params)) as session:
            h = Harness(portal, session, db_path)
            _seed(h)
            yield h
    finally:
        server.close()


def _seed(h: Harness) -> None:
    """Real ids for the generator to use beside random ones: a session, a planned task and its sub-tasks."""
    alloc, _ = h.call("allocate_tokens", {"tokens": 500, "label": "fuzz"})
    plan, _ = h.call("plan_agents", {"name": "fuzz", "description": "1. Research\n2. Write", "budget": 2_000})
    assert alloc["ok"] and plan["ok"], (alloc, plan)
    sessions = [alloc["result"]["session_id"]] + [a["session_id"] for a in plan["result"]["agents"]]
    h.pool = {
        "session_id": sessions,
        "task_id": [plan["result"]["task_id"]],
        "new_key_id": [k["id"] for k in SMALL_KEYS],
        "preferred_provider": ["groq", "openai"], "preferredProvider": ["groq", "openai"], "provider": ["groq"],
        "prd_path": ["prd.md", "notes.txt"],
        "paths": [["notes.txt"], ["."], []],
        "request_id": ["req-1", "req-2"],
    }


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_holds_its_contract(harness: Harness, tool: str) -> None:
    spec = MANIFEST.tool(tool)
    assert spec is not None
    in_schema, out_schema = _schema(spec.input_schema), _schema(spec.output_schema)
    in_check = jsonschema.Draft202012Validator(in_schema)
    out_check = jsonschema.Draft202012Validator(out_schema)
    seen = {"valid": 0, "invalid": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(args=st.deferred(lambda: inputs(in_schema, harness.pool)))
    def check(args: dict[str, Any]) -> None:
        valid = in_check.is_valid(args)
        seen["valid" if valid else "invalid"] += 1
        before = None if valid else harness.snapshot()
        envelope, result = harness.call(tool, args)
        where = f"{tool} {json.dumps(args)[:300]} -> {json.dumps(envelope)[:400]}"
        assert not any(secret in json.dumps(envelope) for secret in SECRETS.values()), where
        if envelope["ok"]:
            assert valid, f"a schema-invalid input was accepted: {where}"
            assert out_check.is_valid(envelope["result"]), where
            assert result.structured_content == envelope["result"], where
            return
        code = envelope["error"]["code"]
        assert code != "internal", where
        if valid:
            assert code != "invalid_input", f"a schema-valid input was refused: {where}"
        else:
            assert code == "invalid_input", where
            assert harness.snapshot() == before, f"an invalid input changed the state: {where}"

    check()
    # Both sides of the schema were exercised, or the test proved less than it says.
    assert seen["valid"] >= 1 and seen["invalid"] >= 1, seen
