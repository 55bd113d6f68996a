"""A lean HTTP/1.1 client for provider calls: asyncio's Protocol/Transport and httptools' C response parser
(llhttp, the parser Node.js uses; already installed for uvicorn). It implements ``HttpBackend`` (``http.py``).

Why: at 100 requests in flight aiohttp spent about 0.27 ms of CPU per request on loopback and a plain asyncio
client 0.07 ms (``benchmarks/bench_clients.py``); a sub-task's HTTP work is most of what Butler's process does
while 1,000 of them run. Here a request is one ``transport.write`` of the head and body, the answer's bytes go
straight from the socket callback into llhttp, and the caller's task wakes once, when the whole answer is in
(``post``) or when its headers are (``open``). No per-request task, stream reader, multidict or URL object.

What it does:

* a keep-alive pool per origin (scheme, host, port), at most ``max_connections`` open to each; the most recently
  used idle connection is reused first; idle connections close after ``keepalive_s`` (4 s: under the 5 s idle
  timeout of uvicorn and Node's HTTP server, so Butler usually closes first) and as soon as the server closes them;
* TLS with the context given (Butler passes httpx's: certifi's CAs or ``SSL_CERT_FILE``), SNI, ALPN
  ``http/1.1``; a certificate that does not verify is a transport error;
* ``Content-Length``, chunked and read-until-close answers; 1xx interim answers are skipped;
* SSE streams line by line (``LineSplitter``), with flow control (reading pauses while 256 KiB wait unread);
* ``timeout_s`` per step, as the other backends: waiting for a pooled connection, connecting (TLS included), and
  each wait for the next byte of the answer (one watchdog notices a silence within a tenth of ``timeout_s`` after
  it, at most a second); the caller bounds the whole call (``ChatClient.complete`` does, with ``asyncio.timeout``);
* an answer body above ``max_body_bytes`` (64 MiB) is a transport error, not memory exhaustion;
* ``Accept-Encoding: identity``: completions are small JSON and SSE streams, where compression saves little
  bandwidth, costs CPU on both ends and makes the server buffer events; a server that compresses anyway
  (gzip or deflate) is still understood (``zlib``, bounded by the same cap); any other encoding is an error;
* cancellation (``asyncio.timeout`` around a call, a cancelled sub-task) closes the connection it was using
  (its state is unknown) and gives its slot back;
* proxies: when the environment names a proxy for a URL (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, less
  ``NO_PROXY``: ``http._proxy_for``), that call goes through ``AiohttpBackend`` instead, which speaks to proxies
  (CONNECT tunnels); this client never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httptools

from butler_skill.adapters.providers.http import (
    HttpBackend,
    HttpError,
    HttpResponse,
    HttpStream,
    HttpTimeout,
    HttpTransportError,
    LineSplitter,
    LowerCaseHeaders,
    _proxy_for,
)

__all__ = ["Headers", "LeanBackend"]

_MISSING: Final = object()
_HIGH_WATER = 256 * 1024  # unread streamed bytes before reading pauses
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding"})
_USER_AGENT_LINE = "user-agent: butler-skill\r\n"


class Headers(LowerCaseHeaders):
    """An answer's headers: names in lower case (repeated headers joined with ", "); lookups in any case."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        value = dict.get(self, key, _MISSING)
        if value is _MISSING:
            return dict.get(self, key.lower(), default) if isinstance(key, str) else default
        return value

    def __getitem__(self, key: str) -> str:
        try:
            return dict.__getitem__(self, key)
        except KeyError:
            if isinstance(key, str) and key != key.lower():
                return dict.__getitem__(self, key.lower())
            raise

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and dict.__contains__(self, key.lower()))


class _Stale(Exception):
    """A reused connection closed before any byte of the answer arrived (see ``LeanBackend._exchange``)."""


