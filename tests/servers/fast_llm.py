"""The fake provider for load benchmarks: the same answers as ``fake_llm`` (OpenAI and Anthropic JSON, built by its
own body functions), served by one asyncio event loop instead of a thread per connection.

Why it exists: ``fake_llm``'s ``ThreadingHTTPServer`` costs about 0.4 ms of CPU per request (``http.server``'s
pure-Python parsing, a thread wake-up per connection, all under one GIL). At 100 requests in flight that is
~40 ms of server CPU per wave of 100 answers, so a 50 ms provider really answered in 50-90 ms and every client
measured against it looked slower than it is (``bench_clients.py`` prints the server's CPU beside each client).
Here a request costs the server a few tens of microseconds, and the delay is a timer, not a sleeping thread.

    server = start_fast_llm(slow(0.05, text="ok"))   # every POST gets this reply, after its delay
    ...  server.base_url ends in /v1; server.count is how many requests were answered
    server.close()

Only what a load benchmark needs: HTTP/1.1 keep-alive with ``content-length`` request bodies, non-stream answers
(a stream request gets a 400), no scripting (one reply for every request), no recorded requests.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from tests.servers.fake_llm import Reply, _Handler

__all__ = ["FastLLM", "start_fast_llm"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: FastLLM) -> None:
        self.owner = owner
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            method, path = [*lines[0].split(" "), "", ""][:2]
            self.owner._answer(self, method, path, body)

    def send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "content-type: application/json",
                f"content-length: {len(payload)}", *(f"{k}: {v}" for k, v in headers.items())]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)


class FastLLM:
    """Handle on a running fast fake server (its own thread and event loop)."""

    def __init__(self, reply: Reply) -> None:
        if reply.status != 200 or reply.raw_body is not None or reply.json_body is not None or reply.hostile:
            raise ValueError("the fast fake server answers plain 200 replies only (use fake_llm for the rest)")
        self.reply = reply
        self.count = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="fast-llm", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        self.host, self.port = str(host), int(port)
        self.origin = f"http://{self.host}:{self.port}"
        self.base_url = f"{self.origin}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await self._loop.create_server(lambda: _Protocol(self), "127.0.0.1", 0, backlog=1024)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def _answer(self, proto: _Protocol, method: str, path: str, body: bytes) -> None:
        self.count += 1
        n = self.count
        reply = self.reply
        if method != "POST" or not path.endswith(("/chat/completions", "/messages")):
            proto.send(404, b'{"error": {"message": "not found", "type": "not_found"}}', {})
            return
        try:
            request: Any = json.loads(body) if body else {}
        except ValueError:
            request = {}
        if not isinstance(request, dict):
            request = {}
        if request.get("stream"):
            proto.send(400, b'{"error": {"message": "the fast fake server does not stream"}}', {})
            return
        openai = path.endswith("/chat/completions")
        rid = reply.request_id or f"req-{n}"
        model = reply.model or str(request.get("model") or "fake-model")
        payload = (_Handler._openai_json if openai else _Handler._anthropic_json)(reply, model, rid)
        headers = {"x-request-id" if openai else "request-id": rid, **reply.headers}
        data = json.dumps(payload).encode()
        if reply.delay_s:
            self._loop.call_later(reply.delay_s, proto.send, reply.status, data, headers)
        else:
            proto.send(reply.status, data, headers)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FastLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_fast_llm(reply: Reply | None = None) -> FastLLM:
    return FastLLM(reply or Reply())
