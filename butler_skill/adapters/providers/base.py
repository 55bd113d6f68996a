"""Shared vocabulary of the provider adapters: usage, rate-limit facts, results, failures, SSE, pricing.

Adapters report what the provider said; they decide nothing (``core/inflight.py`` does).

Usage normalisation
-------------------
Providers count input differently; ``Usage`` holds one convention:

* ``input_tokens``: input tokens billed at the plain input price, i.e. *excluding* cache reads and cache
  writes;
* ``cache_read_tokens`` / ``cache_write_tokens``: input served from / written to the prompt cache;
* ``total_input_tokens`` (computed) = input + cache_read + cache_write;
* ``output_tokens``: everything generated, reasoning included; ``reasoning_tokens`` is the part of it that
  was reasoning (informational, never added again);
* ``total_tokens`` = total input + output, always recomputed from the parts.

OpenAI-compatible: ``prompt_tokens`` *includes* ``prompt_tokens_details.cached_tokens``, so
``input = prompt_tokens - cached_tokens`` and ``cache_read = cached_tokens``; ``completion_tokens`` includes
``completion_tokens_details.reasoning_tokens``. Anthropic: ``input_tokens`` already *excludes*
``cache_creation_input_tokens`` (→ cache_write) and ``cache_read_input_tokens`` (→ cache_read). Each token is
therefore counted in exactly one field, and ``core.pricing.usage_cost`` prices each field once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, NamedTuple, get_args

import httpx

from butler_skill.adapters.providers.http import (
    HttpBackend,
    HttpError,
    HttpTimeout,
    HttpTransportError,
    LowerCaseHeaders,
    as_backend,
    json_bytes,
)
from butler_skill.core.pricing import output_limit
from butler_skill.core.usage import Usage
from butler_skill.errors import ProviderError
from butler_skill.registry import WireFormat

__all__ = [
    "PROVIDER_FAILURE_KINDS",
    "CompletionResult",
    "ProviderFailure",
    "ProviderFailureKind",
    "RateLimitInfo",
    "SSEEvent",
    "SSEParser",
    "Usage",
    "WireFormat",
    "classify_http_failure",
    "estimate_prompt_tokens",
    "estimated_usage",
    "iter_sse",
    "output_limit",
    "parse_duration",
    "parse_retry_after",
    "redact",
]

ProviderFailureKind = Literal["rate_limit", "quota_exhausted", "auth", "server", "timeout", "bad_response"]
PROVIDER_FAILURE_KINDS: tuple[ProviderFailureKind, ...] = get_args(ProviderFailureKind)

REDACTED = "[REDACTED]"
_MAX_MESSAGE = 500


# RateLimitInfo and CompletionResult are immutable NamedTuples, not pydantic models: one of each is built per
# provider call from values the adapters have already typed, and nothing validates or serialises them (the tools'
# own models do, at the boundary). Measured per build: RateLimitInfo 0.7 µs as a NamedTuple, 3.1 µs as a frozen
# dataclass, more as a pydantic model.


class RateLimitInfo(NamedTuple):
    """What the provider's headers said about its limits. ``*_s`` are seconds from the response."""

    retry_after_s: float | None = None
    limit_requests: int | None = None
    limit_tokens: int | None = None
    limit_input_tokens: int | None = None
    limit_output_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    remaining_input_tokens: int | None = None
    remaining_output_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None
    reset_input_tokens_s: float | None = None
    reset_output_tokens_s: float | None = None
    reset_requests_at: datetime | None = None
    reset_tokens_at: datetime | None = None


_NO_LIMITS = RateLimitInfo()


class CompletionResult(NamedTuple):
    """One completion. ``interrupted``: the stream ended early and the usage is an estimate; ``interruption``:
    why (no secrets); ``usage_lost``: a whole stream whose usage chunk never came, so the usage is a pessimistic
    estimate (output at the request's limit)."""

    text: str
    usage: Usage
    model: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    rate_limit: RateLimitInfo = _NO_LIMITS
    interrupted: bool = False
    interruption: str | None = None
    usage_lost: bool = False


