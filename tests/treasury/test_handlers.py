"""The two tools through the host's real dispatch (schema validation, error shape, redaction)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.manifest import Manifest, ToolSpec
from tests.conftest import Ids, write_keys
from tests.treasury.conftest import SECRETS, Harness

OR_API_KEY = "sk-or-v1-" + "4e5f60718293a4b5c6d7e8f90a1b2c3d" + "5e6f708192a3b4c5d6e7f8091a2b3c4d"
TOOLS = (
    ToolSpec(name="treasury_status", description="Wallet, credit, policy, spend, breaker, recent top-ups.",
             handler="butler_skill.handlers.treasury:treasury_status",
             input_schema="schemas/treasury_status.input.json", output_schema="schemas/treasury_status.output.json",
             mutates=False, spends_money=False),
    ToolSpec(name="treasury_autobuy", description="Evaluate, propose or execute top-ups under policy.",
             handler="butler_skill.handlers.treasury:treasury_autobuy",
             input_schema="schemas/treasury_autobuy.input.json",
             output_schema="schemas/treasury_autobuy.output.json", mutates=True, spends_money=True),
)


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    root = tmp_path / "manifest"
    (root / "schemas").mkdir(parents=True)
    for tool in TOOLS:  # generated the way `butler schemas --write` does
        (root / tool.input_schema).write_text(json.dumps(tool.input_model.model_json_schema(mode="validation")))
        out = tool.output_model.model_json_schema(mode="serialization", by_alias=True)
        (root / tool.output_schema).write_text(json.dumps(out))
    return Manifest(name="butler", version="0.1.0", description="test", tools=TOOLS, root=root)


def make_ctx(h: Harness, **env: str) -> Context:
    keys = write_keys(h.folder / "keys.json", [{"id": "or-1", "provider": "openrouter", "key_env": "OPENROUTER_API_KEY",
                                                "limits": {"tokens_per_day": 100_000}}])
    return Context(env={**h.env(), "OPENROUTER_API_KEY": OR_API_KEY, **env}, keys_path=keys,
                   state_path=h.folder / "state.db", clock=h.clock, ids=Ids())


@pytest.fixture
def ctx(harness: Harness) -> Iterator[Context]:
    context = make_ctx(harness)
    yield context
    context.close()


def call(manifest: Manifest, ctx: Context, tool: str, payload: dict[str, Any]) -> dict[str, Any]:
    envelope = call_tool(tool, payload, ctx, manifest=manifest)
    for secret in (*SECRETS, OR_API_KEY):
        assert secret not in str(envelope)
    return envelope


def test_status(manifest: Manifest, ctx: Context, harness: Harness) -> None:
    env = call(manifest, ctx, "treasury_status", {})
    assert env["ok"], env
    r = env["result"]
    assert r["network"] == "testnet"
    assert r["wallet"]["usdc"] == "1000" and r["wallet"]["error"] is None
    (credit,) = r["credits"]
    assert credit == {**credit, "provider": "openrouter", "remaining": "74.5", "source": "api", "threshold": "50"}
    assert r["policy"]["caps"] == {"per_transaction": "250", "daily": "500", "monthly": "1000"}
    assert r["breaker"] == {"consecutive_failures": 0, "max_consecutive_failures": 3, "tripped": False,
                            "tripped_at": None}
    assert r["spend"]["daily_cap_left"] == "500" and r["recent"] == [] and r["awaiting_approval"] == []
    offline = call(manifest, ctx, "treasury_status", {"refresh": False, "recent": 0})["result"]
    assert offline["wallet"]["usdc"] is None and offline["credits"][0]["source"] == "unknown"


def test_agent_proposes_but_never_approves(manifest: Manifest, ctx: Context, harness: Harness) -> None:
    (d,) = call(manifest, ctx, "treasury_autobuy", {})["result"]["decisions"]
    assert d["action"] == "none"
    harness.set_credit("20")
    dry = call(manifest, ctx, "treasury_autobuy", {"mode": "propose"})["result"]
    assert dry["dry_run"] is True and dry["proposed"] == [] and dry["decisions"][0]["action"] == "propose"
    assert "dry run" in dry["message"]
    real = call(manifest, ctx, "treasury_autobuy", {"mode": "propose", "dry_run": False})["result"]
    (intent,) = real["proposed"]
    assert intent["state"] == "proposed" and intent["amount"] == "200" and real["awaiting_approval"] == [intent["id"]]
    assert "butler treasury approve" in real["message"]

    assert call(manifest, ctx, "treasury_autobuy", {"mode": "approve"})["error"]["code"] == "invalid_input"
    assert call(manifest, ctx, "treasury_autobuy", {"mode": "execute", "approve": True})["error"]["code"] \
        == "invalid_input"
    denied = call(manifest, ctx, "treasury_autobuy", {"mode": "execute", "intent_id": intent["id"], "dry_run": False})
    assert denied["error"]["code"] == "approval_required"
    batch = call(manifest, ctx, "treasury_autobuy", {"mode": "execute", "dry_run": False})["result"]
    assert batch["executions"] == [] and batch["awaiting_approval"] == [intent["id"]]
    assert harness.circle.transfer_posts() == []

    harness.service().approve(intent["id"], "person:ada")  # what `butler treasury approve` does
    preview = call(manifest, ctx, "treasury_autobuy", {"mode": "execute"})["result"]
    assert [e["outcome"] for e in preview["executions"]] == ["would_execute"]
    assert harness.circle.transfer_posts() == []
    done = call(manifest, ctx, "treasury_autobuy", {"mode": "execute", "dry_run": False})["result"]
    assert [e["outcome"] for e in done["executions"]] == ["complete"] and harness.circle.transfer_count == 1
    status = call(manifest, ctx, "treasury_status", {})["result"]
    assert status["recent"][0]["state"] == "complete" and status["spend"]["sent_day"] == "200"


def test_policy_errors_have_the_error_shape(manifest: Manifest, harness: Harness) -> None:
    harness.set_policy(caps={"per_transaction": "600", "daily": "500", "monthly": "1000"})
    ctx = make_ctx(harness)
    env = call(manifest, ctx, "treasury_status", {})
    assert env["ok"] is False and env["error"]["code"] == "config_error" and "caps" in env["error"]["message"]
    ctx.close()


def test_credit_from_the_key_limit_without_a_management_key(manifest: Manifest, harness: Harness) -> None:
    harness.openrouter.api_keys[OR_API_KEY] = {"limit": 30, "usage": 12.5}
    env = {k: v for k, v in harness.env().items() if k != "OPENROUTER_MANAGEMENT_KEY"}
    keys = write_keys(harness.folder / "keys.json", [{"id": "or-1", "provider": "openrouter",
                                                      "key_env": "OPENROUTER_API_KEY",
                                                      "limits": {"tokens_per_day": 100_000}}])
    ctx = Context(env={**env, "OPENROUTER_API_KEY": OR_API_KEY}, keys_path=keys, state_path=harness.folder / "state.db",
                  clock=harness.clock, ids=Ids())
    (credit,) = call(manifest, ctx, "treasury_status", {})["result"]["credits"]
    assert credit["remaining"] == "17.5" and "GET /key" in credit["api_detail"]
    ctx.close()


def test_schemas_describe_every_input_field() -> None:
    from butler_skill.handlers.treasury import TreasuryAutobuyInput, TreasuryStatusInput

    for model in (TreasuryStatusInput, TreasuryAutobuyInput):
        schema = model.model_json_schema()
        assert schema["additionalProperties"] is False
        assert all(p.get("description") for p in schema["properties"].values())
    assert TreasuryAutobuyInput().dry_run is True and TreasuryAutobuyInput().mode == "evaluate"
