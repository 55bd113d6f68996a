"""A real HTTP server on 127.0.0.1 (ephemeral port) that speaks both provider wire formats, scriptable per test.

    server = start_fake_llm()            # zero latency unless a reply asks for a delay
    server.script(rate_limited("7"), ok(text="hi"))   # next two requests, in order; then the default
    client = OpenAICompatClient(http, server.base_url, "sk-test")   # base_url ends in /v1
    ...
    server.requests[0].headers["authorization"]
    server.close()

Routes: ``POST /v1/chat/completions`` (OpenAI shape) and ``POST /v1/messages`` (Anthropic shape). Whether an
answer streams (SSE) follows the request's ``"stream"``. Streams use chunked transfer encoding, so a reply
with ``drop_after_chunks`` closes the socket mid-body and the client sees an incomplete read; with
``drop_framing="eof"`` the body is close-delimited instead, and the client sees a clean but early EOF.

Import it as ``tests.servers.fake_llm`` from any test directory (``tests/adapters/conftest.py`` has a
``fake_llm`` fixture built on it). Stdlib only (``http.server``), one thread per connection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = [
    "FakeLLM",
    "RecordedRequest",
    "Reply",
    "dropped",
    "hostile",
    "hostile_echoes",
    "insufficient_quota",
    "malformed",
    "ok",
    "overloaded",
    "rate_limited",
    "server_error",
    "slow",
    "start_fake_llm",
    "unauthorized",
]

UsageLocation = Literal["standard", "x_groq", "choice", "every_chunk", "none"]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Token fields are wire values: OpenAI ``prompt_tokens`` (cached tokens are
    inside it) or Anthropic ``input_tokens`` (cache reads/writes are not)."""

    status: int = 200
    text: str = "Hello from the fake LLM."
    model: str | None = None  # default: the request's model
    delay_s: float = 0.0  # before the status line
    chunk_delay_s: float = 0.0  # between stream events
    chunk_chars: int = 8
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None  # OpenAI-shape usage.cost, as OpenRouter sends
    finish_reason: str | None = None  # default stop / end_turn
    request_id: str | None = None  # default req-<n>
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None  # sent as is (malformed JSON and the like)
    json_body: Any = None  # sent as JSON instead of the normal answer
    usage_location: UsageLocation = "standard"
    drop_after_chunks: int | None = None  # stream: close the connection after this many SSE events
    drop_framing: Literal["chunked", "eof"] = "chunked"
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    echo_auth: bool = False  # the error body echoes the credential headers back
    hostile: bool = False  # echo the credential every way it can: body, headers, text, stripped, partial, base64
    sse_events: tuple[str, ...] | None = None  # a stream sends these events verbatim (documented shapes)


def ok(**kw: Any) -> Reply:
    return Reply(**kw)


def slow(delay_s: float, **kw: Any) -> Reply:
    return Reply(delay_s=delay_s, **kw)


def rate_limited(retry_after: str | None = "7", **kw: Any) -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    headers.update(kw.pop("headers", {}))
    return Reply(
        status=429,
        headers=headers,
        error_type=kw.pop("error_type", "rate_limit_error"),
        error_code=kw.pop("error_code", "rate_limit_exceeded"),
        error_message=kw.pop(
            "error_message", "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1."
        ),
        **kw,
    )


def insufficient_quota(**kw: Any) -> Reply:
    return Reply(
        status=429,
        error_type="insufficient_quota",
        error_code="insufficient_quota",
        error_message="You exceeded your current quota, please check your plan and billing details.",
        **kw,
    )


def server_error(status: int = 500, **kw: Any) -> Reply:
    return Reply(status=status, error_type="server_error", error_message="The server had an error.", **kw)


def overloaded(**kw: Any) -> Reply:
    return Reply(status=529, error_type="overloaded_error", error_message="Overloaded", **kw)


def unauthorized(echo_auth: bool = True, **kw: Any) -> Reply:
    return Reply(
        status=401,
        error_type="authentication_error",
        error_code="invalid_api_key",
        error_message="Incorrect API key provided.",
        echo_auth=echo_auth,
        **kw,
    )


# Prefixes a hostile server strips before echoing the rest (its own list: it does not borrow Butler's).
_ECHO_PREFIXES = ("sk-ant-api03-", "sk-or-v1-", "sk-proj-", "nvapi-", "gsk_", "sk-", "TEST_API_KEY:")


def hostile_echoes(credential: str) -> list[str]:
    """Every form in which a hostile server repeats a credential: whole, prefix stripped, partial runs of
    16 and 11 characters from the start, middle and end, and base64 of the header and of the bare key."""
    body = credential
    for prefix in _ECHO_PREFIXES:
        if credential.startswith(prefix):
            body = credential[len(prefix):]
            break
    mid = len(body) // 2
    import base64

    return [
        credential,
        body,
        body[:16], body[mid - 8:mid + 8], body[-16:],
        body[3:14], body[-11:],
        base64.b64encode(f"Bearer {credential}".encode()).decode(),
        base64.b64encode(f"x:{credential}".encode()).decode(),
    ]