class ProviderFailure(ProviderError):
    """A provider call that failed. ``kind`` drives ``core.inflight.decide``.

    The message and details never contain the API key or request headers: every text taken from the
    provider goes through ``redact`` with the key that was sent before it is stored here.
    """

    def __init__(
        self,
        kind: ProviderFailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        rate_limit: RateLimitInfo | None = None,
        request_id: str | None = None,
        provider_code: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        secret_list = [s for s in secrets if s]
        clean = redact(message, secret_list)
        if len(clean) > _MAX_MESSAGE:
            clean = clean[:_MAX_MESSAGE] + "…"
        code = redact(provider_code, secret_list)[:100] if provider_code else None
        rid = redact(request_id, secret_list)[:200] if request_id else None
        super().__init__(
            clean, kind=kind, status=status, retry_after_s=retry_after_s, request_id=rid, provider_code=code
        )
        self.kind: ProviderFailureKind = kind
        self.status = status
        self.retry_after_s = retry_after_s
        self.rate_limit = rate_limit or _NO_LIMITS
        self.request_id = rid
        self.provider_code = code

    def __repr__(self) -> str:
        return f"ProviderFailure(kind={self.kind!r}, status={self.status!r}, message={self.message!r})"


# Credential shapes masked even when they are not the key we sent (a server may echo another one).
_CREDENTIAL_RE = re.compile(
    r"(?i:bearer\s+)[A-Za-z0-9._~+/=-]{8,}"
    r"|sk-ant-[A-Za-z0-9_-]{8,}|sk-or-v1-[A-Za-z0-9]{8,}|sk-(?:proj|svcacct)-[A-Za-z0-9_-]{8,}"
    r"|sk-[A-Za-z0-9_-]{16,}|gsk_[A-Za-z0-9]{16,}|nvapi-[A-Za-z0-9_-]{16,}"
    r"|(?i:x-api-key|authorization|api[_-]?key)[\"']?\s*[:=]\s*[\"']?(?i:bearer\s+)?[^\s\"',;}]{4,}"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask every occurrence of each secret (and anything shaped like a credential) in ``text``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _CREDENTIAL_RE.sub(REDACTED, text)


# ---------------------------------------------------------------------------------------------- headers

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s|d)")


def parse_duration(value: str | None) -> float | None:
    """Seconds in a Go-style duration (``6m0s``, ``1.5s``, ``120ms``, ``1h2m``) or a bare number."""
    if value is None:
        return None
    return _duration(value)


@functools.lru_cache(maxsize=512)
def _duration(value: str) -> float | None:
    """Memoised: every OpenAI-style answer carries two reset durations, from a small set (``6ms``, ``1m0s``), and
    parsing one costs about 3 µs."""
    v = value.strip().lower()
    if not v:
        return None
    try:
        number = float(v)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) and number >= 0 else None
    pos, total = 0, 0.0
    scale = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    for m in _DURATION_RE.finditer(v):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * scale[m.group(2)]
        pos = m.end()
    return total if pos == len(v) and pos > 0 else None


def parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    return _http_date(value)


@functools.lru_cache(maxsize=16)
def _http_date(value: str) -> datetime | None:
    """Memoised: every answer carries a ``Date`` header, which changes once a second, and parsing one costs
    about 10 µs (``email.utils``)."""
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def parse_rfc3339(value: str | None) -> datetime | None:
    if not value:
        return None
    return _rfc3339(value)


