"""A ThreadingHTTPServer on 127.0.0.1 (ephemeral port) in a background thread, with recorded requests and
a queue of injected faults. The fakes subclass `FakeServer` and implement `route`."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal["status", "drop", "delay", "hang"]


@dataclass
class Fault:
    """What goes wrong with the next matching request.

    kind: `status` answers `status` (with `retry_after`); `drop` closes the connection without an answer;
    `delay` waits (until released or `seconds`) and then answers normally, long after the client gave up;
    `hang` blocks until the server is released or closed (a process can be killed meanwhile).
    when: `before` the server acts on the request (nothing recorded), or `after` it acted.
    """

    kind: FaultKind
    when: Literal["before", "after"] = "before"
    status: int = 500
    retry_after: str | None = None
    seconds: float = 10.0
    match: str = ""  # a substring of "METHOD /path"; empty matches every request


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.release = threading.Event()
        self.acted = threading.Event()  # set whenever a request with an `after` fault has been acted on
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stalls
            wbufsize = 64 * 1024

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _handle(self) -> None:
                server._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        self.port = self._httpd.server_address[1]
        self.root = f"http://127.0.0.1:{self.port}"

    # -- faults --
    def add_fault(self, kind: FaultKind, **kw: Any) -> Fault:
        fault = Fault(kind=kind, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.match in f"{method} {path}":
                    self.faults.remove(fault)
                    return fault
        return None

    # -- serving --
    def route(self, rec: Recorded) -> Reply:
        raise NotImplementedError

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = Recorded(method=h.command, path=parts.path, query=parse_qs(parts.query),
                       headers={k.lower(): v for k, v in h.headers.items()}, body=body)
        with self.lock:
            self.requests.append(rec)
        fault = self._take_fault(h.command, parts.path)
        if fault is not None and fault.when == "before" and self._misbehave(h, fault):
            return
        reply = self.route(rec)
        if fault is not None and fault.when == "after":
            self.acted.set()
            if self._misbehave(h, fault):
                return
        self._send(h, reply)

    def _misbehave(self, h: BaseHTTPRequestHandler, fault: Fault) -> bool:
        """Apply a fault; True when no normal answer must follow."""
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(h, Reply(fault.status, {"code": fault.status, "message": "injected fault"}, headers))
            return True
        if fault.kind == "drop":
            h.close_connection = True
            return True
        if fault.kind == "hang":
            self.release.wait()
            h.close_connection = True
            return True
        self.release.wait(fault.seconds)  # delay, then answer normally (the client has given up by then)
        return False

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        data = json.dumps(reply.body).encode() if reply.body is not None else b""
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def requests_to(self, method: str, path_part: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and path_part in r.path]

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
