"""A REAL OpenClaw whose model is on Butler's gateway, with the loopback fake provider behind it: the turn
completes, Butler's ledger has the turn's usage, a `butler/<session_id>` model (as `sessions_spawn` would pass
it) spends that session, and OpenClaw's config holds a Butler token, never a provider key.

Opt-in like tests/e2e/test_openclaw_real.py (BUTLER_TEST_OPENCLAW=1, BUTLER_OPENCLAW_PREFIX); skipped with the
reason otherwise. What this showed on OpenClaw 2026.9.6: a model id not listed under the provider's `models` is
accepted and sent as is (the part after `butler/`); requests carry no header naming the agent or session
(only the OpenAI JS SDK's own and a traceparent); the system prompt alone is ~60 KB, so a session must hold
~15,000 tokens per call before the gateway forwards it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from butler_skill.host.dispatch import call_tool
from tests.conftest import REPO
from tests.e2e.test_openclaw_real import TIMEOUT_S, OpenClaw
from tests.gateway.conftest import ALL_SECRETS, Harness, gateway_keys, start_harness
from tests.servers.fake_llm import FakeLLM, ok, start_fake_llm

pytestmark = [pytest.mark.openclaw, pytest.mark.slow]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, FakeLLM, Harness]]:
    home = tmp_path / "home"
    (home / "butler").mkdir(parents=True)
    with start_fake_llm() as fake:
        h = start_harness(home / "butler", fake, gateway_keys(fake, limit=10_000_000), daily_budget=10_000_000)
        try:
            yield home, fake, h
        finally:
            h.server.close()
            h.ctx.close()


def agent_turn(openclaw: OpenClaw, home: Path, h: Harness, model: str) -> dict[str, object]:
    env = {**openclaw.env(home, butler_on_path=True), "BUTLER_KEYS_PATH": str(home / "butler" / "keys.json"),
           "BUTLER_STATE_PATH": str(home / "butler" / "s.db")}
    butler = str(REPO / ".venv" / "bin" / "butler")
    setup = subprocess.run([butler, "openclaw", "setup", "--base-url", h.url + "/v1"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert setup.returncode == 0, setup.stderr
    run = subprocess.run([str(openclaw.exe), "agent", "--local", "--model", model, "-m", "Say PONG", "--json",
                          "--timeout", "240"], env=env, cwd=home, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    start = run.stdout.find("{")
    data, _ = json.JSONDecoder().raw_decode(run.stdout[start:])
    return dict(data)


def final_text(result: dict[str, object]) -> str:
    return json.dumps(result).split('"finalAssistantVisibleText": "', 1)[1].split('"', 1)[0]


def test_an_openclaw_turn_runs_through_the_gateway(openclaw: OpenClaw, world: tuple[Path, FakeLLM, Harness]) -> None:
    home, fake, h = world
    fake.set_default(ok(text="PONG through Butler", prompt_tokens=900, completion_tokens=12))
    result = agent_turn(openclaw, home, h, "butler/gpt-test")
    assert final_text(result) == "PONG through Butler"
    [row] = h.rows("SELECT key_id, input_tokens, output_tokens, estimated FROM usage_records")
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (900, 12, 0)
    config = (home / ".openclaw" / "openclaw.json").read_text("utf-8")
    assert '"apiKey": "butler_at_' in config
    assert not any(secret in config for secret in ALL_SECRETS)


def test_a_session_model_spends_that_session(openclaw: OpenClaw, world: tuple[Path, FakeLLM, Harness]) -> None:
    home, fake, h = world
    fake.set_default(ok(text="PONG bound", prompt_tokens=800, completion_tokens=10))
    out = call_tool("allocate_tokens", {"prd_text": "x", "tokens": 200_000, "preferred_provider": "openai"}, h.ctx)
    sid = out["result"]["session_id"]
    result = agent_turn(openclaw, home, h, f"butler/{sid}")
    assert final_text(result) == "PONG bound"
    [row] = h.rows("SELECT session_id, total_tokens FROM usage_records")
    assert (row["session_id"], row["total_tokens"]) == (sid, 810)
    assert h.rows("SELECT used FROM sessions WHERE id = ?", sid)[0]["used"] == 810
