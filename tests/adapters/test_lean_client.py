"""The lean HTTP/1.1 client (``adapters/providers/lean.py``) against scripted loopback servers (``RawServer``):
framing (Content-Length, chunked, until close, 1xx), SSE in tiny pieces, keep-alive reuse and its races, a server
that hangs up or stalls, TLS (trusted and untrusted), the pool's bound, cancellation, proxies from the environment.
Every case runs on asyncio's loop and on uvloop's (the sub-agent runner's)."""

from __future__ import annotations

import asyncio
import datetime
import gc
import gzip
import ipaddress
import itertools
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.adapters.providers.http import HttpTimeout, HttpTransportError
from butler_skill.adapters.providers.lean import Headers, LeanBackend, _Connection, _Pool
from tests.servers.raw_http import RawConn, RawServer, answer

BODY = b'{"model":"m","messages":[]}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-test-not-a-secret-0001"}


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def go(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main())

    return go


def serve_forever(reply: bytes, delay_s: float = 0.0) -> Callable[[RawConn], None]:
    def handler(conn: RawConn) -> None:
        while conn.read_request() is not None:
            if delay_s:
                time.sleep(delay_s)
            conn.send(reply)

    return handler


async def post(backend: LeanBackend, url: str, timeout_s: float = 10.0) -> Any:
    return await backend.post(url, BODY, HEADERS, timeout_s)


async def failed_post(url: str, **backend_kw: Any) -> str:
    """The kind of transport error one POST to `url` ends in, from a new `LeanBackend(**backend_kw)`."""
    backend = LeanBackend(**backend_kw)
    try:
        with pytest.raises(HttpTransportError) as info:
            await post(backend, url)
        return info.value.kind
    finally:
        await backend.aclose()


# ---- framing ----------------------------------------------------------------------------------------------
def test_content_length_answer_and_what_the_request_carried(run: Any) -> None:
    with RawServer(serve_forever(answer(b'{"ok":true}', headers="X-Request-Id: r1\r\nx-dup: a\r\nX-Dup: b\r\n"))) as s:
        async def main() -> Any:
            backend = LeanBackend()
            try:
                return await post(backend, s.url())
            finally:
                await backend.aclose()

        resp = run(main)
    assert (resp.status_code, resp.content) == (200, b'{"ok":true}')
    assert resp.headers["X-Request-ID"] == resp.headers.get("x-request-id") == "r1" and "X-REQUEST-ID" in resp.headers
    assert resp.headers["x-dup"] == "a, b" and resp.headers.get("missing") is None
    req = s.requests[0]
    assert (req.method, req.target, req.body) == ("POST", "/v1/chat/completions", BODY)
    assert req.headers["host"] == f"127.0.0.1:{s.port}" and req.headers["accept-encoding"] == "identity"
    assert req.headers["authorization"] == HEADERS["authorization"] and req.headers["content-length"] == str(len(BODY))
    assert req.headers["user-agent"] == "butler-skill"


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"


def test_chunked_answer_written_a_byte_at_a_time(run: Any) -> None:
    payload = [b'{"choices":', b"[]", b',"x":"' + "é€".encode() + b'"}']

    def handler(conn: RawConn) -> None:
        while conn.read_request() is not None:
            raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(payload)
            for i in range(len(raw)):
                conn.send(raw[i:i + 1])

    with RawServer(handler) as s:
        async def main() -> Any:
            backend = LeanBackend()
            try:
                return [await post(backend, s.url()) for _ in range(2)]
            finally:
                await backend.aclose()

        first, second = run(main)
    assert first.content == second.content == b"".join(payload)
    assert s.connections == 1  # a chunked answer ends cleanly: the connection is reused


def test_answer_delimited_by_close_and_interim_1xx_answers(run: Any) -> None:
    def handler(conn: RawConn) -> None:
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
                      b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
            conn.close()

    with RawServer(handler) as s:
        async def main() -> Any:
            backend = LeanBackend()
            try:
                one = await post(backend, s.url())
                two = await post(backend, s.url())
                return one, two, backend.stats()
            finally:
                await backend.aclose()

        one, two, stats = run(main)
    assert one.status_code == two.status_code == 200 and one.content == two.content == b"until the end"
    assert "link" not in one.headers
    assert s.connections == 2 and stats["idle"] == 0


