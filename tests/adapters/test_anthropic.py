"""Anthropic Messages adapter: request shape, usage normalisation, streams, headers, failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest

from butler_skill.adapters.providers.anthropic import ANTHROPIC_VERSION, AnthropicClient
from butler_skill.adapters.providers.base import CompletionResult, ProviderFailure
from tests.adapters._pricing import price
from tests.adapters.conftest import loopback_http
from tests.servers.fake_llm import FakeLLM, dropped, ok, overloaded, rate_limited, unauthorized

T = TypeVar("T")
KEY = "sk-ant-api03-" + "Jq2Wm8Xr5Tz1Kp7Nv4Lb9Hc3Fd6Gs0Ya" + "Ue8Io2Pa5Sd7Fg1Hj4Kl6Zx9Cv3Bn0Mq" + "-AA1234AA"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Summarise the quarter."},
]
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)




def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def call_loopback(server: FakeLLM, **kw: Any) -> CompletionResult:
    async with loopback_http() as http:
        client = AnthropicClient(http, server.base_url, KEY)
        return await client.complete(kw.pop("model", "claude-test"), kw.pop("messages", MESSAGES),
                                     kw.pop("max_tokens", 128), **kw)


def mock_call(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> CompletionResult:
    async def go() -> CompletionResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = AnthropicClient(http, "https://api.anthropic.example/v1", KEY, clock=lambda: NOW)
            return await client.complete("claude-test", kw.pop("messages", MESSAGES), kw.pop("max_tokens", 128), **kw)

    return run(go())


def failure_of(fn: Callable[[], object]) -> ProviderFailure:
    with pytest.raises(ProviderFailure) as info:
        fn()
    return info.value


def events(*pairs: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in pairs)


def start(input_tokens: int = 25, **usage: int) -> tuple[str, dict[str, Any]]:
    return ("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage}}})


def text(t: str) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": t}})


def message_delta(output_tokens: int, stop: str | None = "end_turn") -> tuple[str, dict[str, Any]]:
    return ("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop},
                              "usage": {"output_tokens": output_tokens}})


STOP = ("message_stop", {"type": "message_stop"})


def stream_response(body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream", **(headers or {})})


# ------------------------------------------------------------------------------------------- loopback


def test_request_shape_and_usage(fake_llm: FakeLLM) -> None:
    fake_llm.script(ok(text="Revenue rose.", prompt_tokens=10, completion_tokens=5, cached_tokens=300,
                       cache_write_tokens=200, request_id="msg_abc"))
    result = run(call_loopback(fake_llm, extra={"temperature": 0.1}))
    (req,) = fake_llm.requests
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == KEY and req.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "authorization" not in req.headers
    assert req.json == {
        "model": "claude-test", "max_tokens": 128, "stream": False, "temperature": 0.1,
        "system": "You are terse.", "messages": [{"role": "user", "content": "Summarise the quarter."}],
    }
    assert result.text == "Revenue rose." and result.finish_reason == "end_turn"
    assert result.request_id == "msg_abc"
    u = result.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (10, 300, 200, 5)
    assert u.total_input_tokens == 510 and u.total_tokens == 515 and not u.estimated
    # each part priced once: 10 x $3 + 300 x $0.30 + 200 x $3.75 + 5 x $15, per million
    assert price(u, 3.0, 15.0, 0.3, 3.75) == Decimal(30 + 90 + 750 + 75) / 1_000_000


def test_stream_takes_the_last_cumulative_output_count(fake_llm: FakeLLM) -> None:
    # every_chunk: message_delta after each piece with running counts 1, 2, 3 ... then the final 9
    fake_llm.script(ok(text="abcdefghijklmnopqrstuvwxyz0123", completion_tokens=9, prompt_tokens=14,
                       usage_location="every_chunk"))
    result = run(call_loopback(fake_llm, stream=True))
    assert result.text == "abcdefghijklmnopqrstuvwxyz0123" and not result.interrupted
    assert (result.usage.input_tokens, result.usage.output_tokens) == (14, 9)  # not 1+2+3+9
    assert result.request_id == "req-1"  # message_start id (the fake uses the same id as its header)
    assert fake_llm.requests[0].json["stream"] is True


def test_stream_drop_keeps_the_real_input_and_assumes_max_output(fake_llm: FakeLLM) -> None:
    # events: message_start, content_block_start, ping, then 8-char deltas; drop after two deltas
    fake_llm.script(dropped(after_chunks=5, text="0123456789abcdefXYZ", prompt_tokens=40, cached_tokens=60))
    result = run(call_loopback(fake_llm, stream=True, max_tokens=256))
    assert result.text == "0123456789abcdef" and result.interrupted
    assert result.usage.estimated
    assert (result.usage.input_tokens, result.usage.cache_read_tokens) == (40, 60)  # from message_start
    assert result.usage.output_tokens == 256


def test_rate_limited_with_headers(fake_llm: FakeLLM) -> None:
    fake_llm.script(rate_limited("12", error_type="rate_limit_error",
                                 headers={"anthropic-ratelimit-requests-remaining": "0"}))
    failure = failure_of(lambda: run(call_loopback(fake_llm)))
    assert (failure.kind, failure.retry_after_s, failure.rate_limit.remaining_requests) == ("rate_limit", 12.0, 0)
    assert failure.request_id == "req-1"


def test_overloaded_529_is_a_server_failure(fake_llm: FakeLLM) -> None:
    fake_llm.script(overloaded())
    failure = failure_of(lambda: run(call_loopback(fake_llm)))
    assert (failure.kind, failure.status) == ("server", 529)
    assert "Overloaded" in failure.message


@pytest.mark.parametrize("stream", [False, True])
def test_echoed_api_key_never_leaks(fake_llm: FakeLLM, stream: bool) -> None:
    fake_llm.script(unauthorized(echo_auth=True))
    failure = failure_of(lambda: run(call_loopback(fake_llm, stream=stream)))
    assert failure.kind == "auth"
    for blob in (str(failure), repr(failure), json.dumps(failure.to_payload())):
        assert KEY not in blob and KEY[:24] not in blob


# ----------------------------------------------------------------------------------------- MockTransport


def test_rate_limit_reset_headers_are_rfc3339_against_the_response_date() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "id": "msg_1", "type": "message", "content": [{"type": "text", "text": "ok"}], "model": "claude-x",
            "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1},
        }, headers={
            "date": "Tue, 24 Nov 2026 10:00:00 GMT",
            "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": "2026-11-24T10:00:01Z",
            "anthropic-ratelimit-tokens-limit": "40000", "anthropic-ratelimit-tokens-remaining": "39000",
            "anthropic-ratelimit-tokens-reset": "2026-11-24T10:00:30+00:00",
            "anthropic-ratelimit-input-tokens-remaining": "30000",
            "anthropic-ratelimit-output-tokens-reset": "2026-11-24T10:00:06Z",
            "request-id": "req_header",
        })

    result = mock_call(handler)
    rl = result.rate_limit
    assert (rl.limit_requests, rl.remaining_requests, rl.limit_tokens, rl.remaining_tokens) == (50, 49, 40000, 39000)
    assert (rl.reset_requests_s, rl.reset_tokens_s, rl.reset_output_tokens_s) == (1.0, 30.0, 6.0)
    assert rl.remaining_input_tokens == 30000
    assert rl.reset_tokens_at == datetime(2026, 11, 24, 10, 0, 30, tzinfo=UTC)
    assert result.request_id == "msg_1"


def test_system_messages_merge_with_extra_system() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"content": [], "usage": {"input_tokens": 1, "output_tokens": 0}})

    msgs = [{"role": "system", "content": [{"type": "text", "text": "Part two."}]}, {"role": "user", "content": "hi"}]
    result = mock_call(handler, messages=msgs, extra={"system": "Part one."})
    assert seen[0]["system"] == "Part one.\n\nPart two."
    assert seen[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert result.text == ""


def test_stream_with_cache_usage_and_ping() -> None:
    body = events(start(input_tokens=5, cache_read_input_tokens=1000, cache_creation_input_tokens=20),
                  ("ping", {"type": "ping"}), text("Hel"), text("lo"), message_delta(3), message_delta(7), STOP)
    result = mock_call(lambda r: stream_response(body), stream=True)
    assert result.text == "Hello" and result.finish_reason == "end_turn" and result.model == "claude-x"
    u = result.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (5, 1000, 20, 7)
    assert not u.estimated and result.request_id == "msg_01"


def test_message_delta_may_update_input_counts_too() -> None:
    late = ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                              "usage": {"output_tokens": 4, "input_tokens": 30, "cache_read_input_tokens": 2}})
    body = events(start(input_tokens=25), text("x"), late, STOP)
    u = mock_call(lambda r: stream_response(body), stream=True).usage
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (30, 2, 4)


def test_overloaded_error_event_before_text_raises_server() -> None:
    body = events(start(), ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    failure = failure_of(lambda: mock_call(lambda r: stream_response(body), stream=True))
    assert failure.kind == "server" and "overloaded_error" in failure.message


def test_error_event_after_text_is_an_interruption() -> None:
    body = events(start(input_tokens=11), text("partial answer"),
                  ("error", {"type": "error", "error": {"type": "api_error", "message": "boom"}}))
    result = mock_call(lambda r: stream_response(body), stream=True, max_tokens=64)
    assert result.interrupted and result.text == "partial answer" and result.interruption == "server"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.estimated) == (11, 64, True)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "Your credit balance is too low to access the API."}},
         "quota_exhausted"),
        (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: required"}},
         "bad_response"),
        (403, {"type": "error", "error": {"type": "permission_error", "message": "no"}}, "auth"),
        (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has "
                                          "exceeded your per-minute rate limit"}}, "rate_limit"),
        (500, {"type": "error", "error": {"type": "api_error", "message": "Internal"}}, "server"),
    ],
)
def test_http_failures(status: int, body: dict[str, Any], kind: str) -> None:
    failure = failure_of(lambda: mock_call(lambda r: httpx.Response(status, json=body)))
    assert failure.kind == kind and failure.status == status


def test_type_error_answer_in_a_200() -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert failure_of(lambda: mock_call(lambda r: httpx.Response(200, json=body))).kind == "server"


@pytest.mark.parametrize("payload", [b"{", b'{"content": "not a list"}', b"[1]"])
def test_malformed(payload: bytes) -> None:
    assert failure_of(lambda: mock_call(lambda r: httpx.Response(200, content=payload))).kind == "bad_response"
