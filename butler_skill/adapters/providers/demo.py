"""The built-in demo provider: an in-process OpenAI-compatible chat-completions server as an httpx transport.

No network, no key. Plug it into ``OpenAICompatClient`` through an ``httpx.AsyncClient``::

    transport = DemoTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        client = OpenAICompatClient(http, DEMO_BASE_URL, api_key=None)
        result = await client.complete(DEMO_MODEL, [{"role": "user", "content": "..."}], max_tokens=256)

Answers are deterministic: the text is derived from a SHA-256 of (model, messages, max_tokens), so the same
request gives the same text and usage. Usage is realistic: ``prompt_tokens`` uses the same chars/4 + 4 per
message rule as ``base.estimate_prompt_tokens``; ``completion_tokens = ceil(len(text) / 4)`` and never
exceeds ``max_tokens`` (the text is cut and ``finish_reason`` becomes ``length``). The response id is
``{id_prefix}-{digest[:12]}-{call number}``: stable for the same sequence of requests to one transport and
unique per call within it (settlement is idempotent by request id, so two identical prompts must still get
two ids). Give each transport its own ``id_prefix`` if ids must not collide across transports.

Faults (``DemoFaults``) are injected by 1-based call number (every POST to chat/completions counts) or by a
marker string in the prompt. Latency uses the injected ``sleep`` (``asyncio.sleep`` by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from butler_skill.adapters.providers.base import estimate_prompt_tokens
from butler_skill.registry import DEMO_BASE_URL

__all__ = ["DEMO_BASE_URL", "DEMO_MODEL", "DemoFaults", "DemoTransport", "demo_answer", "make_demo_client"]

DEMO_MODEL = "butler-demo-1"
_DEFAULT_MAX_TOKENS = 256
_CHUNK_CHARS = 24
_DAILY_REQUESTS = 10_000

_ADJECTIVES = ("steady", "notable", "sharp", "modest", "clear", "uneven", "strong", "early", "late", "broad")
_NOUNS = ("trend", "gap", "signal", "cluster", "outlier", "driver", "risk", "pattern", "segment", "lever")
_VERBS = (
    "points to growth", "needs a second look", "explains most of the change", "is stable over time",
    "deserves a follow-up", "matches the brief", "limits the estimate", "shifts the priority",
)


class DemoFaults(BaseModel):
    """Faults the demo provider injects. Call numbers are 1-based and count every chat request."""

    model_config = ConfigDict(frozen=True)

    rate_limit_calls: frozenset[int] = Field(default=frozenset(), description="answer 429 + Retry-After")
    retry_after_s: int = Field(default=2, ge=0)
    quota_exhausted_calls: frozenset[int] = Field(default=frozenset(), description="429 insufficient_quota")
    server_error_marker: str | None = Field(default=None, description="prompts containing it get a 5xx")
    server_error_status: int = Field(default=500, ge=500, le=599)
    auth_error_marker: str | None = Field(default=None, description="prompts containing it get a 401")
    drop_stream_marker: str | None = Field(default=None, description="streams for these prompts drop")
    drop_after_chunks: int = Field(default=2, ge=0, description="content chunks sent before the drop")
    latency_ms: int = Field(default=0, ge=0)


def _prompt_text(messages: list[Any]) -> tuple[str, int]:
    """All message text joined, and the message count."""
    texts: list[str] = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(texts), len(messages)


def _subject(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            text, _ = _prompt_text([m])
            # A sub-agent prompt names its own part on a line of its own: answer about that.
            part = next((ln.split(": ", 1)[1] for ln in text.splitlines()
                         if ln.startswith("Your part (") and ": " in ln), None)
            line = " ".join((part or text).split())
            if line:
                return line[:80] + ("…" if len(line) > 80 else "")
    return "the task"


def demo_answer(model: str, messages: list[Any], max_tokens: int) -> tuple[str, str, str]:
    """(text, finish_reason, hex digest) the demo gives for this request. Pure and deterministic."""
    canonical = json.dumps(
        {"model": model, "messages": messages, "max_tokens": max_tokens}, sort_keys=True, ensure_ascii=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    findings = 2 + digest[0] % 3
    lines = [f"Result for: {_subject(messages)}"]
    for i in range(findings):
        a, n, v, s = digest[1 + 4 * i : 5 + 4 * i]
        lines.append(
            f"{i + 1}. {_ADJECTIVES[a % len(_ADJECTIVES)].capitalize()} {_NOUNS[n % len(_NOUNS)]}: "
            f"{_VERBS[v % len(_VERBS)]} (score 0.{s % 90 + 10})"
        )
    lines.append(f"Summary: {findings} findings, confidence 0.{digest[20] % 50 + 50}. [demo {digest.hex()[:8]}]")
    text = "\n".join(lines)
    finish = "stop"
    if math.ceil(len(text) / 4) > max_tokens:
        text = text[: max_tokens * 4]
        finish = "length"
    return text, finish, digest.hex()


class _SSEStream(httpx.AsyncByteStream):
    def __init__(self, events: list[bytes], drop_after: int | None) -> None:
        self._events = events
        self._drop_after = drop_after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, event in enumerate(self._events):
            if self._drop_after is not None and i >= self._drop_after:
                raise httpx.RemoteProtocolError("demo: peer closed connection without sending complete body")
            yield event


def _json_response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        headers={"content-type": "application/json", **(headers or {})},
        content=json.dumps(payload).encode(),
    )


def _error(status: int, message: str, etype: str, code: str | None, headers: dict[str, str] | None = None
           ) -> httpx.Response:
    return _json_response(
        status, {"error": {"message": message, "type": etype, "param": None, "code": code}}, headers
    )


class DemoTransport(httpx.AsyncBaseTransport):
    """In-process OpenAI-compatible ``POST .../chat/completions`` (JSON and SSE with usage)."""

    def __init__(
        self,
        faults: DemoFaults | None = None,
        *,
        id_prefix: str = "demo",
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.faults = faults or DemoFaults()
        self.id_prefix = id_prefix
        self.calls = 0
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(404, f"demo: no route for {request.method} {request.url.path}", "invalid_request_error",
                          "not_found")
        raw = await request.aread()
        self.calls += 1
        call = self.calls
        f = self.faults
        if f.latency_ms:
            await self._sleep(f.latency_ms / 1000)
        try:
            body = json.loads(raw)
            model = body["model"]
            messages = body["messages"]
            if not isinstance(model, str) or not isinstance(messages, list) or not messages:
                raise ValueError
            if not all(isinstance(m, dict) for m in messages):
                raise ValueError
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens", _DEFAULT_MAX_TOKENS))
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return _error(400, "demo: expected {model, messages[], max_tokens>=1}", "invalid_request_error", None)

        prompt, _ = _prompt_text(messages)
        limits = {
            "x-ratelimit-limit-requests": str(_DAILY_REQUESTS),
            "x-ratelimit-remaining-requests": str(max(0, _DAILY_REQUESTS - call)),
            "x-ratelimit-reset-requests": "1m0s",
        }
        if call in f.rate_limit_calls:
            return _error(429, "demo: rate limit reached for requests per minute", "requests",
                          "rate_limit_exceeded", {"retry-after": str(f.retry_after_s), **limits})
        if call in f.quota_exhausted_calls:
            return _error(429, "demo: you exceeded your current quota", "insufficient_quota", "insufficient_quota",
                          limits)
        if f.auth_error_marker and f.auth_error_marker in prompt:
            return _error(401, "demo: invalid api key", "invalid_request_error", "invalid_api_key")
        if f.server_error_marker and f.server_error_marker in prompt:
            return _error(f.server_error_status, "demo: the server had an error", "server_error", None)

        text, finish, digest = demo_answer(model, messages, max_tokens)
        rid = f"{self.id_prefix}-{digest[:12]}-{call}"
        prompt_tokens = estimate_prompt_tokens(messages)
        completion_tokens = math.ceil(len(text) / 4)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        headers = {"x-request-id": rid, **limits}
        if not body.get("stream"):
            return _json_response(
                200,
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                    ],
                    "usage": usage,
                },
                headers,
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list[dict[str, Any]], usage_value: dict[str, int] | None = None) -> bytes:
            payload = {
                "id": rid, "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": choices, "usage": usage_value,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        pieces = [text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)]
        events += [chunk([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))
        if include_usage:
            events.append(chunk([], usage))
        events.append(b"data: [DONE]\n\n")
        drop = None
        if f.drop_stream_marker and f.drop_stream_marker in prompt:
            drop = 1 + f.drop_after_chunks  # the role chunk, then N content chunks
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream", "cache-control": "no-cache", **headers},
            stream=_SSEStream(events, drop),
        )


def make_demo_client(faults: DemoFaults | None = None, **transport_kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` wired to a fresh ``DemoTransport`` (close it when done)."""
    return httpx.AsyncClient(transport=DemoTransport(faults, **transport_kwargs), base_url=DEMO_BASE_URL)
