"""OpenAI-compatible adapter: unit cases through httpx.MockTransport, wire behaviour against the loopback server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest

from butler_skill.adapters.providers.base import (
    CompletionResult,
    ProviderFailure,
    Usage,
    classify_http_failure,
    estimate_prompt_tokens,
    parse_duration,
    parse_retry_after,
    redact,
)
from butler_skill.adapters.providers.openai_compat import OpenAICompatClient
from tests.adapters._pricing import price
from tests.adapters.conftest import loopback_http
from tests.servers.fake_llm import (
    FakeLLM,
    dropped,
    insufficient_quota,
    malformed,
    ok,
    rate_limited,
    server_error,
    slow,
    unauthorized,
)

T = TypeVar("T")
KEY = "sk-proj-" + "Fk3Lq8Zr2Nw7Xt5Vb1Mc9Hd4Jp6Gs0Ya" + "T3BlbkFJ" + "Qe8Wr7Ty6Ui5Op4As3"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to the tests."}]
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)




def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def call_loopback(server: FakeLLM, **kw: Any) -> CompletionResult:
    async with loopback_http() as http:
        client = OpenAICompatClient(http, server.base_url, KEY)
        return await client.complete(kw.pop("model", "gpt-test"), kw.pop("messages", MESSAGES),
                                     kw.pop("max_tokens", 64), **kw)


def mock_call(handler: Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]], **kw: Any
              ) -> CompletionResult:
    async def go() -> CompletionResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = OpenAICompatClient(http, "https://api.example.test/v1", KEY, clock=lambda: NOW)
            return await client.complete(kw.pop("model", "m"), kw.pop("messages", MESSAGES),
                                         kw.pop("max_tokens", 64), **kw)

    return run(go())


def failure_of(fn: Callable[[], object]) -> ProviderFailure:
    with pytest.raises(ProviderFailure) as info:
        fn()
    return info.value


def assert_no_secret(failure: ProviderFailure, secret: str = KEY) -> None:
    for text in (str(failure), repr(failure), failure.message, json.dumps(failure.to_payload()), str(failure.args)):
        assert secret not in text
        assert secret[:20] not in text
    # no chained httpx exception (its request object carries the headers, key included)
    assert failure.__cause__ is None
    assert failure.__context__ is None or failure.__suppress_context__


# ------------------------------------------------------------------------------------- parsing and pricing


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("6m0s", 360.0), ("1.5s", 1.5), ("120ms", 0.12), ("1h2m3s", 3723.0), ("2m59.56s", 179.56), ("20", 20.0),
     ("0s", 0.0), ("1d", 86400.0), ("", None), ("abc", None), ("5x", None), ("1s junk", None), (None, None)],
)
def test_parse_duration(raw: str | None, seconds: float | None) -> None:
    assert parse_duration(raw) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "7"}, NOW) == 7.0
    assert parse_retry_after({"retry-after": "Tue, 24 Nov 2026 09:31:15 GMT"}, NOW) == 75.0
    assert parse_retry_after({"retry-after": "Tue, 24 Nov 2026 09:00:00 GMT"}, NOW) == 0.0  # in the past
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}, NOW) == 1.5
    assert parse_retry_after({"retry-after": "soon"}, NOW) is None
    assert parse_retry_after({"retry-after": "-3"}, NOW) is None
    assert parse_retry_after({}, NOW) is None


def test_openai_usage_is_normalised_so_cached_tokens_count_once() -> None:
    usage = Usage.from_openai({
        "prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens_details": {"reasoning_tokens": 20},
        "cost": 0.00042,
    })
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (60, 40, 0)
    assert (usage.output_tokens, usage.reasoning_tokens) == (50, 20)
    assert usage.total_input_tokens == 100 and usage.total_tokens == 150
    assert usage.cost_usd == Decimal("0.00042") and not usage.estimated
    # 60 plain input at $1/M, 40 cached at $0.10/M, 50 output (reasoning inside) at $2/M: exact
    assert price(usage, 1.0, 2.0, 0.1) == Decimal("0.000164")
    # no cache price: cached input at the input price (never below list), still counted once (100, not 140)
    assert price(usage, 1.0, 2.0, None) == Decimal("0.0002")
    assert price(usage, 1.0, 2.0, 0.5) == Decimal("0.00018")


def test_anthropic_usage_is_normalised_the_same_way() -> None:
    usage = Usage.from_anthropic({"input_tokens": 10, "output_tokens": 50, "cache_creation_input_tokens": 200,
                                  "cache_read_input_tokens": 300})
    assert (usage.input_tokens, usage.cache_write_tokens, usage.cache_read_tokens) == (10, 200, 300)
    assert usage.total_input_tokens == 510 and usage.total_tokens == 560
    # $3/M input, $15/M output, reads $0.30/M, writes $3.75/M
    assert price(usage, 3.0, 15.0, 0.3, 3.75) == Decimal(30 + 750 + 90 + 750) / 1_000_000


def test_usage_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Usage.from_openai({"prompt_tokens": -1, "completion_tokens": 2})
    with pytest.raises(ValueError):
        Usage.from_openai({"prompt_tokens": "ten", "completion_tokens": 2})


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, '{"error": {"type": "requests", "code": "rate_limit_exceeded"}}', "rate_limit"),
        (429, '{"error": {"type": "insufficient_quota", "code": "insufficient_quota"}}', "quota_exhausted"),
        (429, "Rate limit reached for model on tokens per day (TPD): Limit 500000", "quota_exhausted"),
        (429, "You exceeded your daily limit", "quota_exhausted"),
        (402, "Payment required", "quota_exhausted"),
        (400, '{"error": {"message": "Your credit balance is too low"}}', "quota_exhausted"),
        (400, '{"error": {"message": "context length exceeded"}}', "bad_response"),
        (401, "", "auth"),
        (403, "", "auth"),
        (404, "", "bad_response"),
        (408, "", "timeout"),
        (500, "", "server"),
        (503, "", "server"),
        (529, "", "server"),
    ],
)
def test_classify_http_failure(status: int, body: str, kind: str) -> None:
    assert classify_http_failure(status, body) == kind


def test_redact_masks_the_sent_key_and_other_credential_shapes() -> None:
    text = f"key={KEY} Authorization: Bearer abcdefgh12345678 other gsk_{'a' * 52} x-api-key: sk-ant-api03-zzzzzzzz"
    clean = redact(text, [KEY])
    assert KEY not in clean and "abcdefgh12345678" not in clean and "gsk_" not in clean and "sk-ant" not in clean


# ------------------------------------------------------------------------------------------ MockTransport


def test_request_shape_non_stream() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "model": "m-2024", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }, headers={"x-request-id": "req-header", "x-ratelimit-remaining-tokens": "149984",
                    "x-ratelimit-reset-tokens": "6m0s", "x-ratelimit-limit-requests": "500",
                    "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms"})

    result = mock_call(handler, extra={"temperature": 0.2, "model": "ignored"})
    (request,) = seen
    assert request.url == "https://api.example.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert body == {"model": "m", "messages": MESSAGES, "max_tokens": 64, "temperature": 0.2, "stream": False}
    assert result.text == "hi" and result.finish_reason == "stop" and result.model == "m-2024"
    assert result.request_id == "chatcmpl-1"  # the body id first
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.estimated) == (12, 3, False)
    rl = result.rate_limit
    assert (rl.remaining_tokens, rl.reset_tokens_s, rl.limit_requests, rl.remaining_requests) == (149984, 360, 500, 499)
    assert rl.reset_requests_s == pytest.approx(0.12)


def test_max_completion_tokens_replaces_max_tokens() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]})

    result = mock_call(handler, extra={"max_completion_tokens": 99})
    assert "max_tokens" not in seen[0] and seen[0]["max_completion_tokens"] == 99
    # no usage reported: an estimate from the text, marked as such
    assert result.usage.estimated and result.usage.output_tokens == 1
    assert result.usage.input_tokens == estimate_prompt_tokens(MESSAGES)


def test_request_id_falls_back_to_the_header() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}}], "usage": {
            "prompt_tokens": 1, "completion_tokens": 1}}, headers={"x-request-id": "req-77"})

    assert mock_call(handler).request_id == "req-77"


def test_retry_after_http_date_uses_the_response_date() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}},
                              headers={"date": "Tue, 24 Nov 2026 10:00:00 GMT",
                                       "retry-after": "Tue, 24 Nov 2026 10:00:42 GMT"})

    failure = failure_of(lambda: mock_call(handler))
    assert failure.kind == "rate_limit" and failure.status == 429 and failure.retry_after_s == 42.0


def test_error_inside_a_200_answer_openrouter_style() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"error": {"code": 402, "message": "Insufficient credits"}})

    assert failure_of(lambda: mock_call(handler)).kind == "quota_exhausted"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [(httpx.ReadTimeout("read timed out"), "timeout"), (httpx.ConnectTimeout("connect"), "timeout"),
     (httpx.ConnectError("refused"), "server"), (httpx.RemoteProtocolError("closed"), "server")],
)
def test_transport_errors(exc: Exception, kind: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    failure = failure_of(lambda: mock_call(handler))
    assert failure.kind == kind
    assert_no_secret(failure)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "payload", [b"not json", b"[]", b'{"choices": []}', b'{"choices": [{"nomessage": 1}]}',
                b'{"choices": [{"message": {"content": 5}}]}',
                b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": -4}}'],
)
def test_malformed_answers_are_bad_response(payload: bytes, stream: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if stream:
            return httpx.Response(200, content=b"data: " + payload + b"\n\n",
                                  headers={"content-type": "text/event-stream"})
        return httpx.Response(200, content=payload)

    failure = failure_of(lambda: mock_call(handler, stream=stream))
    assert failure.kind == "bad_response"


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes], then: Exception | None) -> None:
        self.parts, self.then = parts, then

    async def __aiter__(self) -> Any:
        for p in self.parts:
            yield p
        if self.then is not None:
            raise self.then


def sse(*chunks: dict[str, Any] | str) -> list[bytes]:
    return [f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n".encode() for c in chunks]


def delta(text: str) -> dict[str, Any]:
    return {"id": "c-1", "model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def test_stream_read_timeout_after_some_text_returns_a_pessimistic_estimate() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Chunks(sse(delta("Hello"), delta(" wor")), httpx.ReadTimeout("stalled")))

    result = mock_call(handler, stream=True, max_tokens=500)
    assert result.text == "Hello wor" and result.interrupted and result.interruption == "timeout"
    assert result.finish_reason == "interrupted"
    assert result.usage.estimated
    assert result.usage.output_tokens == 500  # pessimistic: everything it could have generated
    assert result.usage.input_tokens == estimate_prompt_tokens(MESSAGES)
    assert result.request_id == "c-1"


def test_stream_error_event_before_text_raises_its_kind() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Chunks(sse({"error": {"message": "overloaded", "type": "server_error"}}), None))

    assert failure_of(lambda: mock_call(handler, stream=True)).kind == "server"


def test_stream_error_event_after_text_is_an_interruption() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        parts = sse(delta("partial"), {"error": {"message": "limit", "code": 429, "type": "rate_limit"}})
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Chunks(parts, None))

    result = mock_call(handler, stream=True, max_tokens=10)
    assert result.interrupted and result.interruption == "rate_limit" and result.text == "partial"


def test_stream_whole_answer_survives_a_drop_after_the_finish() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        finish = {"id": "c-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Chunks(sse(delta("complete answer"), finish), httpx.ReadError("reset")))

    result = mock_call(handler, stream=True, max_tokens=1000)
    assert not result.interrupted and result.finish_reason == "stop"
    # The usage chunk was lost after the finish: hidden (reasoning) output may have been billed, so the figure
    # is pessimistic (the request's limit) and marked, not the optimistic ceil(15 / 4) from the visible text.
    assert result.usage.estimated and result.usage.output_tokens == 1000 and result.usage_lost


def test_only_the_first_choice_is_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        other = {"choices": [{"index": 1, "delta": {"content": "IGNORED"}, "finish_reason": None}]}
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              stream=_Chunks(sse(delta("kept"), other, "[DONE]"), None))

    assert mock_call(handler, stream=True).text == "kept"


# ------------------------------------------------------------------------------------ loopback HTTP server


def test_loopback_non_stream(fake_llm: FakeLLM) -> None:
    fake_llm.script(ok(text="Hello, world.", prompt_tokens=20, completion_tokens=4, cached_tokens=8,
                       reasoning_tokens=1, cost=0.0002, request_id="chatcmpl-abc",
                       headers={"x-ratelimit-remaining-tokens": "999", "x-ratelimit-reset-tokens": "1m30s"}))
    result = run(call_loopback(fake_llm))
    assert result.text == "Hello, world." and result.finish_reason == "stop"
    assert result.request_id == "chatcmpl-abc" and result.model == "gpt-test"
    u = result.usage
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (12, 8, 4, 1)
    assert u.total_tokens == 24 and u.cost_usd == Decimal("0.0002") and not u.estimated
    assert result.rate_limit.remaining_tokens == 999 and result.rate_limit.reset_tokens_s == 90
    (req,) = fake_llm.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.json["stream"] is False and req.json["max_tokens"] == 64 and "stream_options" not in req.json


def test_loopback_stream_asks_for_usage_and_keeps_the_last_one(fake_llm: FakeLLM) -> None:
    fake_llm.script(ok(text="Streaming works fine.", prompt_tokens=30, completion_tokens=6))
    result = run(call_loopback(fake_llm, stream=True))
    assert result.text == "Streaming works fine." and not result.interrupted
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.estimated) == (30, 6, False)
    assert result.request_id == "req-1"
    body = fake_llm.requests[0].json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert fake_llm.requests[0].headers["accept"] == "text/event-stream"


@pytest.mark.parametrize("where", ["x_groq", "choice", "every_chunk"])
def test_loopback_stream_usage_in_non_standard_places(fake_llm: FakeLLM, where: str) -> None:
    fake_llm.script(ok(text="abcdefghijklmnopqrstuvwxyz", prompt_tokens=17, completion_tokens=9, usage_location=where))
    result = run(call_loopback(fake_llm, stream=True))
    assert result.text == "abcdefghijklmnopqrstuvwxyz"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.estimated) == (17, 9, False)


def test_loopback_stream_without_usage_is_settled_pessimistically(fake_llm: FakeLLM) -> None:
    fake_llm.script(ok(text="x" * 40, usage_location="none"))
    result = run(call_loopback(fake_llm, stream=True, max_tokens=900))
    assert not result.interrupted and result.usage.estimated and result.usage_lost
    # the text shows 10 tokens, but hidden output may have been billed: the request's limit, marked
    assert result.usage.output_tokens == 900 and result.usage.input_tokens == estimate_prompt_tokens(MESSAGES)


@pytest.mark.parametrize("framing", ["chunked", "eof"])
def test_loopback_dropped_stream_returns_partial_text(fake_llm: FakeLLM, framing: str) -> None:
    # events: keep-alive comment, role chunk, then 8-char pieces; drop after 2 pieces
    fake_llm.script(dropped(after_chunks=4, text="0123456789abcdefghijklmnop", drop_framing=framing))
    result = run(call_loopback(fake_llm, stream=True, max_tokens=300))
    assert result.text == "0123456789abcdef"
    assert result.interrupted and result.finish_reason == "interrupted"
    assert result.usage.estimated and result.usage.output_tokens == 300
    assert result.usage.input_tokens == estimate_prompt_tokens(MESSAGES)


def test_loopback_stream_dropped_before_any_text_raises(fake_llm: FakeLLM) -> None:
    fake_llm.script(dropped(after_chunks=2))
    failure = failure_of(lambda: run(call_loopback(fake_llm, stream=True)))
    assert failure.kind == "bad_response"


def test_loopback_rate_limited(fake_llm: FakeLLM) -> None:
    fake_llm.script(rate_limited("7", headers={"x-ratelimit-remaining-requests": "0"}))
    failure = failure_of(lambda: run(call_loopback(fake_llm)))
    assert (failure.kind, failure.status, failure.retry_after_s) == ("rate_limit", 429, 7.0)
    assert failure.rate_limit.remaining_requests == 0
    assert failure.request_id == "req-1"
    assert failure.to_payload()["error"]["code"] == "provider_error"


@pytest.mark.parametrize("stream", [False, True])
def test_loopback_insufficient_quota(fake_llm: FakeLLM, stream: bool) -> None:
    fake_llm.script(insufficient_quota())
    assert failure_of(lambda: run(call_loopback(fake_llm, stream=stream))).kind == "quota_exhausted"


def test_loopback_server_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(server_error(503))
    failure = failure_of(lambda: run(call_loopback(fake_llm)))
    assert (failure.kind, failure.status) == ("server", 503)


def test_loopback_malformed_json(fake_llm: FakeLLM) -> None:
    fake_llm.script(malformed())
    assert failure_of(lambda: run(call_loopback(fake_llm))).kind == "bad_response"


@pytest.mark.parametrize("stream", [False, True])
def test_loopback_slow_answer_times_out(fake_llm: FakeLLM, stream: bool) -> None:
    fake_llm.script(slow(5.0))
    failure = failure_of(lambda: run(call_loopback(fake_llm, stream=stream, timeout_s=0.2)))
    assert failure.kind == "timeout"


@pytest.mark.parametrize("stream", [False, True])
def test_loopback_echoed_key_never_leaks(fake_llm: FakeLLM, stream: bool) -> None:
    fake_llm.script(unauthorized(echo_auth=True), unauthorized(echo_auth=True))

    async def raw_body() -> str:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{fake_llm.base_url}/chat/completions", json={},
                                headers={"authorization": f"Bearer {KEY}"})
            return r.text

    assert KEY in run(raw_body())  # the server really does echo it back
    failure = failure_of(lambda: run(call_loopback(fake_llm, stream=stream)))
    assert failure.kind == "auth" and failure.status == 401
    assert "Incorrect API key provided" in failure.message
    assert_no_secret(failure)


def test_loopback_many_concurrent_calls(fake_llm: FakeLLM) -> None:
    async def many() -> list[CompletionResult]:
        async with loopback_http() as http:
            client = OpenAICompatClient(http, fake_llm.base_url, KEY)
            return await asyncio.gather(*(client.complete("m", MESSAGES, 16, stream=i % 2 == 0) for i in range(12)))

    results = run(many())
    assert len({r.request_id for r in results}) == 12
    assert all(r.usage.output_tokens == 7 and not r.usage.estimated for r in results)


def test_loopback_extra_header_credentials_never_leak(fake_llm: FakeLLM) -> None:
    gateway_secret = "gw-" + "Ty7Uu2Ii9Oo4Pp1Aa6Ss3Dd8"
    fake_llm.script(unauthorized(echo_auth=True))

    async def go() -> CompletionResult:
        async with loopback_http() as http:
            client = OpenAICompatClient(http, fake_llm.base_url, KEY,
                                        extra_headers={"x-gateway-token": gateway_secret})
            return await client.complete("m", MESSAGES, 16)

    failure = failure_of(lambda: run(go()))
    assert fake_llm.requests[0].headers["x-gateway-token"] == gateway_secret  # it was sent
    assert_no_secret(failure)
    assert_no_secret(failure, gateway_secret)


@pytest.mark.parametrize("stream", [False, True])
def test_loopback_echoed_key_of_no_known_shape_never_leaks(fake_llm: FakeLLM, stream: bool) -> None:
    # A custom provider's key matches none of the credential patterns: only exact-key masking catches it.
    odd_key = "Zq8mWv2Lr6Tn0Kx4Hb7Jc1Fd5Gs9Ya3Pe"
    fake_llm.script(unauthorized(echo_auth=True))

    async def go() -> CompletionResult:
        async with loopback_http() as http:
            return await OpenAICompatClient(http, fake_llm.base_url, odd_key).complete("m", MESSAGES, 16,
                                                                                       stream=stream)

    failure = failure_of(lambda: run(go()))
    assert "[REDACTED]" in failure.message
    assert_no_secret(failure, odd_key)


def outcome(fn: Callable[[], CompletionResult]) -> tuple[Any, ...]:
    """What a caller sees of a call: the result, or the failure's kind, status, message and wait (not the request
    id: the fake provider numbers its answers)."""
    try:
        result = fn()
    except ProviderFailure as failure:
        return ("failure", failure.kind, failure.status, failure.message, failure.retry_after_s)
    return ("result", result.text, result.usage, result.finish_reason, result.rate_limit)


@pytest.mark.parametrize("reply", [
    lambda: ok(), lambda: rate_limited("7", headers={"x-ratelimit-remaining-requests": "0"}),
    lambda: insufficient_quota(), lambda: server_error(503), lambda: unauthorized(echo_auth=True),
    lambda: malformed(), lambda: slow(3.0), lambda: dropped(after_chunks=0)])
def test_a_bounded_call_answers_as_an_unbounded_one(fake_llm: FakeLLM, reply: Callable[[], Any]) -> None:
    # `bounded=True` (the runner's calls, bounded by the sub-task's own timeout) only drops the whole-call timer of
    # an answer that is not streamed: every answer, failure and step timeout reads the same.
    seen = []
    for bounded in (False, True):
        fake_llm.script(reply())
        seen.append(outcome(lambda b=bounded: run(call_loopback(fake_llm, timeout_s=1.0, bounded=b))))
    assert seen[0] == seen[1]
    assert seen[0][0] == "result" or seen[0][1] in ("rate_limit", "quota_exhausted", "server", "auth", "bad_response",
                                                     "timeout")
