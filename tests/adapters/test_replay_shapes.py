"""Documented response shapes (OpenAI, Groq, Anthropic incl. streaming events, OpenRouter with cost and BYOK)
replayed by the loopback fake server through spawn_agent, and reported through record_usage / submit_result.

Every expected figure is computed here from the provider's published price list (not from Butler's table),
exactly in Decimal: "to the cent" is checked to the pico-dollar.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.conftest import write_keys
from tests.servers.fake_llm import FakeLLM, Reply, start_fake_llm

D = Decimal
M = D(1_000_000)
OA_SECRET = "sk-proj-" + "Rb4Nx8Qm1Lk7Jh3Gf6Ds9Aw2Ez5Cv0Ty" + "T3BlbkFJ" + "Pp9Oo8Ii7Uu6Yy5Tt4Rr"
THREE = "1. Research current LLM API prices\n2. Analyze the price changes\n3. Write a short brief"
ONE = "1. Research current LLM API prices"


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with start_fake_llm() as s:
        yield s


def ctx_for(tmp_path: Path, server: FakeLLM, provider: str, model: str, **extra: Any) -> Context:
    write_keys(tmp_path / "keys.json", [{"id": "k1", "provider": provider, "key": OA_SECRET, "model": model,
                                         "base_url": server.base_url, "limits": {"tokens_per_day": 2_000_000},
                                         **extra}])
    return Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")


def spawn(ctx: Context, description: str = ONE, budget: int = 9_000, **options: Any) -> dict[str, Any]:
    options.setdefault("backoffBaseMs", 5)
    env = call_tool("spawn_agent", {"name": "t", "description": description, "budget": budget, "options": options},
                    ctx)
    assert env["ok"], env
    return dict(env["result"])


def settled(ctx: Context) -> dict[str, Any]:
    with ctx.db.read() as conn:
        row = conn.execute(
            "SELECT COUNT(*) AS n, SUM(input_tokens) AS inp, SUM(output_tokens) AS out, SUM(cache_read_tokens) AS cr,"
            " SUM(cache_write_tokens) AS cw, SUM(cache_write_1h_tokens) AS cw1h, SUM(web_search_requests) AS ws,"
            " SUM(cost_pusd) AS pusd, SUM(upstream_cost_pusd) AS up, SUM(estimated) AS est FROM usage_records"
        ).fetchone()
        counter = conn.execute("SELECT SUM(cost_pusd) AS pusd FROM key_day_counters").fetchone()
    figures = dict(row)
    figures["cost"] = D(figures.pop("pusd") or 0) / D(10) ** 12
    figures["up"] = D(figures["up"]) / D(10) ** 12 if figures["up"] is not None else None
    assert D(counter["pusd"] or 0) / D(10) ** 12 == figures["cost"]  # the key's counter agrees with the records
    return figures


def sse(*events: tuple[str | None, dict[str, Any] | str]) -> tuple[str, ...]:
    out = []
    for name, data in events:
        body = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {body}\n\n")
    return tuple(out)


# ---- OpenAI ------------------------------------------------------------------------------------------
OPENAI_CACHED = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Prices fell.", "refusal": None,
                                         "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_06737a9306",
}


def test_openai_cached_input_at_half_price_and_a_repeated_id_on_every_sub_task(tmp_path: Path,
                                                                              server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "openai", "gpt-4o-mini")
    server.set_default(Reply(json_body=OPENAI_CACHED))  # every sub-task gets the same response id
    out = spawn(ctx, THREE)
    assert [r["status"] for r in out["results"]] == ["success"] * 3
    assert all(r["tokensUsed"] == 1163 for r in out["results"])
    s = settled(ctx)
    assert (s["n"], s["inp"], s["cr"], s["out"]) == (3, 3 * 93, 3 * 1024, 3 * 46)  # nothing lost, nothing twice
    # gpt-4o-mini: $0.15/M input, $0.075/M cached input, $0.60/M output
    assert s["cost"] == 3 * (93 * D("0.15") + 1024 * D("0.075") + 46 * D("0.60")) / M == D("0.00035505")
    # the current chat API's field, never above gpt-4o-mini's 16,384 output cap
    bodies = [r.json for r in server.requests]
    assert all("max_tokens" not in b and 0 < b["max_completion_tokens"] <= 16_384 for b in bodies)


def test_openai_quarter_price_cache_and_reasoning_inside_output(tmp_path: Path, server: FakeLLM) -> None:
    body = json.loads(json.dumps(OPENAI_CACHED))
    body["model"] = "gpt-4.1-2025-04-14"
    body["usage"] = {"prompt_tokens": 20_000, "completion_tokens": 1_500, "total_tokens": 21_500,
                     "prompt_tokens_details": {"cached_tokens": 16_000},
                     "completion_tokens_details": {"reasoning_tokens": 1_200}}
    ctx = ctx_for(tmp_path, server, "openai", "gpt-4.1")
    server.set_default(Reply(json_body=body))
    spawn(ctx, budget=30_000)
    s = settled(ctx)
    assert (s["inp"], s["cr"], s["out"]) == (4_000, 16_000, 1_500)  # reasoning is inside the 1,500
    # gpt-4.1: $2/M input, $0.50/M cached (0.25x), $8/M output
    assert s["cost"] == (4_000 * D(2) + 16_000 * D("0.5") + 1_500 * D(8)) / M == D("0.028")


# ---- Groq --------------------------------------------------------------------------------------------
GROQ = {
    "id": "chatcmpl-f51b2cd2-bef7-417e-964e-a08f0b513c22", "object": "chat.completion", "created": 1730241104,
    "model": "llama-3.3-70b-versatile",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Fast answer."}, "logprobs": None,
                 "finish_reason": "stop"}],
    "usage": {"queue_time": 0.037493756, "prompt_tokens": 18, "prompt_time": 0.000680594, "completion_tokens": 556,
              "completion_time": 0.463333333, "total_tokens": 574, "total_time": 0.464013927},
    "system_fingerprint": "fp_179b0f92c9", "x_groq": {"id": "req_01jbd6g2qdfw2adyrt2az8hz4w"},
}


def test_groq_json_and_stream_with_usage_under_x_groq(tmp_path: Path, server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "groq", "llama-3.3-70b-versatile")
    server.set_default(Reply(json_body=GROQ))
    spawn(ctx)
    chunk = {"id": "chatcmpl-g1", "object": "chat.completion.chunk", "created": 1, "model": "llama-3.3-70b-versatile",
             "system_fingerprint": "fp_1"}
    server.set_default(Reply(sse_events=sse(
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                      "finish_reason": None}], "x_groq": {"id": "req_01"}}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "Fast answer."}, "logprobs": None,
                                      "finish_reason": None}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
                "x_groq": {"id": "req_01", "usage": GROQ["usage"]}}),
        (None, "[DONE]"))))
    spawn(ctx, stream=True)
    s = settled(ctx)
    assert (s["n"], s["inp"], s["out"], s["est"]) == (2, 36, 1_112, 0)
    # Groq llama-3.3-70b-versatile: $0.59/M input, $0.79/M output
    assert s["cost"] == 2 * (18 * D("0.59") + 556 * D("0.79")) / M == D("0.00089972")
    assert all(r.json["max_tokens"] <= 32_768 for r in server.requests)


# ---- Anthropic ---------------------------------------------------------------------------------------
ANTHROPIC_SEARCH = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "llm prices"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": [
            {"type": "web_search_result", "url": "https://example.com", "title": "Prices",
             "encrypted_content": "EqgfCioIARgBIiQ3", "page_age": "April 30, 2025"}]},
        {"type": "text", "text": "Prices fell by half."},
    ],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 2_048, "cache_creation_input_tokens": 5_000, "cache_read_input_tokens": 12_000,
              "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 3_000},
              "output_tokens": 503, "server_tool_use": {"web_search_requests": 1}, "service_tier": "standard"},
}
# claude-sonnet-4-5: $3/M input, $3.75/M 5-minute writes, $6/M 1-hour writes, $0.30/M reads, $15/M output,
# $10 per 1,000 searches
SEARCH_COST = (2_048 * D(3) + 2_000 * D("3.75") + 3_000 * D(6) + 12_000 * D("0.30") + 503 * D(15)) / M + D("0.01")


def test_anthropic_cache_write_split_reads_and_web_search_fee(tmp_path: Path, server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "anthropic", "claude-sonnet-4-5")
    server.set_default(Reply(json_body=ANTHROPIC_SEARCH))
    out = spawn(ctx, budget=40_000)
    (r,) = out["results"]
    assert r["status"] == "success" and r["output"] == "Prices fell by half."
    s = settled(ctx)
    assert (s["inp"], s["cw"], s["cw1h"], s["cr"], s["out"], s["ws"]) == (2_048, 5_000, 3_000, 12_000, 503, 1)
    assert s["cost"] == SEARCH_COST == D("0.052789")
    assert "max_completion_tokens" not in server.requests[0].json and server.requests[0].json["max_tokens"] <= 64_000


def anthropic_stream(*, cut_after_deltas: int | None = None, final: dict[str, Any] | None = None) -> tuple[str, ...]:
    start_usage = {"input_tokens": 25, "cache_creation_input_tokens": 4_000, "cache_read_input_tokens": 6_000,
                   "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 3_000},
                   "output_tokens": 1}
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5-20250929", "stop_reason": None, "stop_sequence": None,
            "usage": start_usage}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    for i, piece in enumerate(["Hello", "!", " Prices", " fell."]):
        if cut_after_deltas is not None and i == cut_after_deltas:
            return sse(*events)
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": piece}}))
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": final or {"output_tokens": 15}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return sse(*events)


def test_anthropic_stream_cumulative_usage_with_search_in_message_delta(tmp_path: Path, server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "anthropic", "claude-sonnet-4-5")
    final = {"input_tokens": 25, "cache_creation_input_tokens": 4_000, "cache_read_input_tokens": 6_000,
             "output_tokens": 510, "server_tool_use": {"web_search_requests": 2}}
    server.set_default(Reply(sse_events=anthropic_stream(final=final)))
    out = spawn(ctx, budget=40_000, stream=True)
    assert out["results"][0]["status"] == "success"
    s = settled(ctx)
    # the 5m/1h split came in message_start and stays; output and searches are the last cumulative values
    assert (s["inp"], s["cw"], s["cw1h"], s["cr"], s["out"], s["ws"], s["est"]) == (
        25, 4_000, 3_000, 6_000, 510, 2, 0)
    assert s["cost"] == (25 * D(3) + 1_000 * D("3.75") + 3_000 * D(6) + 6_000 * D("0.3") + 510 * D(15)) / M + D(
        "0.02")


def test_a_cut_anthropic_stream_is_bounded_by_the_output_cap_and_reported_interrupted(
        tmp_path: Path, server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "anthropic", "claude-sonnet-4-5")
    server.set_default(Reply(sse_events=anthropic_stream(cut_after_deltas=2), drop_after_chunks=5))
    out = spawn(ctx, budget=200_000, stream=True, maxRetries=0)
    (r,) = out["results"]
    assert r["status"] == "failed" and r["error"].startswith("interrupted") and r["output"] == "Hello!"
    sent = server.requests[0].json["max_tokens"]
    assert sent == 64_000  # the share is ~200,000; claude-sonnet-4-5 emits at most 64,000
    s = settled(ctx)
    # input as the stream reported it in message_start; output pessimistic but never above what the model can emit
    assert (s["inp"], s["cw"], s["cw1h"], s["cr"], s["out"], s["est"]) == (25, 4_000, 3_000, 6_000, 64_000, 1)
    assert s["cost"] == (25 * D(3) + 1_000 * D("3.75") + 3_000 * D(6) + 6_000 * D("0.3") + 64_000 * D(15)) / M


def test_a_stream_whose_usage_chunk_was_lost_after_the_finish_is_settled_pessimistically(
        tmp_path: Path, server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "openai", "gpt-4o-mini")
    chunk = {"id": "chatcmpl-lost", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    server.set_default(Reply(sse_events=sse(
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Done."},
                                      "finish_reason": None}], "usage": None}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}),
        (None, "[DONE]"))))
    out = spawn(ctx, budget=100_000, stream=True)
    (r,) = out["results"]
    assert r["status"] == "success"  # the answer is whole
    s = settled(ctx)
    assert s["est"] == 1 and s["out"] == 16_384  # marked, and at the cap rather than ceil(5 / 4)
    with ctx.db.read() as conn:
        note = conn.execute("SELECT error FROM attempts").fetchone()["error"]
    assert "usage lost" in note


# ---- OpenRouter --------------------------------------------------------------------------------------
def openrouter(usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "gen-1752839283-4ZBXDXnqS4DXUVyWdMoL", "provider": "OpenAI", "model": "openai/gpt-4o-mini",
            "object": "chat.completion", "created": 1752839283,
            "choices": [{"logprobs": None, "finish_reason": "stop", "native_finish_reason": "stop", "index": 0,
                         "message": {"role": "assistant", "content": "Hi.", "refusal": None, "reasoning": None}}],
            "usage": usage}


def test_openrouter_reported_cost_is_kept_exactly(tmp_path: Path, server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "openrouter", "openai/gpt-4o-mini")
    server.set_default(Reply(json_body=openrouter({
        "prompt_tokens": 14, "completion_tokens": 23, "total_tokens": 37, "cost": 0.00001623, "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "cost_details": {"upstream_inference_cost": None},
        "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0}})))
    spawn(ctx)
    s = settled(ctx)
    assert (s["inp"], s["out"]) == (14, 23) and s["cost"] == D("0.00001623") and s["up"] is None  # not 0.000016


def test_openrouter_byok_counts_the_fee_and_the_upstream_bill(tmp_path: Path, server: FakeLLM) -> None:
    ctx = ctx_for(tmp_path, server, "openrouter", "openai/gpt-4o-mini")
    server.set_default(Reply(json_body=openrouter({
        "prompt_tokens": 14, "completion_tokens": 23, "total_tokens": 37, "cost": 0.00000081, "is_byok": True,
        "prompt_tokens_details": {"cached_tokens": 0}, "cost_details": {"upstream_inference_cost": 0.0000162},
        "completion_tokens_details": {"reasoning_tokens": 0}})))
    spawn(ctx)
    s = settled(ctx)
    assert s["cost"] == D("0.00001701") and s["up"] == D("0.0000162")


# ---- record_usage / submit_result ----------------------------------------------------------------------
def ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["ok"], envelope
    return dict(envelope["result"])


def host_ctx(tmp_path: Path, provider: str, model: str) -> Context:
    write_keys(tmp_path / "keys.json", [{"id": "k1", "provider": provider, "key_env": "X", "model": model,
                                         "limits": {"tokens_per_day": 2_000_000}}])
    return Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")


def test_record_usage_prices_the_anthropic_split_and_searches(tmp_path: Path) -> None:
    ctx = host_ctx(tmp_path, "anthropic", "claude-sonnet-4-5")
    sid = ok(call_tool("allocate_tokens", {"prd_text": "x", "tokens": 100_000}, ctx))["session_id"]
    u = ANTHROPIC_SEARCH["usage"]
    r = ok(call_tool("record_usage", {
        "session_id": sid, "request_id": ANTHROPIC_SEARCH["id"], "input_tokens": u["input_tokens"],
        "output_tokens": u["output_tokens"], "cache_read_tokens": u["cache_read_input_tokens"],
        "cache_write_tokens": u["cache_creation_input_tokens"],
        "cache_write_1h_tokens": u["cache_creation"]["ephemeral_1h_input_tokens"],
        "web_search_requests": u["server_tool_use"]["web_search_requests"]}, ctx))
    assert D(r["cost_exact"]) == SEARCH_COST and r["cost"] == float(SEARCH_COST)
    # A 1-hour part larger than the writes is schema-valid (the schema cannot compare two fields), so it is read
    # as "all writes were 1-hour" and priced once, never as extra tokens.
    over = ok(call_tool("record_usage", {"session_id": sid, "request_id": "r2", "input_tokens": 1, "output_tokens": 1,
                                         "cache_write_tokens": 5, "cache_write_1h_tokens": 6}, ctx))
    assert D(over["cost_exact"]) == (1 * D(3) + 5 * D(6) + 1 * D(15)) / M
    assert settled(ctx)["n"] == 2


def test_record_usage_keeps_a_reported_cost_and_scopes_ids_by_session(tmp_path: Path) -> None:
    ctx = host_ctx(tmp_path, "openrouter", "openai/gpt-4o-mini")
    a = ok(call_tool("allocate_tokens", {"prd_text": "x", "tokens": 10_000}, ctx))["session_id"]
    b = ok(call_tool("allocate_tokens", {"prd_text": "y", "tokens": 10_000}, ctx))["session_id"]
    report = {"request_id": "gen-same", "input_tokens": 14, "output_tokens": 23, "cost": "0.00001623"}
    first = ok(call_tool("record_usage", {"session_id": a, **report}, ctx))
    assert first["cost_exact"] == "0.00001623" and not first["duplicate"]
    again = ok(call_tool("record_usage", {"session_id": a, **report}, ctx))
    assert again["duplicate"]  # the same report twice counts once
    other = ok(call_tool("record_usage", {"session_id": b, **report, "cost": 0.00001623}, ctx))
    assert not other["duplicate"]  # the same provider id on another session is another call
    byok = ok(call_tool("record_usage", {"session_id": b, "request_id": "gen-byok", "input_tokens": 14,
                                         "output_tokens": 23, "cost": 0.00000081, "upstream_cost": 0.0000162,
                                         "byok": True}, ctx))
    assert byok["cost_exact"] == "0.00001701"
    s = settled(ctx)
    assert s["n"] == 3 and s["cost"] == D("0.00001623") * 2 + D("0.00001701") and s["up"] == D("0.0000162")
    assert ok(call_tool("monitor_usage", {}, ctx))["total"]["cost_today"] == float(s["cost"])


def test_submit_result_accepts_the_split_and_fees(tmp_path: Path) -> None:
    ctx = host_ctx(tmp_path, "anthropic", "claude-sonnet-4-5")
    plan = ok(call_tool("plan_agents", {"name": "t", "description": ONE, "budget": 40_000}, ctx))
    sid = plan["agents"][0]["session_id"]
    u = ANTHROPIC_SEARCH["usage"]
    ok(call_tool("submit_result", {"session_id": sid, "status": "success", "output": "done", "usage": {
        "input_tokens": u["input_tokens"], "output_tokens": u["output_tokens"],
        "cache_read_tokens": u["cache_read_input_tokens"], "cache_write_tokens": u["cache_creation_input_tokens"],
        "cache_write_1h_tokens": 3_000, "web_search_requests": 1}}, ctx))
    s = settled(ctx)
    assert s["cost"] == SEARCH_COST and (s["cw1h"], s["ws"]) == (3_000, 1)


# ---- the gateway ---------------------------------------------------------------------------------------
@pytest.fixture
def gateway(tmp_path: Path, server: FakeLLM) -> Iterator[Any]:
    from tests.gateway.conftest import start_harness

    keys = [{"id": "an-1", "provider": "anthropic", "key": OA_SECRET.replace("sk-proj-", "sk-ant-api03-"),
             "base_url": server.base_url, "model": "claude-sonnet-4-5", "limits": {"tokens_per_day": 2_000_000}},
            {"id": "or-1", "provider": "openrouter", "key": OA_SECRET, "base_url": server.base_url,
             "model": "openai/gpt-4o-mini", "limits": {"tokens_per_day": 2_000_000}}]
    h = start_harness(tmp_path, server, keys)
    try:
        yield h
    finally:
        h.server.close()
        h.ctx.close()


def test_the_gateway_settles_documented_answers_to_the_pico_dollar(gateway: Any, server: FakeLLM) -> None:
    anthropic_headers = {"x-api-key": gateway.token, "anthropic-version": "2023-06-01"}
    ask = {"model": "claude-sonnet-4-5", "max_tokens": 100_000, "messages": [{"role": "user", "content": "Prices?"}]}
    server.script(Reply(json_body=ANTHROPIC_SEARCH))
    assert gateway.post("/v1/messages", ask, headers=anthropic_headers).status_code == 200
    assert server.requests[-1].json["max_tokens"] == 64_000  # asked 100,000; the model emits at most 64,000
    final = {"input_tokens": 25, "cache_creation_input_tokens": 4_000, "cache_read_input_tokens": 6_000,
             "output_tokens": 510, "server_tool_use": {"web_search_requests": 2}}
    server.script(Reply(sse_events=anthropic_stream(final=final)))
    assert gateway.post("/v1/messages", {**ask, "stream": True}, headers=anthropic_headers).status_code == 200
    server.script(Reply(json_body=openrouter({
        "prompt_tokens": 14, "completion_tokens": 23, "total_tokens": 37, "cost": 0.00000081, "is_byok": True,
        "cost_details": {"upstream_inference_cost": 0.0000162}})))
    chat = {"model": "openai/gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}
    assert gateway.post("/v1/chat/completions", chat).status_code == 200
    rows = gateway.rows("SELECT key_id, cost_pusd, upstream_cost_pusd, cache_write_1h_tokens, web_search_requests"
                        " FROM usage_records ORDER BY recorded_at, request_id")
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(row["key_id"], []).append(row)
    stream_cost = (25 * D(3) + 1_000 * D("3.75") + 3_000 * D(6) + 6_000 * D("0.3") + 510 * D(15)) / M + D("0.02")
    assert sorted(D(r["cost_pusd"]) / D(10) ** 12 for r in by_key["an-1"]) == sorted([SEARCH_COST, stream_cost])
    assert sorted((r["cache_write_1h_tokens"], r["web_search_requests"]) for r in by_key["an-1"]) == [
        (3_000, 1), (3_000, 2)]
    (byok,) = by_key["or-1"]
    assert D(byok["cost_pusd"]) / D(10) ** 12 == D("0.00001701") and byok["upstream_cost_pusd"] == 16_200_000
