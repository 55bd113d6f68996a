"""The gateway against the loopback fake provider, both wire formats, streaming and not: what the client gets
and what the ledger holds afterwards, number by number."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from butler_skill.core import admission
from butler_skill.store.access_tokens import AccessTokenStore
from tests.gateway.conftest import ALL_SECRETS, Harness
from tests.servers.fake_llm import ok, rate_limited, server_error, unauthorized

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def chat(model: str = "gpt-test", max_tokens: int = 100, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": max_tokens, **kw}


def messages(model: str = "claude-test", max_tokens: int = 100, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": max_tokens, **kw}


def usage_rows(h: Harness) -> list[dict[str, Any]]:
    return h.rows("SELECT key_id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, total_tokens,"
                  " cost_usd, estimated FROM usage_records ORDER BY recorded_at, request_id")


def no_holds(h: Harness) -> None:
    assert all(c["reserved"] == 0 for c in h.counters().values()), h.counters()
    assert h.rows("SELECT COUNT(*) AS n FROM sessions WHERE state = 'open'")[0]["n"] == 0
    assert h.rows("SELECT COALESCE(SUM(reserved), 0) AS r FROM access_token_days")[0]["r"] == 0


def sse_data(text: str) -> list[Any]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


# ---- OpenAI format --------------------------------------------------------------------------------
def test_openai_non_stream_passes_the_answer_and_settles_the_reported_usage(gw: Harness) -> None:
    gw.fake.script(ok(text="Hi there.", prompt_tokens=100, cached_tokens=40, completion_tokens=25))
    r = gw.post(CHAT, chat())
    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "Hi there."
    assert body["usage"]["prompt_tokens"] == 100
    sent = gw.fake.requests[0]
    assert sent.headers["authorization"] == f"Bearer {ALL_SECRETS[0]}" or sent.headers["authorization"] == \
        f"Bearer {ALL_SECRETS[1]}"
    assert sent.json["model"] == "gpt-test" and sent.json["max_completion_tokens"] == 100
    assert "max_tokens" not in sent.json  # OpenAI's chat API field only
    [row] = usage_rows(gw)
    # prompt 100 includes 40 cached: 60 fresh input, 40 cache reads, 25 output; priced once each.
    figures = (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["total_tokens"])
    assert figures == (60, 40, 25, 125)
    # OpenAI's cached input at half the input price (a model the table does not know: the provider's ratio)
    assert row["cost_usd"] == pytest.approx((60 * 1.0 + 40 * 0.5 + 25 * 2.0) / 1e6)
    assert row["estimated"] == 0
    assert gw.counters()[row["key_id"]]["used"] == 125
    assert AccessTokenStore(gw.ctx.db).day(gw.token_id, gw.ctx.now()).used == 125
    no_holds(gw)


def test_openai_stream_adds_include_usage_and_hides_the_chunk_the_client_did_not_ask_for(gw: Harness) -> None:
    gw.fake.script(ok(text="Streaming hello from the fake.", prompt_tokens=50, completion_tokens=9))
    r = gw.post(CHAT, chat(stream=True))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_data(r.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Streaming hello from the fake."
    assert all(c["choices"] for c in chunks), "the usage-only chunk reached a client that did not ask for it"
    assert r.text.rstrip().endswith("data: [DONE]")
    assert gw.fake.requests[0].json["stream_options"] == {"include_usage": True}
    [row] = usage_rows(gw)
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"], row["estimated"]) == (50, 9, 59, 0)
    no_holds(gw)


def test_openai_stream_keeps_the_usage_chunk_when_the_client_asked(gw: Harness) -> None:
    gw.fake.script(ok(prompt_tokens=20, completion_tokens=6))
    r = gw.post(CHAT, chat(stream=True, stream_options={"include_usage": True}))
    usage = [c["usage"] for c in sse_data(r.text) if not c["choices"]]
    assert usage and usage[-1]["completion_tokens"] == 6
    assert usage_rows(gw)[0]["total_tokens"] == 26


def test_usage_in_a_non_final_chunk_is_the_one_settled(gw: Harness) -> None:
    # Running usage on every chunk, the final figures on the finish chunk, no usage-only chunk after it.
    gw.fake.script(ok(text="abcdefghijklmnop", chunk_chars=4, prompt_tokens=30, completion_tokens=12,
                      usage_location="every_chunk"))
    r = gw.post(CHAT, chat(stream=True))
    assert r.status_code == 200
    [row] = usage_rows(gw)
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (30, 12, 0)
    no_holds(gw)


def test_a_stream_without_usage_settles_an_estimate_marked_estimated(gw: Harness) -> None:
    gw.fake.script(ok(text="x" * 40, usage_location="none"))
    r = gw.post(CHAT, chat(stream=True))
    assert r.status_code == 200
    [row] = usage_rows(gw)
    prompt = gw.fake.requests[0]
    assert row["estimated"] == 1
    # the usage chunk never came: hidden output may have been billed, so the request's limit, not ceil(40 / 4)
    assert row["output_tokens"] == 100
    assert row["input_tokens"] > 0 and prompt is not None
    no_holds(gw)


def test_a_non_stream_answer_without_usage_is_estimated_too(gw: Harness) -> None:
    gw.fake.script(ok(text="y" * 20, usage_location="none"))
    assert gw.post(CHAT, chat()).status_code == 200
    [row] = usage_rows(gw)
    assert row["estimated"] == 1 and row["output_tokens"] == 5


# ---- Anthropic format -----------------------------------------------------------------------------
def test_anthropic_non_stream_with_cache_tokens(gw: Harness) -> None:
    gw.fake.script(ok(text="Bonjour.", prompt_tokens=70, cached_tokens=200, cache_write_tokens=30,
                      completion_tokens=15))
    r = gw.post(MESSAGES, messages(), headers={"x-api-key": gw.token, "anthropic-version": "2023-06-01"})
    assert r.status_code == 200
    assert r.json()["content"][0]["text"] == "Bonjour."
    sent = gw.fake.requests[0]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == ALL_SECRETS[2]
    [row] = usage_rows(gw)
    assert (row["key_id"], row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"],
            row["output_tokens"], row["total_tokens"]) == ("an-1", 70, 200, 30, 15, 315)
    # cache writes at 1.25x the input price (Anthropic's 5-minute writes), reads at 0.1x
    assert row["cost_usd"] == pytest.approx((70 * 3.0 + 200 * 0.3 + 30 * 3.75 + 15 * 15.0) / 1e6)
    no_holds(gw)


def test_anthropic_stream_takes_the_last_cumulative_output_count(gw: Harness) -> None:
    gw.fake.script(ok(text="one two three four", chunk_chars=5, prompt_tokens=40, completion_tokens=11,
                      usage_location="every_chunk"))
    r = gw.post(MESSAGES, messages(stream=True))
    assert r.status_code == 200
    assert "event: message_stop" in r.text
    [row] = usage_rows(gw)
    assert (row["input_tokens"], row["output_tokens"], row["estimated"]) == (40, 11, 0)
    no_holds(gw)


# ---- access ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer butler_at_wrong"}, {"x-api-key": "sk-nope"},
                                     {"authorization": "Basic abc"}])
def test_without_a_valid_token_the_answer_is_401_and_costs_nothing(gw: Harness, headers: dict[str, str]) -> None:
    for path, body in ((CHAT, chat()), (MESSAGES, messages())):
        r = httpx.post(gw.url + path, json=body, headers=headers, timeout=10)
        assert r.status_code == 401
    assert httpx.get(gw.url + "/v1/models", headers=headers, timeout=10).status_code == 401
    assert gw.fake.requests == []
    assert gw.counters() == {} and usage_rows(gw) == []
    assert gw.rows("SELECT COUNT(*) AS n FROM sessions")[0]["n"] == 0


def test_a_revoked_token_stops_working(gw: Harness) -> None:
    assert gw.post(CHAT, chat()).status_code == 200
    AccessTokenStore(gw.ctx.db).revoke(gw.token_id, gw.ctx.now())
    time.sleep(1.1)  # the gateway caches a token check for at most a second
    assert gw.post(CHAT, chat()).status_code == 401
    assert len(gw.fake.requests) == 1


def test_models_lists_what_the_keys_serve(gw: Harness) -> None:
    r = httpx.get(gw.url + "/v1/models", headers=gw.headers(), timeout=10)
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == ["auto", "gpt-test", "claude-test"]


def test_an_unknown_model_is_404_in_the_clients_format(gw: Harness) -> None:
    r = gw.post(CHAT, chat(model="gpt-nope"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = gw.post(MESSAGES, messages(model="gpt-test"))  # an OpenAI key does not serve the Anthropic format
    assert r.status_code == 404 and r.json()["type"] == "error"
    assert gw.fake.requests == []


# ---- failures ------------------------------------------------------------------------------------
def test_a_rate_limit_moves_the_call_to_another_account_and_rests_the_first(gw: Harness) -> None:
    gw.fake.script(rate_limited("7"), ok(prompt_tokens=10, completion_tokens=5))
    r = gw.post(CHAT, chat())
    assert r.status_code == 200
    first, second = gw.fake.requests
    assert first.headers["authorization"] != second.headers["authorization"]
    [row] = usage_rows(gw)
    failed = "oa-1" if row["key_id"] == "oa-2" else "oa-2"
    [cool] = gw.rows("SELECT * FROM key_cooldowns WHERE key_id = ?", failed)
    assert cool["reason"] == "rate_limit"
    rotation = gw.rows("SELECT data FROM events WHERE kind = 'rotation'")
    assert json.loads(rotation[0]["data"])["from_key_id"] == failed
    assert gw.counters()[failed] == {"used": 0, "reserved": 0}
    no_holds(gw)


def test_rate_limited_everywhere_answers_429_with_retry_after_and_costs_nothing(gw: Harness) -> None:
    gw.fake.set_default(rate_limited("30"))
    r = gw.post(CHAT, chat())
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30"
    assert r.json()["error"]["code"] == "upstream_rate_limit"
    assert len(gw.fake.requests) == 2  # one per account, never the same rested account again
    assert usage_rows(gw) == []
    no_holds(gw)
    assert {c["key_id"] for c in gw.rows("SELECT key_id FROM key_cooldowns")} == {"oa-1", "oa-2"}


def test_a_server_error_is_retried_on_the_same_key(gw: Harness) -> None:
    gw.fake.script(server_error(503), ok(prompt_tokens=8, completion_tokens=4))
    r = gw.post(CHAT, chat())
    assert r.status_code == 200
    first, second = gw.fake.requests
    assert first.headers["authorization"] == second.headers["authorization"]
    assert usage_rows(gw)[0]["total_tokens"] == 12
    no_holds(gw)


def test_server_errors_to_the_end_are_a_502_and_cost_nothing(gw: Harness) -> None:
    gw.fake.set_default(server_error(500))
    r = gw.post(MESSAGES, messages())
    assert r.status_code == 502
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"
    assert len(gw.fake.requests) == 3  # the retry policy's three attempts
    assert usage_rows(gw) == []
    no_holds(gw)


def test_a_provider_echoing_the_key_never_reaches_the_client(gw: Harness) -> None:
    gw.fake.set_default(unauthorized(echo_auth=True))
    # The first call meets the refusal on both OpenAI keys (each then rests 5 h); the next finds no key awake.
    for path, body, status in ((CHAT, chat(), 502), (CHAT, chat(stream=True), 429), (MESSAGES, messages(), 502)):
        r = gw.post(path, body)
        assert r.status_code == status, r.text
        for secret in ALL_SECRETS:
            assert secret not in r.text and secret[:20] not in r.text
    assert usage_rows(gw) == []
    no_holds(gw)


def test_a_client_error_from_the_provider_keeps_its_status(gw: Harness) -> None:
    gw.fake.script(ok(status=400, error_type="invalid_request_error", error_message="bad temperature"))
    r = gw.post(CHAT, chat(temperature=9))
    assert r.status_code == 400
    assert "bad temperature" in r.json()["error"]["message"]
    assert len(gw.fake.requests) == 1
    no_holds(gw)


def test_prompt_estimate_is_what_the_gateway_reserves() -> None:
    assert admission.prompt_estimate(401) == 101
    assert admission.need(101, 100) == 201
