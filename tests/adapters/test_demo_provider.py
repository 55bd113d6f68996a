"""The built-in demo provider: deterministic answers, realistic usage, both wire modes, injected faults."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.adapters.providers.base import CompletionResult, ProviderFailure, estimate_prompt_tokens
from butler_skill.adapters.providers.demo import (
    DEMO_BASE_URL,
    DEMO_MODEL,
    DemoFaults,
    DemoTransport,
    demo_answer,
    make_demo_client,
)
from butler_skill.adapters.providers.openai_compat import OpenAICompatClient

T = TypeVar("T")
PROMPT = [{"role": "system", "content": "You are a sub-agent."},
          {"role": "user", "content": "Research the three main competitors and list their pricing."}]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def calls(transport: DemoTransport, *requests: dict[str, Any]) -> list[CompletionResult | ProviderFailure]:
    out: list[CompletionResult | ProviderFailure] = []
    async with httpx.AsyncClient(transport=transport) as http:
        client = OpenAICompatClient(http, DEMO_BASE_URL, api_key=None)
        for r in requests:
            try:
                out.append(await client.complete(r.get("model", DEMO_MODEL), r.get("messages", PROMPT),
                                                 r.get("max_tokens", 256), stream=r.get("stream", False)))
            except ProviderFailure as exc:
                out.append(exc)
    return out


def one(transport: DemoTransport | None = None, **request: Any) -> CompletionResult:
    (result,) = run(calls(transport or DemoTransport(), request))
    assert isinstance(result, CompletionResult), result
    return result


def test_answer_is_deterministic_and_about_the_prompt() -> None:
    a = one()
    b = one()
    assert a.text == b.text and a.usage == b.usage
    assert a.text.startswith("Result for: Research the three main competitors and list their pricing.")
    assert a.text.count("\n") >= 3 and "[demo " in a.text
    assert a.finish_reason == "stop" and a.model == DEMO_MODEL
    other = one(messages=[{"role": "user", "content": "Write the summary."}])
    assert other.text != a.text


def test_usage_is_realistic() -> None:
    result = one()
    text, _, _ = demo_answer(DEMO_MODEL, PROMPT, 256)
    assert result.text == text
    assert result.usage.input_tokens == estimate_prompt_tokens(PROMPT) == math.ceil((20 + 59) / 4) + 8
    assert result.usage.output_tokens == math.ceil(len(text) / 4)
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert not result.usage.estimated


def test_max_tokens_cuts_the_answer() -> None:
    result = one(max_tokens=5)
    assert result.finish_reason == "length" and len(result.text) == 20 and result.usage.output_tokens == 5


def test_stream_matches_non_stream() -> None:
    plain, streamed = run(calls(DemoTransport(), {}, {"stream": True}))
    assert isinstance(plain, CompletionResult) and isinstance(streamed, CompletionResult)
    assert streamed.text == plain.text and streamed.usage == plain.usage and not streamed.interrupted
    assert streamed.finish_reason == "stop"


def test_request_ids_are_per_call_and_reproducible() -> None:
    first = run(calls(DemoTransport(id_prefix="s1"), {}, {}))
    again = run(calls(DemoTransport(id_prefix="s1"), {}, {}))
    ids = [r.request_id for r in first if isinstance(r, CompletionResult)]
    assert len(set(ids)) == 2 and all(i and i.startswith("s1-") for i in ids)
    assert ids == [r.request_id for r in again if isinstance(r, CompletionResult)]


def test_nth_call_rate_limited_with_retry_after() -> None:
    transport = DemoTransport(DemoFaults(rate_limit_calls=frozenset({2}), retry_after_s=9))
    first, second, third = run(calls(transport, {}, {}, {"stream": True}))
    assert isinstance(first, CompletionResult) and isinstance(third, CompletionResult)
    assert isinstance(second, ProviderFailure)
    assert (second.kind, second.status, second.retry_after_s) == ("rate_limit", 429, 9.0)
    assert transport.calls == 3


def test_quota_auth_and_server_faults() -> None:
    faults = DemoFaults(quota_exhausted_calls=frozenset({1}), server_error_marker="BOOM", server_error_status=503,
                        auth_error_marker="LOCKED")
    results = run(calls(DemoTransport(faults), {},
                        {"messages": [{"role": "user", "content": "please BOOM now"}]},
                        {"messages": [{"role": "user", "content": "LOCKED out"}], "stream": True},
                        {}))
    kinds = [r.kind if isinstance(r, ProviderFailure) else "ok" for r in results]
    assert kinds == ["quota_exhausted", "server", "auth", "ok"]
    assert isinstance(results[1], ProviderFailure) and results[1].status == 503


def test_dropped_stream_is_an_interruption() -> None:
    faults = DemoFaults(drop_stream_marker="FLAKY", drop_after_chunks=1)
    result = one(DemoTransport(faults), stream=True, max_tokens=200,
                 messages=[{"role": "user", "content": "FLAKY network"}])
    full, _, _ = demo_answer(DEMO_MODEL, [{"role": "user", "content": "FLAKY network"}], 200)
    assert result.interrupted and result.text == full[:24]
    assert result.usage.estimated and result.usage.output_tokens == 200
    # without stream the marker does nothing
    assert not one(DemoTransport(faults), messages=[{"role": "user", "content": "FLAKY network"}]).interrupted


def test_latency_uses_the_injected_sleep() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    one(DemoTransport(DemoFaults(latency_ms=250), sleep=fake_sleep))
    assert slept == [0.25]


def test_wrong_route_and_bad_body() -> None:
    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with make_demo_client() as http:
            return (
                await http.get("/models"),
                await http.post("/chat/completions", content=b"{nope"),
                await http.post("/chat/completions", json={"model": "m", "messages": [], "max_tokens": 3}),
            )

    missing, broken, empty = run(go())
    assert missing.status_code == 404 and broken.status_code == 400 and empty.status_code == 400
    assert json.loads(broken.content)["error"]["type"] == "invalid_request_error"


def test_no_key_no_authorization_header() -> None:
    seen: list[httpx.Request] = []

    class Spy(DemoTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return await super().handle_async_request(request)

    one(Spy())
    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize("bad", [{"latency_ms": -1}, {"server_error_status": 404}, {"drop_after_chunks": -2}])
def test_fault_config_is_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DemoFaults(**bad)


@settings(max_examples=150)
@given(st.text(max_size=500), st.integers(min_value=1, max_value=400), st.sampled_from(["system", "user"]))
def test_answers_are_deterministic_and_bounded(prompt: str, max_tokens: int, role: str) -> None:
    messages = [{"role": role, "content": prompt}]
    text, finish, digest = demo_answer(DEMO_MODEL, messages, max_tokens)
    assert demo_answer(DEMO_MODEL, messages, max_tokens) == (text, finish, digest)
    assert math.ceil(len(text) / 4) <= max_tokens
    assert finish in ("stop", "length")
    assert len(digest) == 64


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=300), st.booleans())
def test_through_the_client_usage_never_exceeds_max_tokens(prompt: str, max_tokens: int, stream: bool) -> None:
    result = one(messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, stream=stream)
    assert 0 < result.usage.output_tokens <= max_tokens
    assert result.usage.input_tokens == estimate_prompt_tokens([{"role": "user", "content": prompt}])