def hostile(status: int = 200, **kw: Any) -> Reply:
    """A provider that echoes the credential it received in every way it can (see ``hostile_echoes``): in
    the error body (401/429/500...), in response headers, and inside a 200 completion's text, which streams
    in 3-character pieces so each echo is split across SSE chunks."""
    kinds = {401: ("authentication_error", "invalid_api_key"), 429: ("rate_limit_error", "rate_limit_exceeded"),
             403: ("permission_error", "forbidden")}
    etype, code = kinds.get(status, ("server_error", None))
    return Reply(status=status, hostile=True, echo_auth=status >= 400, error_type=etype, error_code=code,
                 error_message="Request refused.", chunk_chars=3,
                 headers={"retry-after": "0"} if status == 429 else {}, **kw)


def malformed(**kw: Any) -> Reply:
    return Reply(raw_body=b'{"id": "chatcmpl-broken", "choices": [', **kw)


def dropped(after_chunks: int = 2, **kw: Any) -> Reply:
    return Reply(drop_after_chunks=after_chunks, **kw)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of concurrent connects overflows it and the kernel
    # retries the SYN a second later, which would show up as fake latency in benchmarks.
    request_queue_size = 1024

    def __init__(self, owner: FakeLLM) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on purpose in these tests (timeouts, drops): not worth a traceback on stderr.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Drop(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # -- routing --------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        recorded = RecordedRequest(
            method="POST",
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        reply, n = owner._next(recorded)
        if self.path.endswith("/chat/completions"):
            fmt = "openai"
        elif self.path.endswith("/messages"):
            fmt = "anthropic"
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        if reply.delay_s and owner._stop.wait(reply.delay_s):
            return
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            request = {}
        if not isinstance(request, dict):
            request = {}
        rid = reply.request_id or f"req-{n}"
        id_header = "x-request-id" if fmt == "openai" else "request-id"
        headers = {id_header: rid, **reply.headers}
        if reply.hostile:
            cred = self._credential(recorded)
            echoes = hostile_echoes(cred) if cred else []
            rid = f"req-{n}-{cred}"  # the request id a client may store
            headers = {**headers, id_header: rid, "x-echo-authorization": cred,
                       "www-authenticate": f'Bearer error="invalid_token", token="{cred}"',
                       **{f"x-echo-{i}": e for i, e in enumerate(echoes)}}
            if reply.status < 400:
                reply = replace(reply, text="Sure. The key you sent: " + " / ".join(echoes) + " - done.")
        if reply.raw_body is not None:
            self._send(reply.status, reply.raw_body, "application/json", headers)
            return
        if reply.json_body is not None:
            self._send_json(reply.status, reply.json_body, headers)
            return
        if reply.status >= 400:
            self._send_json(reply.status, self._error_body(fmt, reply, recorded), headers)
            return
        model = reply.model or str(request.get("model") or "fake-model")
        try:
            if request.get("stream") and reply.sse_events is not None:
                self._send_stream(reply, [e.encode() for e in reply.sse_events], headers)
            elif request.get("stream"):
                events = (self._openai_events if fmt == "openai" else self._anthropic_events)(reply, model, rid)
                self._send_stream(reply, events, headers)
            else:
                payload = (self._openai_json if fmt == "openai" else self._anthropic_json)(reply, model, rid)
                self._send_json(200, payload, headers)
        except (_Drop, OSError):
            self.close_connection = True

    # -- bodies ---------------------------------------------------------------------------------------
    @staticmethod
    def _credential(recorded: RecordedRequest) -> str:
        for name in ("authorization", "x-api-key"):
            value = recorded.headers.get(name)
            if value:
                return value.removeprefix("Bearer ")
        return ""

    def _error_body(self, fmt: str, reply: Reply, recorded: RecordedRequest) -> dict[str, Any]:
        message = reply.error_message or "error"
        if reply.hostile:
            cred = self._credential(recorded)
            message = f"{message} Echo: " + " | ".join(hostile_echoes(cred)) if cred else message
        if reply.echo_auth:
            # Echo the credential bare (as "Incorrect API key provided: <key>" messages do), every header
            # value bare, and the whole header dict: a client must mask all three.
            creds = [
                v.removeprefix("Bearer ") for k, v in recorded.headers.items() if k in ("authorization", "x-api-key")
            ]
            values = " | ".join(recorded.headers.values())
            message = (f"{message} Key provided: {'; '.join(creds)}. Header values: {values}. "
                       f"Request headers: {recorded.headers}")
        if fmt == "anthropic":
            return {"type": "error", "error": {"type": reply.error_type or "api_error", "message": message}}
        return {
            "error": {
                "message": message,
                "type": reply.error_type or "server_error",
                "param": None,
                "code": reply.error_code,
            }
        }

    @staticmethod
    def _openai_usage(reply: Reply, completion: int | None = None) -> dict[str, Any]:
        ct = reply.completion_tokens if completion is None else completion
        usage: dict[str, Any] = {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": ct,
            "total_tokens": reply.prompt_tokens + ct,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        }
        if reply.cost is not None:
            usage["cost"] = reply.cost
        return usage

    @staticmethod
    def _anthropic_usage(reply: Reply, output: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": reply.prompt_tokens,
            "output_tokens": reply.completion_tokens if output is None else output,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
        }

    @staticmethod
    def _openai_json(reply: Reply, model: str, rid: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason or "stop",
                }
            ],
        }
        if reply.usage_location != "none":
            payload["usage"] = _Handler._openai_usage(reply)
        return payload

    @staticmethod
    def _anthropic_json(reply: Reply, model: str, rid: str) -> dict[str, Any]:
        return {
            "id": rid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": reply.finish_reason or "end_turn",
            "stop_sequence": None,
            "usage": _Handler._anthropic_usage(reply),
        }

    @staticmethod
    def _pieces(reply: Reply) -> list[str]:
        n = max(1, reply.chunk_chars)
        return [reply.text[i : i + n] for i in range(0, len(reply.text), n)]

    def _openai_events(self, reply: Reply, model: str, rid: str) -> list[bytes]:
        loc = reply.usage_location
        pieces = self._pieces(reply)

        def chunk(choices: list[dict[str, Any]], usage: Any = None, **extra: Any) -> bytes:
            payload = {
                "id": rid, "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": choices, "usage": usage, **extra,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        events = [b": keep-alive comment\n\n"]
        events.append(chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
        for i, piece in enumerate(pieces, start=1):
            # every_chunk: a running usage on every chunk (some servers do that); only the last one is final.
            usage = self._openai_usage(reply, completion=i) if loc == "every_chunk" else None
            events.append(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}], usage))
        finish: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason or "stop"}
        if loc == "choice":
            finish["usage"] = self._openai_usage(reply)
        if loc == "x_groq":
            events.append(chunk([finish], None, x_groq={"id": rid, "usage": self._openai_usage(reply)}))
        elif loc == "every_chunk":
            events.append(chunk([finish], self._openai_usage(reply)))
        else:
            events.append(chunk([finish]))
        if loc == "standard":
            events.append(chunk([], self._openai_usage(reply)))
        events.append(b"data: [DONE]\n\n")
        return events

    def _anthropic_events(self, reply: Reply, model: str, rid: str) -> list[bytes]:
        def ev(name: str, payload: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()

        start_usage = self._anthropic_usage(reply, output=1)
        events = [
            ev("message_start", {"type": "message_start", "message": {
                "id": rid, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
            ev("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
            ev("ping", {"type": "ping"}),
        ]
        pieces = self._pieces(reply)
        for i, piece in enumerate(pieces, start=1):
            events.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                     "delta": {"type": "text_delta", "text": piece}}))
            if reply.usage_location == "every_chunk" and i < len(pieces):
                # Cumulative running counts: a client that adds them up overcounts.
                events.append(ev("message_delta", {"type": "message_delta",
                                                   "delta": {"stop_reason": None, "stop_sequence": None},
                                                   "usage": {"output_tokens": i}}))
        events.append(ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
        final_usage: dict[str, Any] = {"output_tokens": reply.completion_tokens}
        events.append(ev("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": reply.finish_reason or "end_turn",
                                                     "stop_sequence": None},
                                           "usage": final_usage}))
        events.append(ev("message_stop", {"type": "message_stop"}))
        return events

    # -- writing --------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_stream(self, reply: Reply, events: list[bytes], headers: dict[str, str]) -> None:
        chunked = reply.drop_framing == "chunked"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        if chunked:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("connection", "close")
            self.close_connection = True
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        stop = self.server.owner._stop
        for i, event in enumerate(events):
            if reply.drop_after_chunks is not None and i >= reply.drop_after_chunks:
                self._drop()
            if reply.chunk_delay_s and stop.wait(reply.chunk_delay_s):
                self._drop()
            self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n" if chunked else event)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _drop(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Drop


class FakeLLM:
    """Handle on a running fake server. ``requests`` is a list of ``RecordedRequest`` in arrival order."""

    def __init__(self, default: Reply | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._stop = threading.Event()
        self.default = default or Reply()
        self.requests: list[RecordedRequest] = []
        self._server = _Server(self)
        host, port = self._server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.origin = f"http://{self.host}:{self.port}"
        self.base_url = f"{self.origin}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
        )
        self._thread.start()

    def script(self, *replies: Reply) -> FakeLLM:
        """Queue replies for the next requests, in order; afterwards ``default`` answers."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def set_default(self, reply: Reply) -> None:
        with self._lock:
            self.default = reply

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default = Reply()

    def _next(self, recorded: RecordedRequest) -> tuple[Reply, int]:
        with self._lock:
            self.requests.append(recorded)
            reply = self._queue.popleft() if self._queue else self.default
            return replace(reply), len(self.requests)

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_fake_llm(default: Reply | None = None) -> FakeLLM:
    """Start a server on 127.0.0.1 with an ephemeral port. No delay anywhere unless a reply asks for one,
    so it doubles as the zero-latency upstream for benchmarks."""
    return FakeLLM(default)
