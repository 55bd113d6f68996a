"""Anthropic Messages API.

``POST {base_url}/messages`` (base URL ``https://api.anthropic.com/v1``) with ``x-api-key`` and
``anthropic-version: 2023-06-01``. ``max_tokens`` is required by the API. Messages with role ``system`` are
lifted into the top-level ``system`` field (the Messages API has no system role); their texts are joined
with blank lines, after any ``system`` given in ``extra``.

Usage: ``input_tokens`` excludes ``cache_creation_input_tokens`` and ``cache_read_input_tokens`` (see
``base.Usage``). Streams: ``message_start`` carries the message id, model and initial usage;
``content_block_delta`` with a ``text_delta`` carries text; ``message_delta`` carries ``stop_reason`` and a
*cumulative* ``usage`` (``output_tokens``, and sometimes updated input/cache counts): each field present
replaces the previous value, nothing is added up; ``message_stop`` ends the stream; ``ping`` is ignored; an
``error`` event (e.g. ``overloaded_error``) ends it with that error's kind.

Rate-limit headers: ``retry-after`` and ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-
{limit,remaining,reset}``; resets are RFC 3339 instants, converted to seconds against the response's
``Date`` header (else the client clock) and also kept as instants for requests and tokens. HTTP 529
(overloaded) is a ``server`` failure; a 400 saying the credit balance is too low is ``quota_exhausted``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from butler_skill.adapters.providers.base import (
    _NO_LIMITS,
    ChatClient,
    ProviderFailureKind,
    RateLimitInfo,
    SSEEvent,
    StreamState,
    Usage,
    WireFormat,
    names_any,
    parse_int,
    parse_retry_after,
    parse_rfc3339,
    request_id_from,
)

__all__ = ["ANTHROPIC_VERSION", "AnthropicClient", "parse_anthropic_rate_limit"]

ANTHROPIC_VERSION = "2023-06-01"

_ERROR_TYPES: Mapping[str, ProviderFailureKind] = {
    "overloaded_error": "server",
    "api_error": "server",
    "timeout_error": "timeout",
    "rate_limit_error": "rate_limit",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "quota_exhausted",
}


_LIMIT_HEADERS = ("retry-after", "anthropic-ratelimit-")


def parse_anthropic_rate_limit(headers: Mapping[str, str], now: datetime) -> RateLimitInfo:
    if not names_any(headers, _LIMIT_HEADERS):
        return _NO_LIMITS  # (what the lookups below answer when none of their headers is there)

    def reset(bucket: str) -> tuple[float | None, datetime | None]:
        at = parse_rfc3339(headers.get(f"anthropic-ratelimit-{bucket}-reset"))
        return (max(0.0, (at - now).total_seconds()) if at else None), at

    req_s, req_at = reset("requests")
    tok_s, tok_at = reset("tokens")
    in_s, _ = reset("input-tokens")
    out_s, _ = reset("output-tokens")
    h = headers
    return RateLimitInfo(
        retry_after_s=parse_retry_after(h, now),
        limit_requests=parse_int(h.get("anthropic-ratelimit-requests-limit")),
        limit_tokens=parse_int(h.get("anthropic-ratelimit-tokens-limit")),
        limit_input_tokens=parse_int(h.get("anthropic-ratelimit-input-tokens-limit")),
        limit_output_tokens=parse_int(h.get("anthropic-ratelimit-output-tokens-limit")),
        remaining_requests=parse_int(h.get("anthropic-ratelimit-requests-remaining")),
        remaining_tokens=parse_int(h.get("anthropic-ratelimit-tokens-remaining")),
        remaining_input_tokens=parse_int(h.get("anthropic-ratelimit-input-tokens-remaining")),
        remaining_output_tokens=parse_int(h.get("anthropic-ratelimit-output-tokens-remaining")),
        reset_requests_s=req_s,
        reset_tokens_s=tok_s,
        reset_input_tokens_s=in_s,
        reset_output_tokens_s=out_s,
        reset_requests_at=req_at,
        reset_tokens_at=tok_at,
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _merge_usage(state: StreamState, raw: Mapping[str, Any]) -> None:
    """Fields present in ``raw`` replace the previous values (stream usage is cumulative, nested objects
    such as ``cache_creation`` and ``server_tool_use`` field by field); then the whole is read again."""
    merged: dict[str, Any] = dict(state.raw_usage or {})
    for name, value in raw.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = {**merged[name], **{k: v for k, v in value.items() if v is not None}}
        else:
            merged[name] = value
    state.usage = Usage.from_anthropic(merged)
    state.raw_usage = merged


class AnthropicClient(ChatClient):
    """Messages API over an injected ``httpx.AsyncClient``; same ``complete`` contract as OpenAICompatClient.

    ``base_url`` is the API root including ``/v1`` (``https://api.anthropic.com/v1``).
    """

    wire_format: WireFormat = "anthropic"

    def _url(self) -> str:
        return f"{self._base_url}/messages"

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        headers.update(self._extra_headers)
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _body(
        self, model: str, messages: list[dict[str, Any]], max_tokens: int, stream: bool, extra: dict[str, Any]
    ) -> dict[str, Any]:
        system_parts: list[str] = []
        if isinstance(extra.get("system"), str) and extra["system"]:
            system_parts.append(extra["system"])
        chat: list[dict[str, Any]] = []
        for message in messages:
            if message.get("role") == "system":
                text = _text_of(message.get("content"))
                if text:
                    system_parts.append(text)
            else:
                chat.append(message)
        body: dict[str, Any] = dict(extra)
        body.update(model=model, messages=chat, max_tokens=max_tokens, stream=stream)
        if system_parts:
            body["system"] = "\n\n".join(system_parts)
        return body

    def _rate_limit(self, headers: Mapping[str, str], now: datetime) -> RateLimitInfo:
        return parse_anthropic_rate_limit(headers, now)

    def _parse(self, data: Any, headers: Mapping[str, str]) -> StreamState:
        if not isinstance(data, Mapping):
            raise TypeError("answer is not an object")
        state = StreamState(parts=[], request_id=request_id_from(data.get("id"), headers))
        if data.get("type") == "error":
            self._error_into(data, state)
            return state
        content = data["content"]
        if not isinstance(content, list):
            raise TypeError("content is not a list")
        state.parts.append(_text_of([b for b in content if isinstance(b, Mapping) and b.get("type") == "text"]))
        state.finish_reason = data.get("stop_reason")
        state.model = data.get("model") if isinstance(data.get("model"), str) else None
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            state.usage = Usage.from_anthropic(usage)
        return state

    @staticmethod
    def _error_into(data: Mapping[str, Any], state: StreamState) -> None:
        err = data.get("error")
        etype = str(err.get("type")) if isinstance(err, Mapping) else ""
        message = str(err.get("message")) if isinstance(err, Mapping) else str(err)
        kind = _ERROR_TYPES.get(etype, "bad_response")
        if kind == "bad_response" and "credit balance" in message.lower():
            kind = "quota_exhausted"
        state.failure_kind = kind
        state.failure_message = f"{etype or 'error'}: {message}"

    def _on_event(self, event: SSEEvent, state: StreamState) -> None:
        data = json.loads(event.data)
        if not isinstance(data, Mapping):
            raise TypeError("event is not an object")
        etype = data.get("type") or event.event
        if etype == "message_start":
            message = data["message"]
            if isinstance(message.get("id"), str):
                state.request_id = message["id"]
            if isinstance(message.get("model"), str):
                state.model = message["model"]
            if isinstance(message.get("usage"), Mapping):
                state.raw_usage = None
                _merge_usage(state, message["usage"])
        elif etype == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
                state.parts.append(delta["text"])
        elif etype == "message_delta":
            delta = data.get("delta") or {}
            if delta.get("stop_reason"):
                state.finish_reason = delta["stop_reason"]
            if isinstance(data.get("usage"), Mapping):
                _merge_usage(state, data["usage"])
        elif etype == "message_stop":
            state.done = True
        elif etype == "error":
            self._error_into(data, state)
