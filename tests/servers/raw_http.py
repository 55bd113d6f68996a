"""A scripted HTTP/1.1 server on 127.0.0.1 for HTTP client tests: each accepted connection runs ``handler(conn)``
in a thread of its own, where ``conn`` reads requests and writes raw bytes, so a test can send any framing, split
an answer anywhere, stall, or hang up mid-body. Optional TLS (the test passes the server's context).

    def handler(conn: RawConn) -> None:
        while (req := conn.read_request()) is not None:
            conn.send(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")

    with RawServer(handler) as server:
        ... server.url("/v1/chat/completions"); server.requests; server.connections; server.max_open
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RawConn", "RawRequest", "RawServer", "answer"]


@dataclass(frozen=True)
class RawRequest:
    conn: int  # which connection (0, 1, ...) it came on
    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    body: bytes


def answer(body: bytes, status: str = "200 OK", headers: str = "content-type: application/json\r\n") -> bytes:
    """A whole Content-Length answer."""
    return f"HTTP/1.1 {status}\r\n{headers}content-length: {len(body)}\r\n\r\n".encode() + body


class RawConn:
    def __init__(self, sock: socket.socket, server: RawServer, index: int) -> None:
        self.sock = sock
        self.server = server
        self.index = index
        self.buffer = b""

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (OSError, ValueError):
            return False
        self.buffer += data
        return bool(data)

    def read_request(self) -> RawRequest | None:
        """The next request on this connection, or None when the client closed it."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        request = RawRequest(self.index, method, target, headers, body)
        with self.server.lock:
            self.server.requests.append(request)
        return request

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def wait_closed_by_client(self, timeout_s: float = 10.0) -> bool:
        """Block until the client closes its end (True) or ``timeout_s`` passes (False)."""
        self.sock.settimeout(timeout_s)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except TimeoutError:
            return False
        except OSError:
            return True


class RawServer:
    def __init__(self, handler: Callable[[RawConn], None], tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.lock = threading.Lock()
        self.requests: list[RawRequest] = []
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self.tls_errors: list[str] = []
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.listener.settimeout(0.05)  # accept() wakes up to see `stop`
        self.port = int(self.listener.getsockname()[1])
        self.threads: list[threading.Thread] = []
        self.all_closed = threading.Condition(self.lock)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, path: str = "/v1/chat/completions", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                index = self.connections
                self.connections += 1
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
            thread = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(10)
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    with self.lock:
                        self.tls_errors.append(type(exc).__name__)
                    return
                sock.settimeout(None)
            conn = RawConn(sock, self, index)
            try:
                self.handler(conn)
            finally:
                conn.close()
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self.lock:
                self.open_now -= 1
                self.all_closed.notify_all()

    def wait_all_closed(self, timeout_s: float = 10.0) -> bool:
        """Until no connection is open on the server's side (each handler returned)."""
        with self.lock:
            return self.all_closed.wait_for(lambda: self.open_now == 0, timeout=timeout_s)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