# Exchange states of a connection.
_IDLE, _HEAD, _BODY, _DONE = 0, 1, 2, 3


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time. llhttp calls the ``on_*`` methods from ``feed_data``."""

    __slots__ = (
        "body", "buffered", "decoder", "eof_body", "error", "exchange", "headers", "interim", "keep_alive", "last",
        "loop", "open", "parser", "paused", "pool", "raw", "reader", "received", "reused", "served", "size", "state",
        "status",
        "stream", "timeout", "transport", "waiter",
    )

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.open = False
        self.reused = False  # this exchange runs on a connection that had served an answer before
        self.served = False  # some exchange on this connection ended with its whole answer
        self.last = 0.0  # idle since (in the pool), or the time of the last byte (in an exchange)
        self.state = _IDLE
        self.waiter: asyncio.Future[Any] | None = None  # the caller: the whole answer (post) or its head (open)
        self.exchange: object | None = None  # the current exchange's token (its waiter) until the pool has it back
        self.reader: asyncio.Future[None] | None = None  # a stream's reader waiting for more body
        self.timeout = 0.0
        self.raw: dict[str, str] = {}
        self.eof_body = False
        self.keep_alive = False
        self.paused = False
        self._fresh(False)

    def _fresh(self, stream: bool) -> None:
        """The state of one exchange, as it begins (set here only: by ``__init__`` and by ``start``)."""
        self.stream = stream
        self.status = 0
        self.headers: Headers | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.buffered = 0
        self.received = False
        self.interim = False
        self.decoder: Any = None
        self.error: HttpError | None = None

    # --------------------------------------------------------------------------------- transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's transports are not asyncio classes)
        self.open = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio and uvloop set it already; without it Nagle would hold a body written after its head.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.state == _IDLE or self.state == _DONE:
            # Bytes nobody asked for (an idle connection, or after a whole answer): the stream is out of step.
            self._close()
            return
        self.received = True
        self.last = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            error = HttpTransportError("HttpParserUpgrade")
        except httptools.HttpParserError:
            # A callback may have refused the answer (too large, unknown encoding) and said why.
            error = self.error or HttpTransportError("HttpParserError")
        else:
            return
        if self.state == _HEAD or self.state == _BODY:
            self._fail(error)
        else:  # more bytes after a whole answer (already handed over): the connection is out of step
            self._close()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.transport = None
        self.pool.lost(self)
        state = self.state
        if state in (_HEAD, _BODY):
            if state == _BODY and self.eof_body and exc is None:
                self._complete()  # an answer without length or chunks ends when the server closes
            elif not self.received and self.reused:
                self._fail(_Stale())  # type: ignore[arg-type]
            else:
                self._fail(HttpTransportError(type(exc).__name__ if exc is not None else "ServerDisconnected"))

    # ------------------------------------------------------------------------------------ llhttp events
    def on_message_begin(self) -> None:
        if self.state != _HEAD and self.state != _BODY:
            raise HttpTransportError("UnexpectedAnswer")  # stops llhttp: an answer nobody asked for
        self.raw = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        raw = self.raw
        raw[key] = f"{raw[key]}, {text}" if key in raw else text

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200 and status != 101:
            self.interim = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self.status = status
        raw = self.raw
        headers = self.headers = Headers(raw)
        self.state = _BODY
        self.eof_body = "content-length" not in raw and "transfer-encoding" not in raw and status not in (204, 304)
        encoding = raw.get("content-encoding")
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            if encoding.strip().lower() in ("gzip", "x-gzip", "deflate"):
                self.decoder = zlib.decompressobj(47)  # gzip or zlib header, detected
            else:
                self.error = HttpTransportError("UnsupportedContentEncoding")
                raise self.error  # stops llhttp; data_received reports it
        if self.stream:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result((status, headers))

    def on_body(self, data: bytes) -> None:
        if self.decoder is not None:
            try:
                data = self.decoder.decompress(data, self.pool.max_body - self.size + 1)
            except zlib.error:
                self.error = HttpTransportError("BadContentEncoding")
                raise self.error from None
        size = self.size = self.size + len(data)
        if size > self.pool.max_body:
            self.error = HttpTransportError("BodyTooLarge")
            raise self.error
        self.body.append(data)
        if self.stream:
            self._wake_reader()
            self.buffered += len(data)
            if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._complete()

    # ------------------------------------------------------------------------------------------ exchange
    def start(self, request: bytes, stream: bool, timeout_s: float) -> asyncio.Future[Any]:
        """Send a request; the future answers ``HttpResponse`` (post) or ``(status, headers)`` (open)."""
        assert self.transport is not None and self.state in (_IDLE, _DONE)
        self.state = _HEAD
        self._fresh(stream)
        waiter = self.waiter = self.exchange = self.loop.create_future()
        self.timeout = timeout_s
        self.last = now = self.loop.time()
        self.pool.backend._watch(self, now)
        self.transport.write(request)
        return waiter

    def check(self, now: float) -> None:
        """The watchdog's look (``LeanBackend._tick``): fail the exchange when the server has been silent for
        ``timeout`` while we waited for it."""
        if self.state != _HEAD and self.state != _BODY:
            self.pool.backend._watched.discard(self)
        elif self.paused or (self.stream and self.state == _BODY and self.reader is None):
            self.last = now  # not the server's silence: the reader has not asked for more yet
        elif now - self.last >= self.timeout:
            self._fail(HttpTimeout("read" if self.received else "no answer"))

    def _complete(self) -> None:
        if self.decoder is not None:
            try:
                tail = self.decoder.flush()
            except zlib.error:  # pragma: no cover - flush reports only what decompress accepted
                self._fail(HttpTransportError("BadContentEncoding"))
                return
            if tail:
                self.size += len(tail)
                if self.size > self.pool.max_body:
                    self._fail(HttpTransportError("BodyTooLarge"))
                    return
                self.body.append(tail)
        self.state = _DONE
        self.pool.backend._watched.discard(self)
        if self.stream:
            self._wake_reader()
            return
        # A whole answer: hand it over and give the connection back at once (the caller needs nothing more).
        waiter = self.waiter
        self.waiter = None
        body = self.body
        content = body[0] if len(body) == 1 else b"".join(body)
        self.body = []
        assert self.headers is not None
        response = HttpResponse(self.status, self.headers, content)
        self.pool.release(self, self.keep_alive)
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, error: HttpError) -> None:
        """The exchange failed: report it and close (the connection's state is unknown now). A whole answer's
        connection goes back to the pool (to be dropped) at once; a stream's when its owner lets go of it."""
        if self.state != _HEAD and self.state != _BODY:
            return
        self.state = _DONE
        self.error = error
        self.keep_alive = False
        self.pool.backend._watched.discard(self)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self._wake_reader()
        if not self.stream:
            self.waiter = None
            self.pool.release(self, False)
        else:
            self._close()

    def _wake_reader(self) -> None:
        reader = self.reader
        if reader is not None:
            self.reader = None
            if not reader.done():
                reader.set_result(None)

    def _close(self) -> None:
        transport = self.transport
        if transport is not None:
            self.open = False
            transport.abort()  # nothing to flush: a request was either fully sent or is abandoned

    def abandon(self, token: object) -> None:
        """The owner of exchange ``token`` lets go of it before its end (cancelled, failed, stream closed early):
        the connection closes. Nothing happens when the exchange is over and the pool has the connection back
        (it may already serve someone else)."""
        if self.exchange is not token:
            return
        self.pool.backend._watched.discard(self)
        self.waiter = None
        self.reader = None
        if self.state != _DONE:
            self.state = _DONE
            self.error = HttpTransportError("Cancelled")
        self.pool.release(self, False)

    # ------------------------------------------------------------------------------------ stream reading
    async def next_chunk(self) -> bytes:
        """The next piece of a streamed body, b"" at its end; raises the exchange's error."""
        while True:
            if self.body:
                body = self.body
                data = body[0] if len(body) == 1 else b"".join(body)
                self.body = []
                self.buffered = 0
                if self.paused and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()
                return data
            if self.error is not None:
                raise self.error
            if self.state == _DONE:
                return b""
            reader = self.reader = self.loop.create_future()
            self.last = self.loop.time()
            await reader


class _LeanStream:
    """An answer whose head has arrived (``HttpStream``); its connection returns to the pool once the body has
    been read to its end and the stream is closed, and is closed instead when the stream is closed early."""

    def __init__(self, conn: _Connection, token: object, status: int, headers: Headers) -> None:
        self._conn: _Connection | None = conn
        self._token = token
        self.status_code = status
        self.headers: Mapping[str, str] = headers

    async def aread(self) -> bytes:
        conn = self._conn
        if conn is None:
            return b""
        chunks = []
        while chunk := await self._chunk(conn):
            chunks.append(chunk)
        return b"".join(chunks)

    async def _chunk(self, conn: _Connection) -> bytes:
        try:
            return await conn.next_chunk()
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def aiter_lines(self) -> AsyncIterator[str]:
        conn = self._conn
        if conn is None:
            return
        splitter = LineSplitter()
        while chunk := await self._chunk(conn):
            for line in splitter.feed(chunk):
                yield line
        for line in splitter.end():
            yield line

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.exchange is not self._token:
            return
        if conn.state == _DONE and conn.error is None:
            conn.pool.release(conn, conn.keep_alive)
        else:
            conn.abandon(self._token)


class _Pool:
    """The connections to one origin: at most ``limit`` open; callers beyond it wait, first come first served."""

    def __init__(self, backend: LeanBackend, loop: asyncio.AbstractEventLoop, scheme: str, host: str,
                 port: int) -> None:
        self.backend = backend
        self.loop = loop
        self.host = host
        self.port = port
        self.tls = scheme == "https"
        self.limit = backend.max_connections
        self.keepalive = backend.keepalive_s
        self.max_body = backend.max_body_bytes
        self.idle: list[_Connection] = []  # most recently used last
        self.busy: set[_Connection] = set()  # in an exchange, or connecting (counted by `opening`)
        self.opening = 0
        self.warming = 0  # of `opening`: connections opened ahead (`prepare`), for whoever asks next
        self.warmers: set[asyncio.Task[None]] = set()  # held here: the loop keeps only weak references to tasks
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy) + self.opening

    async def acquire(self, timeout_s: float, fresh: bool = False) -> _Connection:
        """A connection for one exchange: the most recently used idle one, else a new one while fewer than
        ``limit`` are open, else the next one given back. ``fresh``: a new connection (idle ones make room)."""
        while True:
            idle = self.idle
            while idle and fresh and self.size >= self.limit:
                idle.pop(0)._close()
            while idle and not fresh:
                conn = idle.pop()
                if conn.open and self.loop.time() - conn.last < self.keepalive:
                    # One opened ahead (`prepare`) and never used has served nothing: a drop there is reported,
                    # not sent again (`LeanBackend._exchange`).
                    conn.reused = conn.served
                    self.busy.add(conn)
                    return conn
                conn._close()
            if self.closed:
                raise HttpTransportError("ClientClosed")
            if self.size < self.limit and (fresh or self.warming <= len(self.waiters)):
                return await self._connect(timeout_s)
            # Every slot is taken, or a connection opened ahead will be free before one of ours would be.
            await self._wait(timeout_s)

    def prepare(self, n: int, timeout_s: float) -> None:
        """Open connections ahead of need, until `n` are open or opening (at most ``limit``): each goes to the
        idle ones when ready, and a caller who finds none idle meanwhile waits for one of them rather than
        opening another. One that fails to open is forgotten (whoever needs a connection then opens its own)."""
        for _ in range(min(n, self.limit) - self.size):
            self.warming += 1
            task = self.loop.create_task(self._warm(timeout_s))
            self.warmers.add(task)
            task.add_done_callback(self.warmers.discard)

    async def _warm(self, timeout_s: float) -> None:
        try:
            conn = await self._connect(timeout_s)
        except Exception:  # (refused, unreachable, closed meanwhile: the caller who needs it will say why)
            return
        finally:
            self.warming -= 1
        self.release(conn, True, answered=False)

    async def _wait(self, timeout_s: float) -> None:
        waiter = self.loop.create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            raise HttpTimeout("no connection") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken but leaving: pass the turn on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()

    def _wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, timeout_s: float) -> _Connection:
        conn = _Connection(self)
        self.opening += 1
        try:
            tls = self.backend.tls_context() if self.tls else None
            async with asyncio.timeout(timeout_s):
                if tls is None:
                    await self.loop.create_connection(lambda: conn, self.host, self.port)
                else:
                    await self.loop.create_connection(lambda: conn, self.host, self.port, ssl=tls,
                                                      server_hostname=self.host, ssl_handshake_timeout=timeout_s)
            if tls is not None:
                assert conn.transport is not None
                tls_object = conn.transport.get_extra_info("ssl_object")
                if tls_object is not None and tls_object.selected_alpn_protocol() not in (None, "http/1.1"):
                    conn._close()
                    raise HttpTransportError("ALPNMismatch")
        except TimeoutError:
            conn._close()
            raise HttpTimeout("connect") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            conn._close()
            raise HttpTransportError(type(exc).__name__) from None
        except BaseException:
            conn._close()
            raise
        finally:
            self.opening -= 1
            if not conn.open:
                self._wake()
        if self.closed:
            conn._close()
            raise HttpTransportError("ClientClosed")
        self.busy.add(conn)
        self.backend._open.add(conn)
        return conn

    def release(self, conn: _Connection, reusable: bool, *, answered: bool = True) -> None:
        """Give `conn` back after an exchange (`answered`), or once it opened ahead of need."""
        conn.exchange = None
        if answered:
            conn.served = True
        self.busy.discard(conn)
        if reusable and conn.open and not self.closed:
            conn.state = _IDLE
            conn.last = self.loop.time()
            conn.reused = False
            self.idle.append(conn)
            if self.sweeper is None:
                self.sweeper = self.loop.call_at(conn.last + self.keepalive, self._sweep)
        else:
            conn._close()
        self._wake()

    def lost(self, conn: _Connection) -> None:
        """The connection closed (either side): it leaves the pool."""
        if conn.state == _IDLE:
            with contextlib.suppress(ValueError):
                self.idle.remove(conn)
        self.backend._closed_one(conn)

    def _sweep(self) -> None:
        self.sweeper = None
        now = self.loop.time()
        idle = self.idle
        while idle and now - idle[0].last >= self.keepalive:
            idle.pop(0)._close()
        if idle:
            self.sweeper = self.loop.call_at(idle[0].last + self.keepalive, self._sweep)

    def close(self) -> list[_Connection]:
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        conns = [*self.idle, *self.busy]
        self.idle.clear()
        for conn in conns:
            if conn.state in (_HEAD, _BODY):
                conn._fail(HttpTransportError("ClientClosed"))
            conn._close()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # they see `closed` and give up
        return conns


