"""spawn_agent against real loopback servers in both wire formats, with faults, number by number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from butler_skill.handlers import agents as a
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import write_keys
from tests.servers.fake_llm import (
    FakeLLM,
    dropped,
    malformed,
    ok,
    rate_limited,
    server_error,
    slow,
    start_fake_llm,
    unauthorized,
)

OA_SECRET = "sk-proj-" + "Rb4Nx8Qm1Lk7Jh3Gf6Ds9Aw2Ez5Cv0Ty" + "T3BlbkFJ" + "Pp9Oo8Ii7Uu6Yy5Tt4Rr"
AN_SECRET = "sk-ant-api03-" + "Zz1Xx2Cc3Vv4Bb5Nn6Mm7Ll8Kk9Jj0Hh1Gg2Ff3Dd4Ss5Aa6" + "-Qq7Ww8AA"
THREE_STEPS = "1. Research current LLM API prices\n2. Analyze the price changes\n3. Write a short brief"


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with start_fake_llm() as s:
        yield s


def keys_for(server: FakeLLM, *, formats: tuple[str, ...] = ("openai", "anthropic")) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = []
    if "openai" in formats:
        keys += [
            {"id": "oa-1", "provider": "openai", "scope": "acct-1", "key": OA_SECRET, "base_url": server.base_url,
             "model": "gpt-test", "price_in_per_m": 0.1, "price_out_per_m": 0.2,
             "limits": {"tokens_per_day": 50_000}},
            {"id": "oa-2", "provider": "openai", "scope": "acct-1", "key": OA_SECRET + "x",
             "base_url": server.base_url, "model": "gpt-test", "price_in_per_m": 0.1, "price_out_per_m": 0.2,
             "limits": {"tokens_per_day": 50_000}},
        ]
    if "anthropic" in formats:
        keys.append({"id": "an-1", "provider": "anthropic", "scope": "acct-2", "key": AN_SECRET,
                     "base_url": server.base_url, "model": "claude-test", "price_in_per_m": 3.0,
                     "price_out_per_m": 15.0, "limits": {"tokens_per_day": 50_000}})
    return keys


def make_ctx(tmp_path: Path, keys: list[dict[str, Any]]) -> Context:
    write_keys(tmp_path / "keys.json", keys)
    return Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")


def spawn(ctx: Context, description: str = THREE_STEPS, budget: int = 9_000, **options: Any) -> dict[str, Any]:
    options.setdefault("backoffBaseMs", 5)
    envelope = call_tool("spawn_agent", {"name": "brief", "description": description, "budget": budget,
                                         "options": options}, ctx)
    assert envelope["ok"], envelope
    return dict(envelope["result"])


def ledger_figures(ctx: Context, task_id: str) -> dict[str, int]:
    with ctx.db.read() as conn:
        used = conn.execute("SELECT COALESCE(SUM(used),0) FROM sessions WHERE task_id=?", (task_id,)).fetchone()[0]
        records = conn.execute(
            "SELECT COALESCE(SUM(total_tokens),0) FROM usage_records u JOIN sessions s ON s.id = u.session_id"
            " WHERE s.task_id = ?", (task_id,)).fetchone()[0]
        reserved = conn.execute("SELECT COALESCE(SUM(reserved),0) FROM key_day_counters").fetchone()[0]
        over = conn.execute("SELECT COUNT(*) FROM key_day_counters WHERE used + reserved > 50000").fetchone()[0]
        held = conn.execute("SELECT COALESCE(SUM(leg_held),0) FROM sessions WHERE task_id=?", (task_id,)).fetchone()[0]
    return {"used": used, "records": records, "reserved": reserved, "over_limit": over, "held": held}


@pytest.mark.parametrize("fmt", ["openai", "anthropic"])
def test_all_succeed_and_every_number_matches_the_ledger(tmp_path: Path, server: FakeLLM, fmt: str) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=(fmt,)))
    server.set_default(ok(text="done", prompt_tokens=120, completion_tokens=30))
    out = spawn(ctx)
    results, agg = out["results"], out["aggregate"]
    assert [r["status"] for r in results] == ["success"] * 3
    assert [r["subTaskId"] for r in results] == ["st-1", "st-2", "st-3"]
    assert all(r["tokensUsed"] == 150 and r["attempts"] == 1 and r["output"] == "done" for r in results)
    assert agg["totalSubTasks"] == 3 and agg["successful"] == 3 and agg["successRate"] == 1.0
    figures = ledger_figures(ctx, out["task_id"])
    assert agg["totalTokensUsed"] == sum(r["tokensUsed"] for r in results) == figures["used"] == figures["records"]
    assert figures["reserved"] == 0 and figures["held"] == 0 and figures["over_limit"] == 0
    paths = {r.path for r in server.requests}
    assert paths == ({"/v1/chat/completions"} if fmt == "openai" else {"/v1/messages"})
    # dependencies: the analysis prompt carries the research result, the brief carries the analysis
    prompts = [json.dumps(r.json) for r in server.requests]
    assert "Result of st-1" in prompts[1] and "Result of st-2" in prompts[2]
    # each call was bounded by what was left of its share (the shares sum to the 9,000 budget)
    # in the field each API expects: OpenAI's chat API max_completion_tokens, Anthropic's max_tokens, never both
    field, other = "max_tokens", "max_completion_tokens"
    if fmt == "openai":
        field, other = other, field
    assert all(0 < req.json[field] < 9_000 and other not in req.json for req in server.requests)


def test_rate_limit_rotates_to_another_account_and_rests_the_key(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server))
    server.script(rate_limited("1"))
    out = spawn(ctx, description="1. Research prices", budget=3_000)
    (r,) = out["results"]
    assert r["status"] == "success" and r["attempts"] == 2
    assert r["key_id"] == "an-1"  # oa-2 shares acct-1's rate limit, so Butler crossed to acct-2
    rotations = ctx.ledger.events("rotation")
    assert rotations[0].data["from_key_id"] == "oa-1" and rotations[0].data["reason"] == "rate_limit"
    views = {v.key_id: v for v in ctx.ledger.key_views(ctx.config.resolved(), ctx.now())}
    assert views["oa-1"].cooldown_until is not None
    attempts = a.TaskStore(ctx.db).attempts(out["task_id"])
    assert [(x["key_id"], x["outcome"]) for x in attempts] == [("oa-1", "rate_limit"), ("an-1", "success")]
    assert ledger_figures(ctx, out["task_id"])["reserved"] == 0


def test_server_error_is_retried_on_the_same_key(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    server.script(server_error(500), server_error(503))
    out = spawn(ctx, description="1. Research prices", budget=3_000)
    (r,) = out["results"]
    assert r["status"] == "success" and r["attempts"] == 3 and r["key_id"] == "oa-1"


def test_retries_exhausted_fail_and_dependants_are_cancelled(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    server.script(server_error(500), server_error(500), server_error(500))
    out = spawn(ctx, description="1. Research prices\n2. Write a brief about them", budget=6_000, maxRetries=2)
    first, second = out["results"]
    assert first["status"] == "failed" and first["attempts"] == 3 and "server" in first["error"]
    assert second["status"] == "cancelled" and "st-1" in second["error"] and second["attempts"] == 0
    assert out["aggregate"]["failed"] == 2 and out["aggregate"]["successRate"] == 0.0
    assert ledger_figures(ctx, out["task_id"])["reserved"] == 0  # shares released, nothing held


def test_malformed_answers_get_one_retry(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    server.script(malformed(), malformed())
    (r,) = spawn(ctx, description="1. Research prices", budget=3_000)["results"]
    assert r["status"] == "failed" and r["attempts"] == 2 and "bad_response" in r["error"]


def test_timeout_releases_the_share(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    server.script(slow(3.0))
    out = spawn(ctx, description="1. Research prices", budget=3_000, timeoutMs=300, maxRetries=0)
    (r,) = out["results"]
    assert r["status"] == "timeout" and r["tokensUsed"] == 0
    assert ledger_figures(ctx, out["task_id"]) | {"used": 0} == {"used": 0, "records": 0, "reserved": 0,
                                                                 "over_limit": 0, "held": 0}


def test_dropped_stream_settles_an_estimate(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    server.script(dropped(after_chunks=4, text="a partial answer that never finishes"))
    out = spawn(ctx, description="1. Research prices", budget=3_000, stream=True)
    (r,) = out["results"]
    # settled (not retried by the runner), kept, but reported as an interrupted failure, not a success
    assert r["status"] == "failed" and r["error"].startswith("interrupted") and r["output"] and r["attempts"] == 1
    with ctx.db.read() as conn:
        row = conn.execute("SELECT estimated, total_tokens FROM usage_records").fetchone()
        outcome = conn.execute("SELECT outcome FROM attempts").fetchone()["outcome"]
    assert outcome == "interrupted"
    assert row["estimated"] == 1 and row["total_tokens"] == r["tokensUsed"] > 0


def test_auth_failure_never_leaks_the_key(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    server.set_default(unauthorized(echo_auth=True))
    out = spawn(ctx, description="1. Research prices", budget=3_000)
    (r,) = out["results"]
    assert r["status"] == "failed" and "auth" in r["error"]
    text = json.dumps(out)
    with ctx.db.read() as conn:
        dump = json.dumps([list(map(tuple, conn.execute(f"SELECT * FROM {t}"))) for t in
                           ("attempts", "subtasks", "events", "key_cooldowns", "sessions")])
    for secret in (OA_SECRET, OA_SECRET + "x"):
        assert secret not in text and secret not in dump


def test_restart_between_spawn_and_aggregate_then_retry(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    server.script(server_error(500), server_error(500))
    out = spawn(ctx, description="1. Research prices\n2. Analyze them", budget=8_000, maxRetries=1)
    assert [r["status"] for r in out["results"]] == ["failed", "cancelled"]
    ctx.close()

    again = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")
    agg = call_tool("aggregate_task_results", {"task_id": out["task_id"]}, again)["result"]
    assert agg == out["aggregate"]
    retried = call_tool("retry_failed_tasks", {"task_id": out["task_id"], "options": {"backoffBaseMs": 5}},
                        again)["result"]
    assert retried["retried"] == ["st-1", "st-2"]
    assert retried["remaining_budget"] == 8_000  # nothing was spent by the failed round
    assert [r["status"] for r in retried["results"]] == ["success", "success"]
    assert retried["aggregate"]["successRate"] == 1.0
    figures = ledger_figures(again, out["task_id"])
    assert retried["aggregate"]["totalTokensUsed"] == figures["used"] == figures["records"]
    assert figures["reserved"] == 0
    again.close()


def test_unknown_task_and_bad_options(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, keys_for(server, formats=("openai",)))
    assert call_tool("aggregate_task_results", {"task_id": "task_nope"}, ctx)["error"]["code"] == "unknown_task"
    bad = call_tool("spawn_agent", {"name": "x", "description": "y", "budget": 10, "options": {"maxConcurrent": 0}},
                    ctx)
    assert bad["error"]["code"] == "invalid_input" and bad["error"]["details"]["path"] == "/options/maxConcurrent"
    too_big = call_tool("spawn_agent", {"name": "x", "description": "1. a\n2. b", "budget": 200_000}, ctx)
    assert too_big["error"]["code"] == "no_capacity"
    assert ledger_figures(ctx, "none")["reserved"] == 0 and server.requests == []


def test_rate_limit_with_nowhere_to_go_waits_it_out(tmp_path: Path, server: FakeLLM) -> None:
    keys = [k for k in keys_for(server, formats=("openai",)) if k["id"] == "oa-1"]
    ctx = make_ctx(tmp_path, keys)
    server.script(rate_limited("1"))
    (r,) = spawn(ctx, description="1. Research prices", budget=3_000)["results"]
    assert r["status"] == "success" and r["attempts"] == 2 and r["key_id"] == "oa-1"


def test_quota_exhausted_parks_the_key_until_midnight(tmp_path: Path, server: FakeLLM) -> None:
    from tests.servers.fake_llm import insufficient_quota

    ctx = make_ctx(tmp_path, keys_for(server))
    server.script(insufficient_quota())
    (r,) = spawn(ctx, description="1. Research prices", budget=3_000)["results"]
    assert r["status"] == "success" and r["key_id"] in {"oa-2", "an-1"}
    views = {v.key_id: v for v in ctx.ledger.key_views(ctx.config.resolved(), ctx.now())}
    parked = views["oa-1"].cooldown_until
    assert parked is not None and (parked.hour, parked.minute, parked.second) == (0, 0, 0) and parked > ctx.now()


def test_a_refused_plan_writes_nothing_and_calls_no_one(tmp_path: Path, server: FakeLLM) -> None:
    # spawn_agent writes its plan on the run's writer thread while connections open ahead (runner.plan_and_run):
    # a plan the keys cannot hold is refused as before, all or nothing, and no request reaches the provider.
    ctx = make_ctx(tmp_path, keys_for(server))
    try:
        with ctx.db.read() as conn:
            before = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("tasks", "sessions")]
        envelope = call_tool("spawn_agent", {"name": "brief", "description": THREE_STEPS, "budget": 500_000,
                                             "options": {"maxConcurrent": 3}}, ctx)
        assert not envelope["ok"] and envelope["error"]["code"] == "no_capacity", envelope
        with ctx.db.read() as conn:
            after = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("tasks", "sessions")]
            reserved = conn.execute("SELECT COALESCE(SUM(reserved), 0) FROM key_day_counters").fetchone()[0]
        assert after == before and reserved == 0 and server.requests == []
        assert spawn(ctx)["aggregate"]["successful"] == 3  # and the next run goes ahead
    finally:
        ctx.close()