@functools.lru_cache(maxsize=64)
def _rfc3339(value: str) -> datetime | None:
    """Memoised: Anthropic's four reset instants repeat from one answer to the next within a second."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def parse_retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait: ``retry-after-ms``, else ``retry-after`` as seconds or an HTTP-date (vs ``now``)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms)
        except ValueError:
            value = -1.0
        if math.isfinite(value) and value >= 0:
            return value / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        when = parse_http_date(raw)
        if when is None:
            return None
        return max(0.0, (when - now).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit() and value.isascii():
        return int(value)
    try:
        return int(value.strip())
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            return None
        return int(f) if math.isfinite(f) else None


def names_any(headers: Mapping[str, str], prefixes: tuple[str, ...]) -> bool:
    """Whether an answer may carry a header whose name starts with one of `prefixes` (lower case): False only for
    headers whose names are known to be lower case (the lean client's) when none does, so a parser can skip
    looking up each of a dozen headers one by one (about 10 µs a call, on the loop's thread)."""
    if not isinstance(headers, LowerCaseHeaders):
        return True
    return any(name.startswith(prefixes) for name in headers)


def response_now(headers: Mapping[str, str], fallback: datetime) -> datetime:
    """The server's clock from its ``Date`` header, else ``fallback``."""
    return parse_http_date(headers.get("date")) or fallback


def request_id_from(body_id: Any, headers: Mapping[str, str]) -> str | None:
    if isinstance(body_id, str) and body_id:
        return body_id
    return headers.get("x-request-id") or headers.get("request-id") or None


# --------------------------------------------------------------------------------------------- failures

_QUOTA_RE = re.compile(
    r"insufficient_quota|quota|per[\s_-]day|daily|billing|credit balance|credits|payment required|\bRPD\b|\bTPD\b",
    re.IGNORECASE,
)


def classify_http_failure(status: int, body_text: str) -> ProviderFailureKind:
    """Map an HTTP error status (and what its body says) to a failure kind.

    429 mentioning a quota / daily limit / billing → quota_exhausted, other 429 → rate_limit; 402 →
    quota_exhausted; 400 about the credit balance (Anthropic answers that way) → quota_exhausted;
    401/403 → auth; 408 → timeout; 5xx (incl. 529 overloaded) → server; any other status → bad_response.
    """
    if status == 429:
        return "quota_exhausted" if _QUOTA_RE.search(body_text) else "rate_limit"
    if status == 402:
        return "quota_exhausted"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server"
    if status == 400 and re.search(r"credit balance|insufficient_quota|billing", body_text, re.IGNORECASE):
        return "quota_exhausted"
    return "bad_response"


def error_fields(body_text: str) -> tuple[str, str | None]:
    """(message, code) from an error body in either provider's shape, else the raw text."""
    try:
        data = json.loads(body_text)
    except ValueError:
        return body_text.strip(), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        message = err.get("message")
        code = err.get("code") or err.get("type")
        return (str(message) if message is not None else body_text.strip()), (
            str(code) if code is not None else None
        )
    if isinstance(err, str):
        return err, None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"], None
    return body_text.strip(), None


# ------------------------------------------------------------------------------------------ estimation


def estimate_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """About chars / 4 over the message contents, plus 4 per message for the framing."""
    chars = 0
    count = 0
    for message in messages:
        count += 1
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    return math.ceil(chars / 4) + 4 * count


def estimated_usage(
    prompt_estimate: int, max_tokens: int, text: str, seen: Usage | None, *, pessimistic: bool
) -> Usage:
    """A stand-in Usage marked ``estimated``.

    Input: what the provider already reported when it did (Anthropic's ``message_start`` carries the real,
    final input count), else ``prompt_estimate``. Output, pessimistic (an interrupted stream, or a whole
    stream whose usage chunk was lost: we cannot know how much the provider generated and will bill): the
    largest of ``max_tokens`` (the limit the request carried, already bounded by the model's output cap),
    the output seen and ceil(len(text) / 4). Otherwise (a non-stream answer without usage): the larger of
    the output seen and ceil(len(text) / 4).
    """
    seen_output = seen.output_tokens if seen else 0
    out_from_text = math.ceil(len(text) / 4)
    output = max(max_tokens, seen_output, out_from_text) if pessimistic else max(out_from_text, seen_output)
    if seen is not None and seen.total_input_tokens > 0:
        return Usage.of(
            input_tokens=seen.input_tokens,
            cache_read_tokens=seen.cache_read_tokens,
            cache_write_tokens=seen.cache_write_tokens,
            cache_write_1h_tokens=seen.cache_write_1h_tokens,
            web_search_requests=seen.web_search_requests,
            output_tokens=output,
            estimated=True,
        )
    return Usage.of(input_tokens=prompt_estimate, output_tokens=output, estimated=True)


# ------------------------------------------------------------------------------------------------- SSE


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEParser:
    """Server-sent events, a line at a time: ``event:`` / ``data:`` fields, a blank line ends an event, ``:``
    comments ignored (OpenRouter sends keep-alive comments). ``feed`` answers the event a line completes;
    ``end`` the last event when the stream stopped without its blank line."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.data: list[str] = []

    def feed(self, raw: str) -> SSEEvent | None:
        line = raw.rstrip("\r\n")
        if line == "":
            return self.end()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self.data.append(value)
        elif field == "event":
            self.name = value
        return None

    def end(self) -> SSEEvent | None:
        event = SSEEvent(self.name, "\n".join(self.data)) if self.data else None
        self.name, self.data = None, []
        return event


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """The events of a stream of decoded lines (see ``SSEParser``)."""
    parser = SSEParser()
    async for raw in lines:
        event = parser.feed(raw)
        if event is not None:
            yield event
    last = parser.end()
    if last is not None:
        yield last


# -------------------------------------------------------------------------------------------- pricing


def utcnow() -> datetime:
    """The adapters' default clock (adapters may read it; core never does)."""
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------- client skeleton


@dataclass(slots=True)
class StreamState:
    """What a stream delivered so far; survives a timeout so partial answers can still settle."""

    parts: list[str]
    request_id: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    raw_usage: dict[str, Any] | None = None  # the wire usage merged so far (Anthropic streams)
    done: bool = False
    interruption: str | None = None
    failure_kind: ProviderFailureKind | None = None
    failure_message: str | None = None
    rate_limit: RateLimitInfo | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class ChatClient:
    """The send / classify / stream skeleton both wire formats share. Subclasses fill in the hooks.

    The HTTP client is injected: an ``HttpBackend`` (``adapters/providers/http.py``: the lean client for real providers)
    or an ``httpx.AsyncClient`` (its transport decides whether the network is real); the client keeps no global
    state. ``clock`` is only used to turn an HTTP-date Retry-After into seconds when the
    response has no ``Date`` header.

    Secrets: failure messages pass through ``redact`` with the API key and every ``extra_headers`` value, so
    neither appears even when the server echoes the request back; credential-shaped strings are masked too.

    Output caps: ``max_output_tokens`` (the model's, from the price table) bounds the ``max_tokens`` given to
    ``complete``; ``token_param`` names the request field that carries it (OpenAI's current chat API and its
    reasoning models want ``max_completion_tokens``).

    Timeouts: ``timeout_s`` bounds the whole call (``asyncio.timeout``) and every HTTP step. Streams:
    an answer that stops early (connection dropped, timeout, error event, end without a finish) returns the
    text received with ``interrupted=True`` and a pessimistic estimated usage when any text arrived; when no
    text arrived it raises ``ProviderFailure`` (``timeout`` for timeouts, the error event's kind for error
    events, ``bad_response`` otherwise). Failing before any response arrived is ``server`` (connection
    refused, reset) or ``timeout``.
    """

    wire_format: WireFormat

    def __init__(
        self,
        client: HttpBackend | httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        *,
        extra_headers: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        max_output_tokens: int | None = None,
        token_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
    ) -> None:
        self._max_output = max_output_tokens
        self._token_param = token_param
        self._http = as_backend(client)
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._extra_headers = dict(extra_headers or {})
        self._clock = clock or utcnow
        self._header_cache: dict[bool, Mapping[str, str]] = {}

    # hooks ------------------------------------------------------------------------------------------
    def _url(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _headers(self, stream: bool) -> dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _body(
        self, model: str, messages: list[dict[str, Any]], max_tokens: int, stream: bool, extra: dict[str, Any]
    ) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rate_limit(self, headers: Mapping[str, str], now: datetime) -> RateLimitInfo:  # pragma: no cover
        raise NotImplementedError

    def _parse(self, data: Any, headers: Mapping[str, str]) -> StreamState:  # pragma: no cover - abstract
        """A complete (non-stream) answer into a state; raise ValueError/KeyError/TypeError if malformed."""
        raise NotImplementedError

    def _on_event(self, event: SSEEvent, state: StreamState) -> None:  # pragma: no cover - abstract
        """Fold one SSE event into ``state``; set ``done`` at the end, ``failure_*`` on an error event."""
        raise NotImplementedError

    def relay_body(self, body: dict[str, Any], *, model: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        """A client's own request body, to forward as is except for the model and the output cap (and what
        the wire format needs to report usage). Used by the gateway (``adapters/providers/relay.py``)."""
        out = dict(body)
        out.update(model=model, max_tokens=output_limit(max_tokens, self._max_output), stream=stream)
        return out

    # shared -----------------------------------------------------------------------------------------
    def prepare(self, n: int) -> None:
        """Have `n` connections to the provider opening ahead of the calls about to come, when the HTTP client can
        (the lean client: ``LeanBackend.prepare``); nothing otherwise. Never fails: a connection that cannot be
        opened now is opened (and its failure reported) by the call that needs it."""
        prepare = getattr(self._http, "prepare", None)
        if prepare is not None and n > 0:
            with contextlib.suppress(HttpError):  # (an unusable URL: the calls will say so)
                prepare(self._url(), n)

    def request_headers(self, stream: bool) -> Mapping[str, str]:
        """``_headers(stream)``, built once per client (the key and extra headers do not change): do not modify."""
        headers = self._header_cache.get(stream)
        if headers is None:
            headers = self._header_cache[stream] = self._headers(stream)
        return headers

    @property
    def _secrets(self) -> list[str]:
        """The key, and the values of any extra headers (a gateway may authenticate through one)."""
        values = [v for v in self._extra_headers.values() if len(v) >= 6]
        return [self._api_key, *values] if self._api_key else values

    def _failure(
        self,
        kind: ProviderFailureKind,
        message: str,
        *,
        status: int | None = None,
        rate_limit: RateLimitInfo | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ) -> ProviderFailure:
        return ProviderFailure(
            kind,
            message,
            status=status,
            retry_after_s=rate_limit.retry_after_s if rate_limit else None,
            rate_limit=rate_limit,
            request_id=request_id,
            provider_code=code,
            secrets=self._secrets,
        )

    def _http_failure(
        self, status: int, body_text: str, headers: Mapping[str, str], rate_limit: RateLimitInfo
    ) -> ProviderFailure:
        message, code = error_fields(body_text)
        kind = classify_http_failure(status, body_text)
        return self._failure(
            kind,
            f"{kind}: HTTP {status}: {message}",
            status=status,
            rate_limit=rate_limit,
            request_id=request_id_from(None, headers),
            code=code,
        )

    async def complete(
        self,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        timeout_s: float = 60.0,
        stream: bool = False,
        extra: dict[str, Any] | None = None,
        *,
        bounded: bool = False,
    ) -> CompletionResult:
        """One completion. Raises ``ProviderFailure``; see the class doc for streams that stop early.

        ``bounded``: the caller already ends the whole call within ``timeout_s`` (the runner's sub-task timeout,
        started earlier, does): an answer that is not streamed then sets no timer of its own for the whole call
        (the caller's fires first anyway), only the HTTP steps' (arming and cancelling a timer costs about 15 µs
        of the loop's time per call). A stream keeps its own: its timeout settles the text received so far."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        max_tokens = output_limit(max_tokens, self._max_output)  # never above what the model can emit
        body = self._body(model, messages, max_tokens, stream, dict(extra) if extra else {})
        prompt_estimate = estimate_prompt_tokens(messages)
        state = StreamState(parts=[])
        # (bounded and not streamed: the HTTP steps' timers only, no timer of this call's own)
        whole_call = contextlib.nullcontext() if bounded and not stream else asyncio.timeout(timeout_s)
        try:
            async with whole_call:
                if not stream:
                    return await self._once(body, timeout_s, prompt_estimate, max_tokens)
                await self._stream(body, timeout_s, state)
        except (TimeoutError, HttpTimeout):
            if not stream or state.rate_limit is None:
                raise self._failure("timeout", f"timeout: no complete answer within {timeout_s:g}s") from None
            state.interruption = state.interruption or "timeout"
        except HttpTransportError as exc:
            if not stream or state.rate_limit is None:
                raise self._failure("server", f"server: connection failed ({exc.kind})") from None
            # The stream had begun (status 200 and headers seen): an interruption, settled below.
            state.interruption = state.interruption or f"connection ({exc.kind})"
        return self._finish_stream(state, prompt_estimate, max_tokens)

    async def _once(
        self, body: dict[str, Any], timeout_s: float, prompt_estimate: int, max_tokens: int
    ) -> CompletionResult:
        resp = await self._http.post(self._url(), json_bytes(body), self.request_headers(False), timeout_s)
        now = response_now(resp.headers, self._clock())
        rate_limit = self._rate_limit(resp.headers, now)
        if resp.status_code >= 400:
            raise self._http_failure(resp.status_code, resp.text, resp.headers, rate_limit)
        try:
            data = json.loads(resp.content)
            state = self._parse(data, resp.headers)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise self._failure(
                "bad_response",
                f"bad_response: HTTP {resp.status_code}: unreadable answer ({type(exc).__name__})",
                status=resp.status_code,
                rate_limit=rate_limit,
                request_id=request_id_from(None, resp.headers),
            ) from None
        if state.failure_kind is not None:
            raise self._failure(
                state.failure_kind,
                f"{state.failure_kind}: {state.failure_message or 'error in a 200 answer'}",
                status=resp.status_code,
                rate_limit=rate_limit,
                request_id=state.request_id,
            )
        usage = state.usage
        if usage is None:
            usage = estimated_usage(prompt_estimate, max_tokens, state.text, None, pessimistic=False)
        return CompletionResult(
            text=state.text,
            usage=usage,
            model=state.model,
            request_id=state.request_id,
            finish_reason=state.finish_reason,
            rate_limit=rate_limit,
        )

    async def _stream(self, body: dict[str, Any], timeout_s: float, state: StreamState) -> None:
        resp = await self._http.open(self._url(), json_bytes(body), self.request_headers(True), timeout_s)
        try:
            now = response_now(resp.headers, self._clock())
            rate_limit = state.rate_limit = self._rate_limit(resp.headers, now)
            if resp.status_code >= 400:
                text = (await resp.aread()).decode("utf-8", "replace")
                raise self._http_failure(resp.status_code, text, resp.headers, rate_limit)
            state.request_id = request_id_from(None, resp.headers)
            async for event in iter_sse(resp.aiter_lines()):
                try:
                    self._on_event(event, state)
                except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                    state.failure_kind = "bad_response"
                    state.failure_message = f"unreadable stream event ({type(exc).__name__})"
                if state.failure_kind is not None:
                    state.interruption = state.failure_kind
                    break
                if state.done:
                    break
            if not state.done and state.interruption is None:
                state.interruption = "stream ended early"
        finally:
            await resp.aclose()

    def _finish_stream(self, state: StreamState, prompt_estimate: int, max_tokens: int) -> CompletionResult:
        rate_limit = state.rate_limit or _NO_LIMITS
        # A finish reason means the answer is whole even if the transport failed afterwards.
        complete = state.failure_kind is None and (state.done or state.finish_reason is not None)
        interrupted = not complete
        if interrupted and not state.text:
            kind: ProviderFailureKind = state.failure_kind or (
                "timeout" if state.interruption == "timeout" else "bad_response"
            )
            detail = state.failure_message or state.interruption or "stream ended early"
            raise self._failure(
                kind,
                f"{kind}: stream stopped before any text ({detail})",
                rate_limit=rate_limit,
                request_id=state.request_id,
            )
        lost = not interrupted and state.usage is None
        if interrupted or lost:
            # Cut, or whole but its usage chunk never came: the provider bills what it generated, which we
            # cannot see; settle at the request's limit (bounded by the model's output cap), marked estimated.
            usage = estimated_usage(prompt_estimate, max_tokens, state.text, state.usage, pessimistic=True)
        else:
            assert state.usage is not None
            usage = state.usage
        return CompletionResult(
            text=state.text,
            usage=usage,
            model=state.model,
            request_id=state.request_id,
            finish_reason=state.finish_reason if not interrupted else (state.finish_reason or "interrupted"),
            rate_limit=rate_limit,
            interrupted=interrupted,
            interruption=redact(state.interruption or "stream ended early", self._secrets) if interrupted else None,
            usage_lost=lost,
        )
