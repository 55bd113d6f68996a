"""OpenAI-compatible chat completions (OpenAI, Groq, NVIDIA NIM, OpenRouter, custom gateways, the demo).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>`` (omitted when there is no key, as
for the demo provider). Streams ask for ``stream_options: {"include_usage": true}``; usage normally arrives
in a last chunk with empty ``choices``, but servers differ (Groq has sent it under ``x_groq.usage``, some put
it on a choice), so the last non-null ``usage`` seen anywhere in any chunk wins. A completed answer without
usage gets an estimate from its text (``estimated=True``); a non-stream answer without ``usage`` too,
rather than failing: the tokens were spent and must still be settled.

A chunk or 200 answer carrying ``{"error": {...}}`` instead of choices (OpenRouter does this) is a failure;
a numeric ``error.code`` is read as the HTTP status it stands for.

Rate-limit headers: ``retry-after-ms`` / ``retry-after`` (seconds or HTTP-date), ``x-ratelimit-limit-*``,
``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*`` (Go durations such as ``6m0s``, ``1.5s``, ``120ms``)
for ``requests`` and ``tokens``.
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
    classify_http_failure,
    names_any,
    output_limit,
    parse_duration,
    parse_int,
    parse_retry_after,
    request_id_from,
)

__all__ = ["OpenAICompatClient", "find_usage", "parse_openai_rate_limit"]


_LIMIT_HEADERS = ("retry-after", "x-ratelimit-")


def parse_openai_rate_limit(headers: Mapping[str, str], now: datetime) -> RateLimitInfo:
    h = headers
    if not names_any(h, _LIMIT_HEADERS):
        return _NO_LIMITS  # (what the lookups below answer when none of their headers is there)
    return RateLimitInfo(
        retry_after_s=parse_retry_after(h, now),
        limit_requests=parse_int(h.get("x-ratelimit-limit-requests")),
        limit_tokens=parse_int(h.get("x-ratelimit-limit-tokens")),
        remaining_requests=parse_int(h.get("x-ratelimit-remaining-requests")),
        remaining_tokens=parse_int(h.get("x-ratelimit-remaining-tokens")),
        reset_requests_s=parse_duration(h.get("x-ratelimit-reset-requests")),
        reset_tokens_s=parse_duration(h.get("x-ratelimit-reset-tokens")),
    )


def find_usage(chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``usage`` object of a chunk wherever a server put it, else None."""
    usage = chunk.get("usage")
    if isinstance(usage, Mapping):
        return usage
    x_groq = chunk.get("x_groq")
    if isinstance(x_groq, Mapping) and isinstance(x_groq.get("usage"), Mapping):
        return x_groq["usage"]
    for choice in chunk.get("choices") or ():
        if isinstance(choice, Mapping) and isinstance(choice.get("usage"), Mapping):
            return choice["usage"]
    return None


def _error_of(data: Mapping[str, Any]) -> tuple[ProviderFailureKind, str] | None:
    err = data.get("error")
    if err is None or data.get("choices"):
        return None
    if isinstance(err, Mapping):
        message = str(err.get("message") or "error")
        code = err.get("code")
        text = json.dumps(err)
        if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
            return classify_http_failure(code, text), message
        etype = str(err.get("type") or code or "")
        if "quota" in etype or "billing" in etype:
            return "quota_exhausted", message
        if "rate_limit" in etype:
            return "rate_limit", message
        if "auth" in etype or "api_key" in etype or "permission" in etype:
            return "auth", message
        if "server" in etype or "overloaded" in etype or etype == "api_error":
            return "server", message
        return "bad_response", message
    return "bad_response", str(err)


class OpenAICompatClient(ChatClient):
    """Chat completions over an injected ``httpx.AsyncClient``.

    ``complete(model, messages, max_tokens, timeout_s=60.0, stream=False, extra=None)``: ``extra`` is merged
    into the request body (it may not override ``model``, ``messages`` or the stream settings). The output
    limit goes in the field the key's API expects (``token_param``: ``max_completion_tokens`` for OpenAI,
    ``max_tokens`` elsewhere), never both; a limit given in ``extra`` under either name wins.
    """

    wire_format: WireFormat = "openai"

    def _url(self) -> str:
        return f"{self._base_url}/chat/completions"

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else
                   "application/json"}
        headers.update(self._extra_headers)
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    def _body(
        self, model: str, messages: list[dict[str, Any]], max_tokens: int, stream: bool, extra: dict[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if "max_completion_tokens" not in extra and "max_tokens" not in extra:
            body[self._token_param] = max_tokens
        body.update(extra)
        body["model"] = model
        body["messages"] = messages
        body["stream"] = stream
        if stream:
            options = dict(extra.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        else:
            body.pop("stream_options", None)
        return body

    def relay_body(self, body: dict[str, Any], *, model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        """The cap (never above the model's output cap) goes in ``max_completion_tokens`` when the client used
        it or the key's API expects it (OpenAI), else ``max_tokens``; never both. A stream always asks for usage
        (``stream_options.include_usage``), whether or not the client did."""
        out = dict(body)
        out["model"] = model
        out["stream"] = stream
        field = "max_completion_tokens" if (
            "max_completion_tokens" in out or self._token_param == "max_completion_tokens") else "max_tokens"
        out.pop("max_tokens" if field == "max_completion_tokens" else "max_completion_tokens", None)
        out[field] = output_limit(max_tokens, self._max_output)
        if stream:
            options = dict(out.get("stream_options") or {})
            options["include_usage"] = True
            out["stream_options"] = options
        return out

    def _rate_limit(self, headers: Mapping[str, str], now: datetime) -> RateLimitInfo:
        return parse_openai_rate_limit(headers, now)

    def _parse(self, data: Any, headers: Mapping[str, str]) -> StreamState:
        if not isinstance(data, Mapping):
            raise TypeError("answer is not an object")
        state = StreamState(parts=[], request_id=request_id_from(data.get("id"), headers))
        failure = _error_of(data)
        if failure is not None:
            state.failure_kind, state.failure_message = failure
            return state
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError("no choices")
        first = choices[0]
        message = first["message"]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not text")
        state.parts.append(content or "")
        state.finish_reason = first.get("finish_reason")
        model = data.get("model")
        state.model = model if isinstance(model, str) else None
        usage = find_usage(data)
        if usage is not None:
            state.usage = Usage.from_openai(usage)
        return state

    def _on_event(self, event: SSEEvent, state: StreamState) -> None:
        data = event.data.strip()
        if data == "[DONE]":
            state.done = True
            return
        chunk = json.loads(data)
        if not isinstance(chunk, Mapping):
            raise TypeError("chunk is not an object")
        failure = _error_of(chunk)
        if failure is not None:
            state.failure_kind, state.failure_message = failure
            return
        if isinstance(chunk.get("id"), str) and chunk["id"]:
            state.request_id = chunk["id"]
        if isinstance(chunk.get("model"), str):
            state.model = chunk["model"]
        usage = find_usage(chunk)
        if usage is not None:
            state.usage = Usage.from_openai(usage)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(piece, str) and piece:
                state.parts.append(piece)
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