class _Route:
    """What a URL needs, worked out once: its pool (None when a proxy carries it) and its request line; and the
    head of its last request (line and headers: `headers`, the caller's headers it was built from, and `items`,
    what they held then), which the next request reuses when it comes with the same headers (an adapter sends one
    mapping of headers with every call)."""

    __slots__ = ("block", "head", "headers", "items", "pool")

    def __init__(self, pool: _Pool | None, head: bytes) -> None:
        self.pool = pool
        self.head = head
        self.headers: object = None
        self.items: tuple[tuple[str, str], ...] = ()
        self.block = b""


class LeanBackend:
    """``HttpBackend`` on asyncio's Protocol/Transport and llhttp (see the module doc).

    ``tls``: the context for https origins (built on first use by ``tls_factory`` when not given: loading a CA
    bundle costs tens of ms, so a run against plain-http origins never pays it). ``proxy_backend``: what carries
    a URL the environment routes through a proxy (default: ``AiohttpBackend`` with the same TLS context).
    Connections belong to the event loop that opened them: used from another loop, the pools start afresh.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None,
                 tls_factory: Callable[[], ssl.SSLContext] | None = None, max_connections: int = 200,
                 keepalive_s: float = 4.0, max_body_bytes: int = 64 * 1024 * 1024,
                 proxy_backend: Callable[[], HttpBackend] | None = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.max_body_bytes = max_body_bytes
        self._tls = tls
        self._tls_factory = tls_factory
        self._proxy_backend = proxy_backend
        self._proxied: HttpBackend | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._routes: dict[str, _Route] = {}
        self._open: set[_Connection] = set()
        self._closing: asyncio.Future[None] | None = None
        self._watched: set[_Connection] = set()
        self._ticker: asyncio.TimerHandle | None = None

    # -------------------------------------------------------------------------------------- set-up
    def tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            if self._tls_factory is not None:
                self._tls = self._tls_factory()
            else:
                self._tls = ssl.create_default_context()  # verified: CERT_REQUIRED, hostname checked
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    def _route(self, url: str, loop: asyncio.AbstractEventLoop) -> _Route:
        if loop is not self._loop:
            self._forget_loop(loop)
        route = self._routes.get(url)
        if route is not None:
            return route
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise HttpTransportError("UnsupportedURL")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(c in target for c in " \r\n\t\x00"):
            raise HttpTransportError("UnsupportedURL")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise HttpTransportError("UnsupportedURL") from None
        host = parts.hostname
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise HttpTransportError("UnsupportedURL") from None
        authority = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            authority = f"{authority}:{port}"
        pool: _Pool | None = None
        if _proxy_for(url) is None:
            key = (scheme, host, port)
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(self, loop, scheme, host, port)
        try:
            head = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\naccept-encoding: identity\r\n".encode("ascii")
        except UnicodeEncodeError:  # a path or host that was not percent- or IDNA-encoded
            raise HttpTransportError("UnsupportedURL") from None
        if len(self._routes) >= 1024:  # a bound on a cache that URLs fill
            self._routes.clear()
        route = self._routes[url] = _Route(pool, head)
        return route

    def _drop_state(self) -> None:
        """Forget every pool, route and watched exchange, and stop the watchdog (their sockets are closed or
        aborted by the caller)."""
        self._pools.clear()
        self._routes.clear()
        self._open.clear()
        self._watched.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _forget_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Pools of a loop that is gone (or another one): their connections cannot be used from this loop."""
        for pool in self._pools.values():
            pool.closed = True
            for conn in [*pool.idle, *pool.busy]:
                if conn.transport is not None:
                    with contextlib.suppress(RuntimeError):  # its loop is closed: the socket goes with it
                        conn.transport.abort()
        self._drop_state()
        self._loop = loop

    def _proxy(self) -> HttpBackend:
        if self._proxied is None:
            if self._proxy_backend is not None:
                self._proxied = self._proxy_backend()
            else:
                from butler_skill.adapters.providers.http import AiohttpBackend

                self._proxied = AiohttpBackend(tls=self._tls or self.tls_context(),
                                               max_connections=self.max_connections)
        return self._proxied

    # Read timeouts: one watchdog timer for all exchanges in flight instead of a timer per request (arming and
    # cancelling a timer per request cost about 15 µs of CPU a request at 100 in flight: asyncio keeps its timers
    # in a heap compared in Python). It looks every tenth of the shortest timeout in flight (10 ms to 1 s), so a
    # silence of `timeout_s` is noticed within `timeout_s` plus at most a tenth of it.
    def _watch(self, conn: _Connection, now: float) -> None:
        self._watched.add(conn)
        due = now + min(1.0, max(0.01, conn.timeout / 10))
        ticker = self._ticker
        if ticker is None:
            self._ticker = conn.loop.call_at(due, self._tick)
        elif ticker.when() > due:
            ticker.cancel()
            self._ticker = conn.loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        watched = self._watched
        if not watched:
            return
        loop = next(iter(watched)).loop
        now = loop.time()
        for conn in list(watched):
            conn.check(now)
        if watched:
            step = min(1.0, max(0.01, min(conn.timeout for conn in watched) / 10))
            self._ticker = loop.call_at(now + step, self._tick)

    def _closed_one(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if not self._open and self._closing is not None and not self._closing.done():
            self._closing.set_result(None)

    @classmethod
    def _request_for(cls, route: _Route, body: bytes, headers: Mapping[str, str]) -> bytes:
        """`_request` for `route`, its head reused when the same headers come again holding the same items."""
        items = tuple(headers.items())
        if headers is not route.headers or items != route.items:
            route.block = cls._request(route.head, b"", headers)[:-len(b"content-length: 0\r\n\r\n")]
            route.headers, route.items = headers, items
        return b"".join((route.block, b"content-length: %d\r\n\r\n" % len(body), body))

    @staticmethod
    def _request(head: bytes, body: bytes, headers: Mapping[str, str]) -> bytes:
        """The request's bytes: line and fixed headers (``head``), the caller's headers (less those this client
        sets itself), a default ``user-agent`` unless the caller gave one, the length, the body."""
        lines = []
        agent = True
        for name, value in headers.items():
            low = name.lower()
            if low in _RESERVED:
                continue
            if low == "user-agent":
                agent = False
            lines.append(f"{name}: {value}\r\n")
        if agent:
            lines.append(_USER_AGENT_LINE)
        block = "".join(lines)
        if block.count("\n") != len(lines) or block.count("\r") != len(lines) or "\x00" in block:
            raise ValueError("a header name or value holds a line break")  # no header injection
        return b"".join((head, block.encode("latin-1"), b"content-length: %d\r\n\r\n" % len(body), body))

    # ------------------------------------------------------------------------------------- requests
    async def _exchange(self, pool: _Pool, request: bytes, timeout_s: float,
                        stream: bool) -> tuple[_Connection, object, Any]:
        for attempt in (0, 1):
            conn = await pool.acquire(timeout_s, fresh=attempt == 1)
            waiter = conn.start(request, stream, timeout_s)
            try:
                return conn, waiter, await waiter
            except BaseException as exc:
                conn.abandon(waiter)
                if not isinstance(exc, _Stale):
                    raise
                # The server closed this pooled connection before sending a byte of answer: the keep-alive race
                # (RFC 9112 9.3.1), where its idle timeout fired as our request was on the wire. Sending a POST
                # again is safe here: an HTTP/1.1 server closes a connection only between requests, and once it
                # has closed, the kernel discards what arrives (answering RST), so the request never reached the
                # server's application and was not processed (nor billed). Only once, on a new connection (the
                # same idle timeout may have closed the other pooled ones), only after a connection that had
                # served an answer before (a new connection failing is reported); a pooled connection the server
                # had visibly closed, or that sat idle past `keepalive_s`, is never picked at all.
                # (A server that read a request and then vanished without a byte looks the same; Butler settles
                # whatever the second answer reports, so at worst one extra completion is billed and recorded.)
        raise AssertionError("unreachable")  # pragma: no cover - a new connection is never stale

    def _lookup(self, url: str) -> _Route:
        if self._closing is not None:
            raise HttpTransportError("ClientClosed")
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            route = self._routes.get(url)
            if route is not None:
                return route
        return self._route(url, loop)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpResponse:
        route = self._lookup(url)
        if route.pool is None:
            return await self._proxy().post(url, body, headers, timeout_s)
        _, _, response = await self._exchange(route.pool, self._request_for(route, body, headers), timeout_s,
                                              False)
        return response  # type: ignore[no-any-return]

    async def open(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpStream:
        route = self._lookup(url)
        if route.pool is None:
            return await self._proxy().open(url, body, headers, timeout_s)
        conn, token, (status, headers_in) = await self._exchange(route.pool, self._request_for(route, body, headers),
                                                                 timeout_s, True)
        return _LeanStream(conn, token, status, headers_in)

    def prepare(self, url: str, n: int, timeout_s: float = 10.0) -> None:
        """Start opening connections to `url`'s origin until `n` are open or opening (see ``_Pool.prepare``), so
        that the first `n` requests need not wait for them: a caller about to send many requests (the sub-agent
        runner, while its plan is written) calls it first. Nothing for a URL a proxy carries."""
        route = self._lookup(url)
        if route.pool is not None and not route.pool.closed:
            route.pool.prepare(n, timeout_s)

    def stats(self) -> dict[str, int]:
        """Open, idle and busy connections over all pools (for tests and benchmarks)."""
        pools = self._pools.values()
        return {"open": len(self._open), "idle": sum(len(p.idle) for p in pools),
                "busy": sum(len(p.busy) for p in pools)}

    async def aclose(self) -> None:
        """Close every connection and wait (up to a second) until their sockets are closed."""
        if self._loop is not None and self._loop is asyncio.get_running_loop():
            self._closing = self._loop.create_future()
            for pool in self._pools.values():
                pool.close()
            if self._open:
                try:
                    async with asyncio.timeout(1.0):
                        await asyncio.shield(self._closing)
                except TimeoutError:  # pragma: no cover - a TLS peer that never answers our close
                    pass
        elif self._loop is not None:
            self._forget_loop(asyncio.get_running_loop())
        self._drop_state()
        self._closing = None
        self._loop = None
        if self._proxied is not None:
            proxied, self._proxied = self._proxied, None
            await proxied.aclose()
