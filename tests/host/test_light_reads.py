"""The read tools' light path (host/quick.py + handlers/reads.py, no pydantic) against the full path and
against the Ledger's model reads, over random ledger states: usage (late, over the limit, reported costs),
rotations with cooldowns, alerts, closes, clock jumps across UTC days.

Properties:
- the light path's envelope equals dispatch.call_tool's, field for field and in the same order;
- its result is a fixed point of the output model (Model.model_validate(light) dumps back to light) and
  passes the generated output schema;
- it equals what the previous implementation built from Ledger.key_views / sessions / pending_alerts /
  events and core.reporting (the oracle below), so moving to plain values changed no figure.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.core.days import utc_day
from butler_skill.core.pricing import usd
from butler_skill.core.reporting import ProviderUsage, by_provider, key_overrun, usable
from butler_skill.handlers import tokens
from butler_skill.host import quick
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.manifest import load_manifest
from butler_skill.models import KeyState
from tests.conftest import SECRETS, Clock, Ids, write_keys

KEYS: list[dict[str, Any]] = [
    {"id": "g-1", "provider": "groq", "scope": "acct-a", "key_env": "TEST_GROQ_KEY_1",
     "limits": {"tokens_per_day": 9_000}},
    {"id": "g-2", "provider": "groq", "scope": "acct-a", "key_env": "TEST_GROQ_KEY_2",
     "limits": {"tokens_per_day": 6_000}},
    {"id": "o-1", "provider": "openai", "key_env": "TEST_OPENAI_KEY", "limits": {"tokens_per_day": 12_000}},
    {"id": "r-1", "provider": "openrouter", "model": "anthropic/claude-sonnet-4-5",
     "limits": {"tokens_per_day": 5_000}},
    {"id": "off", "provider": "custom", "enabled": True, "limits": {"tokens_per_day": 4_000}},  # no base_url
    {"id": "x-1", "provider": "anthropic", "enabled": False, "limits": {"tokens_per_day": 3_000}},
]
READS = [("get_status", {}), ("get_status", {"history_limit": 2}), ("get_status", {"history_limit": 0}),
         ("get_available_keys", {}), ("get_available_keys", {"min_tokens": 0}),
         ("get_available_keys", {"provider": "groq", "min_tokens": 2_500}), ("monitor_usage", {})]

step = st.one_of(
    st.tuples(st.just("allocate"), st.integers(1, 7_000)),
    st.tuples(st.just("report"), st.integers(0, 9_000), st.sampled_from([None, "0.0012", "3.5", "0.000001"])),
    st.tuples(st.just("rotate"), st.sampled_from(["manual", "rate_limit", "quota_exhausted", "auth", "threshold"]),
              st.sampled_from([None, 0.0, 30.0, 7_200.0])),
    st.tuples(st.just("close")),
    st.tuples(st.just("alert"), st.sampled_from(["overrun", "threshold", "note"])),
    st.tuples(st.just("tick"), st.integers(1, 20 * 3600)),
)


def _ctx(folder: Path, clock: Clock) -> Context:
    keys = write_keys(folder / "keys.json", KEYS)
    return Context(env={"HOME": str(folder), **SECRETS, "BUTLER_KEYS_PATH": str(keys),
                        "BUTLER_STATE_PATH": str(folder / "state.db")}, clock=clock, ids=Ids())


def _play(ctx: Context, clock: Clock, steps: list[tuple[Any, ...]]) -> None:
    open_ids: list[str] = []
    for n, s in enumerate(steps, start=1):
        if s[0] == "allocate":
            env = call_tool("allocate_tokens", {"tokens": s[1], "label": f"job {n}"}, ctx)
            if env["ok"]:
                open_ids.append(env["result"]["session_id"])
        elif s[0] == "report" and open_ids:
            extra = {"cost": s[2]} if s[2] else {}
            call_tool("record_usage", {"session_id": open_ids[-1], "request_id": f"req-{n}", "input_tokens": s[1],
                                       "output_tokens": s[1] // 3, **extra}, ctx)
        elif s[0] == "rotate" and open_ids:
            extra = {"retry_after_s": s[2]} if s[2] is not None else {}
            call_tool("rotate_key", {"session_id": open_ids[0], "reason": s[1], **extra}, ctx)
        elif s[0] == "close" and open_ids:
            call_tool("record_usage", {"session_id": open_ids.pop(0), "request_id": f"req-{n}", "input_tokens": 1,
                                       "output_tokens": 1, "close": True}, ctx)
        elif s[0] == "alert":
            ctx.ledger.raise_alert(alert_id=f"alr_{n}", session_id=open_ids[0] if open_ids else f"ses_{n}",
                                   key_id="o-1", kind=s[1], message=f"alert {n}", now=ctx.now())
        elif s[0] == "tick":
            clock.advance(seconds=s[1])


def _oracle(ctx: Context, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """What the handlers computed before the light path, from the Ledger's models and core.reporting."""
    now = ctx.now()
    keys = ctx.config.resolved()
    views = ctx.ledger.key_views(keys, now)
    costs = ctx.ledger.costs_today(now)
    if tool == "get_available_keys":
        model = {k.id: k.model for k in keys}
        states = [KeyState(key_id=v.key_id, provider=v.provider, scope=v.scope, model=model[v.key_id],
                           tokens_per_day=v.tokens_per_day, used=v.used, reserved=v.reserved, remaining=v.remaining,
                           cost_today=usd(costs.get(v.key_id, Decimal(0))),
                           cooldown_until=v.cooldown_until if v.cooling(now) else None)
                  for v in views if v.enabled]
        picked = [s for s in states if s.remaining >= max(args.get("min_tokens", 1), 1) and s.cooldown_until is None
                  and (args.get("provider") is None or s.provider == args["provider"])]
        return tokens.GetAvailableKeysOutput(day=utc_day(now), keys=picked).model_dump(mode="json")
    providers = by_provider(views, costs)
    if tool == "monitor_usage":
        total = by_provider(views, costs, provider_of=lambda v: "all").get("all") or ProviderUsage(
            keys=0, total_capacity=0, used_today=0, reserved=0, remaining=0, cost_today=0)
        return tokens.MonitorUsageOutput(day=utc_day(now), keys_by_provider=providers, total=total).model_dump(
            mode="json")
    sessions, alerts = ctx.ledger.sessions(open_only=True), ctx.ledger.pending_alerts(now)
    limit = args.get("history_limit", 10)
    return tokens.GetStatusOutput(
        day=utc_day(now),
        tokens=tokens.TokenSummary(
            total_keys=sum(1 for v in views if v.enabled), active_keys=sum(1 for v in views if usable(v, now)),
            active_sessions=len(sessions), pending_alerts=len(alerts), keys_by_provider=providers,
            keys_over_limit={v.key_id: key_overrun(v) for v in views if v.enabled and key_overrun(v)}),
        sessions=sessions, alerts=alerts, rotation_history=ctx.ledger.events("rotation", limit) if limit else [],
    ).model_dump(mode="json")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=14), start_s=st.integers(0, 86_399), micro=st.sampled_from([0, 1, 500_000]))
