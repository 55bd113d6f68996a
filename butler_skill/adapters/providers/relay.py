"""Forward a client's own request through a provider adapter, and report what the provider said.

The gateway does not rebuild requests: it sends the client's body (with the key's model, the granted output
cap and, for OpenAI streams, ``stream_options.include_usage``) through the same ``ChatClient`` the sub-agent
runner uses, so URLs, headers, the real key, failure classification, Retry-After, rate-limit headers and the
redaction of anything the provider echoes back are shared. Answers pass through untouched: a non-stream
body as bytes, a stream event by event as it arrives (nothing is buffered beyond one SSE event), while the
adapter's own parser folds each event into a ``StreamState`` to find the usage.

A module of the adapters package: it uses the ``ChatClient`` hooks (``_url``, ``_headers``, ``_parse``,
``_on_event``...) as a friend, so each wire format is still described in one place.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from butler_skill.adapters.providers.base import (
    ChatClient,
    RateLimitInfo,
    SSEEvent,
    SSEParser,
    StreamState,
    Usage,
    estimated_usage,
    output_limit,
    redact,
    request_id_from,
    response_now,
)
from butler_skill.adapters.providers.http import HttpError, HttpStream, HttpTimeout, HttpTransportError, json_bytes

__all__ = ["RelayedEvent", "Upstream", "open_upstream"]


@dataclass(frozen=True, slots=True)
class RelayedEvent:
    raw: bytes  # the event exactly as received, blank line included
    event: SSEEvent


@dataclass
class Upstream:
    """An upstream answer with status < 400, open until ``aclose``."""

    client: ChatClient
    response: HttpStream  # status_code, headers, aread(), aiter_lines(); raises HttpError when the network fails
    rate_limit: RateLimitInfo
    stream: bool
    state: StreamState = field(default_factory=lambda: StreamState(parts=[]))
    closed: bool = False

    @property
    def secrets(self) -> list[str]:
        return self.client._secrets

    async def read(self) -> bytes:
        """The whole (non-stream) answer; its usage lands in ``state``. A 200 that is really an error (or
        unreadable) raises ``ProviderFailure``."""
        content = await self.response.aread()
        c = self.client
        try:
            self.state = c._parse(json.loads(content), self.response.headers)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise c._failure("bad_response", f"bad_response: unreadable answer ({type(exc).__name__})",
                             status=self.response.status_code, rate_limit=self.rate_limit,
                             request_id=request_id_from(None, self.response.headers)) from None
        if self.state.failure_kind is not None:
            raise c._failure(self.state.failure_kind,
                             f"{self.state.failure_kind}: {self.state.failure_message or 'error in a 200 answer'}",
                             status=self.response.status_code, rate_limit=self.rate_limit,
                             request_id=self.state.request_id)
        self.state.done = True
        return content

    async def events(self) -> AsyncIterator[RelayedEvent]:
        """The stream's SSE events as they arrive, each folded into ``state`` before it is yielded."""
        state = self.state
        if state.request_id is None:
            state.request_id = request_id_from(None, self.response.headers)
        raw: list[str] = []
        parser = SSEParser()
        async for line in self.response.aiter_lines():
            raw.append(line)
            event = parser.feed(line)
            if event is not None:
                self._fold(event)
                yield RelayedEvent(("\n".join(raw) + "\n").encode(), event)
                raw = []
            elif line.rstrip("\r\n") == "":
                if any(r.strip() for r in raw):  # comments only (keep-alives): pass them on
                    yield RelayedEvent(("\n".join(raw) + "\n").encode(), SSEEvent(None, ""))
                raw = []
        last = parser.end()
        if last is not None:  # a last event without its blank line
            self._fold(last)
            yield RelayedEvent(("\n".join(raw) + "\n\n").encode(), last)

    def _fold(self, event: SSEEvent) -> None:
        try:
            self.client._on_event(event, self.state)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            self.state.failure_kind = "bad_response"
            self.state.failure_message = f"unreadable stream event ({type(exc).__name__})"

    @property
    def complete(self) -> bool:
        s = self.state
        return s.failure_kind is None and (s.done or s.finish_reason is not None)

    def usage(self, prompt_estimate: int, max_tokens: int) -> Usage:
        """What to settle: the provider's usage when the answer completed with it; an estimate marked
        ``estimated`` otherwise (pessimistic, up to the output cap, when a stream was cut off or its usage chunk
        was lost, since the provider may bill what it generated anyway; from the text for a whole JSON answer
        without usage)."""
        s = self.state
        # The pessimistic figure never exceeds what the model can emit (its output cap, from the price table).
        limit = output_limit(max_tokens, self.client._max_output)
        if self.complete and s.usage is not None:
            return s.usage
        if self.complete:
            # A whole stream whose usage chunk never came may have billed hidden (reasoning) output: be
            # pessimistic there too (marked estimated); a whole JSON answer without usage is read from its text.
            return estimated_usage(prompt_estimate, limit, s.text, None, pessimistic=self.stream)
        if s.usage is not None and s.finish_reason is not None:
            return s.usage
        return estimated_usage(prompt_estimate, limit, s.text, s.usage, pessimistic=True)

    def redacted(self, text: str) -> str:
        return redact(text, self.secrets)

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.response.aclose()


async def open_upstream(client: ChatClient, body: dict[str, Any], *, stream: bool, timeout_s: float) -> Upstream:
    """Send `body` (already through ``client.relay_body``) and wait for the status line.

    An HTTP error, a refused connection or a timeout raises ``ProviderFailure`` (classified, Retry-After
    read, the provider's text redacted) before the client has seen anything, so the caller may still try
    another key.
    """
    try:
        response = await client._http.open(client._url(), json_bytes(body), client.request_headers(stream), timeout_s)
    except HttpTimeout:
        raise client._failure("timeout", f"timeout: no answer within {timeout_s:g}s") from None
    except HttpTransportError as exc:
        raise client._failure("server", f"server: connection failed ({exc.kind})") from None
    now = response_now(response.headers, client._clock())
    rate_limit = client._rate_limit(response.headers, now)
    if response.status_code >= 400:
        try:
            text = (await response.aread()).decode("utf-8", "replace")
        except HttpError:
            text = ""
        finally:
            await response.aclose()
        raise client._http_failure(response.status_code, text, response.headers, rate_limit)
    return Upstream(client, response, rate_limit, stream)