def test_bytes_after_a_whole_answer_retire_the_connection(run: Any) -> None:
    # One answer, then (in the same write) the start of another nobody asked for: the first is delivered, the
    # connection is out of step and is not reused.
    with RawServer(serve_forever(answer(b'{"n":1}') + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")) as s:
        async def main() -> list[bytes]:
            backend = LeanBackend()
            try:
                out = [(await post(backend, s.url())).content]
                await asyncio.sleep(0.05)
                out.append((await post(backend, s.url())).content)
                return out
            finally:
                await backend.aclose()

        assert run(main) == [b'{"n":1}', b'{"n":1}']
    assert s.connections == 2


def test_connection_close_answer_is_not_reused(run: Any) -> None:
    with RawServer(serve_forever(answer(b"{}", headers="connection: close\r\n"))) as s:
        async def main() -> None:
            backend = LeanBackend()
            try:
                for _ in range(3):
                    assert (await post(backend, s.url())).content == b"{}"
            finally:
                await backend.aclose()

        run(main)
    assert s.connections == 3 and len(s.requests) == 3


def test_gzip_is_decoded_though_not_asked_for_and_the_body_cap_holds(run: Any) -> None:
    big = json.dumps({"text": "x" * 50_000}).encode()
    packed = gzip.compress(big)
    with RawServer(serve_forever(answer(packed, headers="content-encoding: gzip\r\n"))) as s:
        async def main() -> tuple[bytes, str]:
            backend = LeanBackend()
            small = LeanBackend(max_body_bytes=10_000)
            try:
                whole = (await post(backend, s.url())).content
                with pytest.raises(HttpTransportError) as info:
                    await post(small, s.url())  # 50 KB once decoded, from 300 bytes on the wire
                return whole, info.value.kind
            finally:
                await backend.aclose()
                await small.aclose()

        whole, kind = run(main)
    assert whole == big and kind == "BodyTooLarge"


def test_body_above_the_cap_is_an_error_not_memory(run: Any) -> None:
    with RawServer(serve_forever(answer(b"x" * 5000))) as s:
        assert run(lambda: failed_post(s.url(), max_body_bytes=1000)) == "BodyTooLarge"


def test_an_unknown_content_encoding_is_refused(run: Any) -> None:
    with RawServer(serve_forever(answer(b"....", headers="content-encoding: br\r\n"))) as s:
        assert run(lambda: failed_post(s.url())) == "UnsupportedContentEncoding"


# ---- SSE --------------------------------------------------------------------------------------------------
def test_sse_stream_in_tiny_pieces(run: Any) -> None:
    events = [f'data: {{"i":{i},"t":"é€\u2028"}}\n\n'.encode() for i in range(20)] + [b"data: [DONE]\n\n"]
    raw = b"".join(events)

    def handler(conn: RawConn) -> None:
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(0, len(raw), 3):
                conn.send(chunked([raw[i:i + 3]])[:-5])  # one 3-byte chunk (its terminator comes last)
            conn.send(b"0\r\n\r\n")

    with RawServer(handler) as s:
        async def main() -> list[list[str]]:
            backend = LeanBackend()
            out = []
            try:
                for _ in range(2):
                    stream = await backend.open(s.url(), BODY, HEADERS, 10.0)
                    assert stream.status_code == 200 and stream.headers["Content-Type"] == "text/event-stream"
                    out.append([line async for line in stream.aiter_lines()])
                    await stream.aclose()
                return out
            finally:
                await backend.aclose()

        first, second = run(main)
    expected = raw.decode().split("\n")[:-1]
    assert first == second == expected
    assert s.connections == 1


def test_a_stream_closed_early_closes_its_connection(run: Any) -> None:
    def handler(conn: RawConn) -> None:
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            conn.send(chunked([b"data: 1\n\n"])[:-5])
            conn.wait_closed_by_client()
            return

    with RawServer(handler) as s:
        async def main() -> dict[str, int]:
            backend = LeanBackend()
            try:
                stream = await backend.open(s.url(), BODY, HEADERS, 10.0)
                lines = stream.aiter_lines()
                assert await anext(lines) == "data: 1"
                await stream.aclose()
                await asyncio.sleep(0.01)  # the socket's close is reported on the loop's next turns
                return backend.stats()
            finally:
                await backend.aclose()

        stats = run(main)
        assert s.wait_all_closed()
    assert stats == {"open": 0, "idle": 0, "busy": 0}


# ---- keep-alive -------------------------------------------------------------------------------------------
def test_keep_alive_reuses_connections(run: Any) -> None:
    with RawServer(serve_forever(answer(b"{}"), delay_s=0.01)) as s:
        async def main() -> dict[str, int]:
            backend = LeanBackend()
            try:
                for _ in range(3):  # 3 waves of 10 in parallel, then 10 one after the other
                    await asyncio.gather(*(post(backend, s.url()) for _ in range(10)))
                for _ in range(10):
                    await post(backend, s.url())
                return backend.stats()
            finally:
                await backend.aclose()

        stats = run(main)
    assert len(s.requests) == 40 and s.connections <= 10
    assert stats == {"open": s.connections, "idle": s.connections, "busy": 0}


def test_connections_opened_ahead_serve_the_first_requests(run: Any) -> None:
    # prepare(url, 6): six connections open before any request; a wave of 10 uses those six and opens only four
    # more (callers who find none idle wait for those being opened rather than open their own: 16 otherwise).
    # Preparing again adds none while six are open, and never goes past max_connections.
    with RawServer(serve_forever(answer(b"{}"), delay_s=0.02)) as s:
        async def main() -> tuple[int, dict[str, int], dict[str, int]]:
            backend = LeanBackend(max_connections=12)
            try:
                backend.prepare(s.url(), 6)
                await asyncio.sleep(0)
                first = await asyncio.gather(*(post(backend, s.url()) for _ in range(10)))
                assert all(r.status_code == 200 for r in first)
                opened = s.connections
                backend.prepare(s.url(), 6)
                await asyncio.sleep(0.05)
                again = backend.stats()
                backend.prepare(s.url(), 500)
                for _ in range(5_000):  # until the two left under the bound are open (a loaded machine takes longer)
                    if backend.stats()["open"] >= 12:
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.05)  # and none past it
                return opened, again, backend.stats()
            finally:
                await backend.aclose()

        opened, again, bound = run(main)
    assert opened == 10 and len(s.requests) == 10
    assert again == {"open": 10, "idle": 10, "busy": 0}
    assert bound == {"open": 12, "idle": 12, "busy": 0}


def test_connections_that_cannot_be_opened_ahead_leave_requests_to_open_their_own(run: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> tuple[str, dict[str, int]]:
        backend = LeanBackend()
        try:
            backend.prepare(f"http://127.0.0.1:{port}/v1", 3)  # refused: forgotten, nothing raised
            with pytest.raises(HttpTransportError) as info:
                await post(backend, f"http://127.0.0.1:{port}/v1")
            return info.value.kind, backend.stats()
        finally:
            await backend.aclose()

    kind, stats = run(main)
    assert kind == "ConnectionRefusedError" and stats == {"open": 0, "idle": 0, "busy": 0}


def test_server_closing_an_idle_connection_then_the_next_request_works(run: Any) -> None:
    def handler(conn: RawConn) -> None:
        if conn.read_request() is not None:
            conn.send(answer(b"{}"))  # keep-alive by default, then closes it anyway once idle
            conn.close()

    with RawServer(handler) as s:
        async def main() -> None:
            backend = LeanBackend()
            try:
                await post(backend, s.url())
                assert s.wait_all_closed()
                await asyncio.sleep(0.05)  # the close reaches the client: the idle connection leaves the pool
                assert backend.stats()["idle"] == 0
                assert (await post(backend, s.url())).content == b"{}"
            finally:
                await backend.aclose()

        run(main)
    assert s.connections == 2 and len(s.requests) == 2


def test_a_reused_connection_dropped_before_any_answer_is_retried_once_on_a_new_one(run: Any) -> None:
    # The keep-alive race, staged: the first connection serves one answer, then drops the next request unanswered
    # (as a server whose idle timeout fired while the request was on the wire); every later connection answers.
    def handler(conn: RawConn) -> None:
        if conn.index == 0:
            if conn.read_request() is not None:
                conn.send(answer(b'{"n":1}'))
            if conn.read_request() is not None:
                conn.close()
            return
        while conn.read_request() is not None:
            conn.send(answer(b'{"n":2}'))

    with RawServer(handler) as s:
        async def main() -> list[bytes]:
            backend = LeanBackend()
            try:
                return [(await post(backend, s.url())).content for _ in range(2)]
            finally:
                await backend.aclose()

        assert run(main) == [b'{"n":1}', b'{"n":2}']
    assert [r.conn for r in s.requests] == [0, 0, 1]


def test_the_retry_takes_a_new_connection_not_another_stale_one(run: Any) -> None:
    # Two pooled connections, both dropped by the server's idle timeout: the retry must not pick the other one.
    def handler(conn: RawConn) -> None:
        if conn.index < 2:
            if conn.read_request() is not None:
                time.sleep(0.05)  # both requests of the first wave in flight together: two connections
                conn.send(answer(b'{"n":1}'))
            if conn.read_request() is not None:
                conn.close()
            return
        while conn.read_request() is not None:
            conn.send(answer(b'{"n":2}'))

    with RawServer(handler) as s:
        async def main() -> list[bytes]:
            backend = LeanBackend()
            try:
                first = await asyncio.gather(post(backend, s.url()), post(backend, s.url()))
                return [r.content for r in first] + [(await post(backend, s.url())).content]
            finally:
                await backend.aclose()

        assert run(main) == [b'{"n":1}', b'{"n":1}', b'{"n":2}']
    assert sorted(r.conn for r in s.requests[:2]) == [0, 1] and [r.conn for r in s.requests[2:]] in ([0, 2], [1, 2])


def test_a_new_connection_dropped_before_any_answer_is_not_retried(run: Any) -> None:
    def handler(conn: RawConn) -> None:
        if conn.read_request() is not None:
            conn.close()

    with RawServer(handler) as s:
        assert run(lambda: failed_post(s.url())) == "ServerDisconnected"
    assert len(s.requests) == 1


def test_a_connection_opened_ahead_dropped_before_any_answer_is_not_retried(run: Any) -> None:
    # Opened by `prepare` and idle in the pool, but it has served nothing: a drop there is not the keep-alive race,
    # so the POST (which the server may have taken) is reported, not sent a second time.
    def handler(conn: RawConn) -> None:
        if conn.read_request() is not None:
            conn.close()

    with RawServer(handler) as s:
        async def main() -> str:
            backend = LeanBackend()
            try:
                backend.prepare(s.url(), 1)
                while backend.stats()["idle"] < 1:  # the connection opened ahead is in the pool
                    await asyncio.sleep(0.001)
                with pytest.raises(HttpTransportError) as info:
                    await post(backend, s.url())
                return info.value.kind
            finally:
                await backend.aclose()

        assert run(main) == "ServerDisconnected"
    assert len(s.requests) == 1 and s.connections == 1


def test_idle_connections_expire_after_keepalive(run: Any) -> None:
    with RawServer(serve_forever(answer(b"{}"))) as s:
        async def main() -> dict[str, int]:
            backend = LeanBackend(keepalive_s=0.05)
            try:
                await asyncio.gather(*(post(backend, s.url()) for _ in range(3)))
                await asyncio.sleep(0.3)
                return backend.stats()
            finally:
                await backend.aclose()

        assert run(main)["idle"] == 0
        assert s.wait_all_closed()


# ---- failures ---------------------------------------------------------------------------------------------
def test_hang_up_mid_body_is_a_transport_error(run: Any) -> None:
    def handler(conn: RawConn) -> None:
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            conn.close()

    with RawServer(handler) as s:
        async def main() -> tuple[str, str, list[str]]:
            backend = LeanBackend()
            try:
                with pytest.raises(HttpTransportError) as whole:
                    await post(backend, s.url())
                stream = await backend.open(s.url(), BODY, HEADERS, 10.0)
                lines: list[str] = []
                with pytest.raises(HttpTransportError) as streamed:
                    async for line in stream.aiter_lines():
                        lines.append(line)
                await stream.aclose()
                return whole.value.kind, streamed.value.kind, lines
            finally:
                await backend.aclose()

        whole, streamed, lines = run(main)
    assert whole == streamed == "ServerDisconnected" and lines == []


def test_a_stall_is_a_timeout_and_frees_the_connection(run: Any) -> None:
    release = threading.Event()

    def handler(conn: RawConn) -> None:
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123")
            release.wait(10)

    with RawServer(handler) as s:
        async def main() -> tuple[str, str, dict[str, int]]:
            backend = LeanBackend()
            try:
                with pytest.raises(HttpTimeout) as body_stall:
                    await post(backend, s.url(), timeout_s=0.3)
                stream = await backend.open(s.url(), BODY, HEADERS, 0.3)
                with pytest.raises(HttpTimeout) as stream_stall:
                    await stream.aread()
                await stream.aclose()
                return body_stall.value.kind, stream_stall.value.kind, backend.stats()
            finally:
                await backend.aclose()

        try:
            body_kind, stream_kind, stats = run(main)
        finally:
            release.set()
    assert body_kind == stream_kind == "read"
    assert stats["busy"] == 0 and stats["idle"] == 0


def test_no_answer_at_all_is_a_timeout(run: Any) -> None:
    release = threading.Event()

    def handler(conn: RawConn) -> None:
        conn.read_request()
        release.wait(10)

    with RawServer(handler) as s:
        async def main() -> str:
            backend = LeanBackend()
            try:
                with pytest.raises(HttpTimeout) as info:
                    await post(backend, s.url(), timeout_s=0.2)
                return info.value.kind
            finally:
                await backend.aclose()

        try:
            assert run(main) == "no answer"
        finally:
            release.set()


def test_connection_refused(run: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    assert run(lambda: failed_post(f"http://127.0.0.1:{port}/v1")) == "ConnectionRefusedError"


def test_garbage_instead_of_http_is_a_transport_error(run: Any) -> None:
    with RawServer(serve_forever(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as s:
        assert run(lambda: failed_post(s.url())) == "HttpParserError"


def test_header_injection_is_refused() -> None:
    async def main() -> None:
        backend = LeanBackend()
        try:
            with pytest.raises(ValueError):
                await backend.post("http://127.0.0.1:9/v1", BODY, {"x-title": "a\r\nx-evil: 1"}, 1.0)
        finally:
            await backend.aclose()

    asyncio.run(main())


# ---- the pool ---------------------------------------------------------------------------------------------
def test_pool_bound_holds_under_200_concurrent_requests(run: Any) -> None:
    with RawServer(serve_forever(answer(b"{}"), delay_s=0.005)) as s:
        async def main() -> list[int]:
            backend = LeanBackend(max_connections=10)
            try:
                results = await asyncio.gather(*(post(backend, s.url()) for _ in range(200)))
                return [r.status_code for r in results]
            finally:
                await backend.aclose()

        assert run(main) == [200] * 200
    assert s.connections <= 10 and s.max_open <= 10 and len(s.requests) == 200


def test_waiting_for_a_pooled_connection_times_out(run: Any) -> None:
    with RawServer(serve_forever(answer(b"{}"), delay_s=0.5)) as s:
        async def main() -> list[str]:
            backend = LeanBackend(max_connections=1)
            try:
                results = await asyncio.gather(post(backend, s.url(), 2.0), post(backend, s.url(), 0.1),
                                               return_exceptions=True)
                return [r.kind if isinstance(r, HttpTimeout) else str(r.status_code) for r in results]
            finally:
                await backend.aclose()

        assert run(main) == ["200", "no connection"]


def test_cancellation_releases_the_connection(run: Any) -> None:
    release = threading.Event()

    def handler(conn: RawConn) -> None:
        while (req := conn.read_request()) is not None:
            if req.body == b"slow":
                conn.wait_closed_by_client(10)  # never answers; ends when the client closes
                return
            conn.send(answer(b"{}"))

    with RawServer(handler) as s:
        async def main() -> tuple[dict[str, int], dict[str, int], int]:
            backend = LeanBackend(max_connections=5)
            try:
                tasks = [asyncio.create_task(backend.post(s.url(), b"slow", HEADERS, 30)) for _ in range(20)]
                await asyncio.sleep(0.3)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await asyncio.sleep(0.05)
                after_cancel = backend.stats()
                ok = await backend.post(s.url(), b"fast", HEADERS, 5)  # the pool is usable: its slots came back
                return after_cancel, backend.stats(), ok.status_code
            finally:
                await backend.aclose()

        try:
            after_cancel, after_ok, status = run(main)
            assert s.wait_all_closed()  # every socket the client opened is closed on the server's side too
        finally:
            release.set()
    assert after_cancel == {"open": 0, "idle": 0, "busy": 0}
    assert after_ok == {"open": 1, "idle": 1, "busy": 0} and status == 200
    assert s.max_open <= 5


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the first loop's sockets are closed by the collector
def test_aclose_closes_every_connection_and_a_later_loop_starts_afresh(run: Any) -> None:
    with RawServer(serve_forever(answer(b"{}"))) as s:
        backend = LeanBackend()

        async def main() -> dict[str, int]:
            await asyncio.gather(*(post(backend, s.url()) for _ in range(5)))
            return backend.stats()

        assert run(main)["open"] == 5  # the loop ends with its connections still pooled
        assert run(main)["open"] == 5  # a new loop: the old connections are dropped, new ones opened

        async def close() -> dict[str, int]:
            await backend.aclose()
            return backend.stats()

        assert run(close) == {"open": 0, "idle": 0, "busy": 0}
        gc.collect()  # connections left in a loop that has closed go with it (its transports cannot run any more)
        assert s.wait_all_closed()
    assert s.connections == 10


# ---- TLS --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str]]:
    """A server context with a fresh self-signed certificate for localhost / 127.0.0.1, a client context that
    trusts it (and nothing else), and the SNI names the server saw."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.set_alpn_protocols(["h2", "http/1.1"])
    names: list[str] = []
    server.sni_callback = lambda _sock, sni, _ctx: names.append(sni or "")  # type: ignore[assignment,misc]
    client = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    return server, client, names


def test_tls_with_a_trusted_certificate_sni_and_alpn(run: Any, tls_pair: Any) -> None:
    server_ctx, client_ctx, names = tls_pair
    seen_alpn: list[str | None] = []

    def handler(conn: RawConn) -> None:
        seen_alpn.append(conn.sock.selected_alpn_protocol())  # type: ignore[attr-defined]
        serve_forever(answer(b'{"tls":true}'))(conn)

    with RawServer(handler, tls=server_ctx) as s:
        async def main() -> list[bytes]:
            backend = LeanBackend(tls_factory=lambda: client_ctx)
            try:
                return [(await post(backend, s.url(host=host))).content for host in ("localhost", "127.0.0.1")]
            finally:
                await backend.aclose()

        assert run(main) == [b'{"tls":true}'] * 2
        assert s.wait_all_closed()
    assert "localhost" in names and seen_alpn[0] == "http/1.1"  # SNI sent; ALPN chose HTTP/1.1, never h2
    assert s.connections == 2  # one pool per origin


def test_tls_refuses_an_untrusted_certificate(run: Any, tls_pair: Any) -> None:
    server_ctx, _, _ = tls_pair

    with RawServer(serve_forever(answer(b"{}")), tls=server_ctx) as s:
        # The default verified context: the self-signed certificate is not trusted.
        assert run(lambda: failed_post(s.url(host="localhost"))) == "SSLCertVerificationError"
    assert s.requests == []


# ---- proxies ----------------------------------------------------------------------------------------------
def test_a_url_the_environment_proxies_goes_through_the_proxy(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with RawServer(serve_forever(answer(b'{"via":"proxy"}'))) as proxy, \
            RawServer(serve_forever(answer(b'{"via":"direct"}'))) as direct:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")

        async def main() -> bytes:
            backend = LeanBackend()
            try:
                return (await post(backend, direct.url())).content
            finally:
                await backend.aclose()

        assert run(main) == b'{"via":"proxy"}'
        assert proxy.requests[0].target == direct.url()  # absolute form: a proxy request
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert run(main) == b'{"via":"direct"}'


# ---- chunk boundaries (property) --------------------------------------------------------------------------
class _FakeTransport:
    """Enough of a transport for feeding a connection by hand."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def feed_in_pieces(raw: bytes, cuts: list[int], stream: bool) -> tuple[Any, list[str]]:
    async def main() -> tuple[Any, list[str]]:
        backend = LeanBackend()
        pool = _Pool(backend, asyncio.get_running_loop(), "http", "127.0.0.1", 1)
        conn = _Connection(pool)
        conn.connection_made(_FakeTransport())  # type: ignore[arg-type]
        pool.busy.add(conn)
        waiter = conn.start(b"request", stream, 10.0)
        bounds = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
        for a, b in itertools.pairwise(bounds):
            conn.data_received(raw[a:b])
        if not stream:
            return await waiter, []
        from butler_skill.adapters.providers.lean import _LeanStream

        status, headers = await waiter
        lines = [line async for line in _LeanStream(conn, waiter, status, headers).aiter_lines()]
        return status, lines

    return asyncio.run(main())


_TEXT = st.lists(st.sampled_from(["data: x", "é", "€", "\n", "\r\n", "\r", ":c", "event: e", " ", "\u2028", "{}"]),
                 max_size=30).map("".join)


@settings(max_examples=60, deadline=None)
@given(text=_TEXT, sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_any_split_of_a_chunked_stream_gives_the_same_body_and_lines(text: str, sizes: list[int],
                                                                      cuts: list[int]) -> None:
    body = text.encode()
    pieces, at = [], 0
    for size in itertools.cycle(sizes):
        if at >= len(body):
            break
        pieces.append(body[at:at + size])
        at += size
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n" + chunked(pieces)
    whole, _ = feed_in_pieces(raw, cuts, stream=False)
    assert whole.content == body and whole.headers == Headers({"transfer-encoding": "chunked", "x-a": "1"})
    status, lines = feed_in_pieces(raw, cuts, stream=True)
    assert status == 200
    expected = re.split(r"\r\n|\r|\n", text)
    assert lines == (expected[:-1] if expected[-1] == "" else expected)


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_any_split_of_a_content_length_answer_gives_the_same_body(body: bytes, cuts: list[int]) -> None:
    raw = b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    whole, _ = feed_in_pieces(raw, cuts, stream=False)
    assert (whole.status_code, whole.content) == (201, body)


HEADER_VALUES = st.sampled_from(["application/json", "Bearer sk-test-not-a-secret-0001", "x\r\ny: 1", "butler", ""])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["same", "new", "mutate"]),
                          st.dictionaries(st.sampled_from(["content-type", "authorization", "User-Agent", "x-extra",
                                                           "Host", "accept"]), HEADER_VALUES, max_size=4),
                          st.binary(max_size=40)), min_size=1, max_size=8))
def test_a_request_reusing_its_routes_head_is_the_request_built_afresh(calls: list[tuple[str, dict[str, str], bytes]]
                                                                      ) -> None:
    # LeanBackend._request_for reuses the head it built for the same headers (same mapping, same items): the bytes
    # (or the refusal of a header with a line break) are always those `_request` builds from scratch.
    from butler_skill.adapters.providers.lean import _Route

    route = _Route(None, b"POST /v1/chat/completions HTTP/1.1\r\nhost: h\r\naccept-encoding: identity\r\n")
    headers: dict[str, str] = {}
    for how, given_headers, body in calls:
        if how == "new":
            headers = dict(given_headers)
        elif how == "mutate":
            headers.clear()
            headers.update(given_headers)  # the same mapping, other items
        outcomes = []
        for build in (partial(LeanBackend._request, route.head), partial(LeanBackend._request_for, route)):
            try:
                outcomes.append(build(body, headers))
            except ValueError:
                outcomes.append(b"refused")
        assert outcomes[0] == outcomes[1]