def test_light_reads_equal_the_full_path_and_the_ledger(steps: list[tuple[Any, ...]], start_s: int, micro: int) -> None:
    manifest = load_manifest()
    clock = Clock(datetime(2026, 11, 24, tzinfo=UTC) + timedelta(seconds=start_s, microseconds=micro))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _ctx(Path(tmp), clock)
        try:
            _play(ctx, clock, steps)
            for tool, args in READS:
                light = quick.call(tool, args, ctx)
                full = call_tool(tool, args, ctx)
                assert light["ok"], light
                spec = manifest.tool(tool)
                assert spec is not None
                run = quick.light_function(spec)
                given_args = quick.arguments(str(manifest.schema_path(spec.input_schema)), args)
                assert run is not None and given_args is not None  # the light path itself answered, no fallback
                assert light["result"] == run(ctx, given_args)
                assert json.dumps(light) == json.dumps(full)  # same fields, same order
                result = light["result"]
                assert spec.output_model.model_validate(result).model_dump(mode="json") == result
                jsonschema.validate(result, json.loads(manifest.schema_path(spec.output_schema).read_text()))
                assert result == _oracle(ctx, tool, args)
        finally:
            ctx.close()


def test_the_states_the_property_reaches_are_not_trivial(tmp_path: Path) -> None:
    """A fixed run through every kind of step: the reads then show sessions, alerts, rotations, cooldowns,
    and costs, so the property above compares more than empty lists."""
    clock = Clock(datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    ctx = _ctx(tmp_path, clock)
    try:
        _play(ctx, clock, [("allocate", 5_000), ("allocate", 2_000), ("report", 8_000, "0.0012"),
                           ("rotate", "rate_limit", 7_200.0), ("alert", "note"), ("allocate", 100)])
        status = quick.call("get_status", {}, ctx)["result"]
        assert status["sessions"] and status["alerts"] and status["rotation_history"]
        assert any(p["cost_today"] > 0 for p in status["tokens"]["keys_by_provider"].values())
        keys = quick.call("get_available_keys", {"min_tokens": 0}, ctx)["result"]["keys"]
        cooling = call_tool("get_status", {}, ctx)  # the full path sees the same state
        assert cooling["result"] == status
        assert len(keys) < status["tokens"]["total_keys"]  # the rested scope's keys are left out
        assert status == _oracle(ctx, "get_status", {})
    finally:
        ctx.close()


def test_an_output_the_light_path_doubts_gets_the_full_paths_answer(ctx: Context, monkeypatch: Any) -> None:
    """A non-finite figure or an output that breaks its schema is not printed: the full path runs (the same
    function under its model) and answers with the error shape, `internal`, as it does for any handler bug."""
    from butler_skill.handlers import reads

    real = reads.get_status

    def with_nan(c: Context, args: dict[str, Any]) -> dict[str, Any]:
        out = real(c, args)
        out["tokens"]["keys_by_provider"]["groq"]["cost_today"] = float("nan")
        return out

    monkeypatch.setattr(reads, "get_status", with_nan)
    env = quick.call("get_status", {}, ctx)
    assert env["ok"] is False and env["error"]["code"] == "internal" and "non-finite" in env["error"]["message"]
    assert env == call_tool("get_status", {}, ctx)

    monkeypatch.setattr(reads, "get_status", lambda c, args: {**real(c, args), "day": 20261124})
    env = quick.call("get_status", {}, ctx)
    assert env["ok"] is False and env["error"]["code"] == "internal"
    assert env == call_tool("get_status", {}, ctx)
