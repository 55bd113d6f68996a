"""The HTTP the provider adapters need, behind one small interface: POST a JSON body and read the whole answer,
or POST and read the answer's lines as they arrive (SSE). Three implementations:

* ``LeanBackend`` (``lean.py``, the default for real providers): asyncio's Protocol/Transport and httptools' C
  parser, about a third of aiohttp's CPU per request at 100 in flight (``benchmarks/bench_clients.py``). A URL
  the environment sends through a proxy goes over ``AiohttpBackend`` instead.
* ``AiohttpBackend``: aiohttp's connection pool and its C HTTP/1.1 parser (proxies; ``ClientFactory(http=
  "aiohttp")``); about a fifth of httpx's CPU per request.
* ``HttpxBackend``: any ``httpx.AsyncClient``, so an injected transport (the in-process demo provider,
  ``httpx.MockTransport`` in tests) keeps working unchanged.

All raise only ``HttpTimeout`` (no answer, or no next byte, within the time given) and ``HttpTransportError``
(connection refused, reset, closed in the middle of a body) for network failures; an HTTP error status is an
answer, not an exception. Header mappings are case-insensitive. ``timeout_s`` bounds each step (connect, waiting
for a pooled connection, each read), as httpx's ``Timeout(t)`` does; callers bound the whole call themselves.
"""

from __future__ import annotations

import codecs
import json
import re
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "AiohttpBackend",
    "HttpBackend",
    "HttpError",
    "HttpResponse",
    "HttpStream",
    "HttpTimeout",
    "HttpTransportError",
    "HttpxBackend",
    "LineSplitter",
    "as_backend",
    "json_bytes",
]


class HttpError(Exception):
    """A network failure talking to a provider (never an HTTP status); ``kind`` names what happened, without any
    text from the other side (for a transport error: the underlying exception's class name)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class HttpTimeout(HttpError):
    pass


class HttpTransportError(HttpError):
    pass


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class HttpStream(Protocol):
    """An answer whose status line and headers have arrived; its body is read on demand. Close it."""

    status_code: int
    headers: Mapping[str, str]

    async def aread(self) -> bytes: ...

    def aiter_lines(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class HttpBackend(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpResponse: ...

    async def open(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpStream: ...

    async def aclose(self) -> None: ...


class LowerCaseHeaders(dict[str, str]):
    """An answer's headers held in a plain dict whose names are all lower case (``lean.Headers``): what lets a
    parser see at a glance which headers there are (``base.names_any``)."""

    __slots__ = ()


def json_bytes(body: Any) -> bytes:
    """A request body as httpx's ``json=`` encodes it (compact, UTF-8, no NaN)."""
    return _ENCODE(body).encode("utf-8")


# One encoder for every body: json.dumps with any option builds a new JSONEncoder on each call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class LineSplitter:
    """Bytes in, complete text lines out (without their ending). Only ``\r\n``, ``\n`` and a lone ``\r`` end a
    line, as the SSE format says (not the other separators ``str.splitlines`` knows: U+2028 may sit raw inside a
    JSON string), even when a chunk boundary falls between ``\r`` and ``\n``; UTF-8 split across chunks is joined;
    undecodable bytes become U+FFFD."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail = ""

    def feed(self, chunk: bytes) -> list[str]:
        text = self._tail + self._decoder.decode(chunk)
        held = ""
        if text.endswith("\r"):  # maybe the first half of "\r\n": decide with the next chunk
            text, held = text[:-1], "\r"
        lines = _EOL.split(text)
        self._tail = lines.pop() + held
        return lines

    def end(self) -> list[str]:
        lines = _EOL.split(self._tail + self._decoder.decode(b"", final=True))
        self._tail = ""
        if lines[-1] == "":
            lines.pop()
        return lines


_EOL = re.compile(r"\r\n|\r|\n")


# ------------------------------------------------------------------------------------------------ httpx


class _HttpxStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def aread(self) -> bytes:
        try:
            return await self.response.aread()
        except httpx.TimeoutException:
            raise HttpTimeout("read") from None
        except httpx.TransportError as exc:
            raise HttpTransportError(type(exc).__name__) from None

    async def aiter_lines(self) -> AsyncIterator[str]:
        try:
            async for line in self.response.aiter_lines():
                yield line
        except httpx.TimeoutException:
            raise HttpTimeout("read") from None
        except httpx.TransportError as exc:
            raise HttpTransportError(type(exc).__name__) from None

    async def aclose(self) -> None:
        await self.response.aclose()


class HttpxBackend:
    """The interface over an ``httpx.AsyncClient`` (its transport decides whether the network is real)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpResponse:
        try:
            resp = await self.client.post(url, content=body, headers=dict(headers), timeout=httpx.Timeout(timeout_s))
        except httpx.TimeoutException:
            raise HttpTimeout("no answer") from None
        except httpx.TransportError as exc:
            raise HttpTransportError(type(exc).__name__) from None
        return HttpResponse(resp.status_code, resp.headers, resp.content)

    async def open(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpStream:
        request = self.client.build_request("POST", url, content=body, headers=dict(headers),
                                            timeout=httpx.Timeout(timeout_s))
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise HttpTimeout("no answer") from None
        except httpx.TransportError as exc:
            raise HttpTransportError(type(exc).__name__) from None
        return _HttpxStream(response)

    async def aclose(self) -> None:
        await self.client.aclose()


def as_backend(client: HttpBackend | httpx.AsyncClient) -> HttpBackend:
    return HttpxBackend(client) if isinstance(client, httpx.AsyncClient) else client


# ---------------------------------------------------------------------------------------------- aiohttp


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and
    ``NO_PROXY``, as httpx reads them), else None. Read here rather than by aiohttp's ``trust_env``, which would
    also add ``~/.netrc`` credentials to requests that carry their own ``Authorization``."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse, errors: tuple[type[BaseException], ...]) -> None:
        self.response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers
        self._errors = errors

    async def aread(self) -> bytes:
        try:
            return await self.response.read()
        except TimeoutError:
            raise HttpTimeout("read") from None
        except self._errors as exc:
            raise HttpTransportError(type(exc).__name__) from None

    async def aiter_lines(self) -> AsyncIterator[str]:
        splitter = LineSplitter()
        try:
            async for chunk in self.response.content.iter_any():
                for line in splitter.feed(chunk):
                    yield line
        except TimeoutError:
            raise HttpTimeout("read") from None
        except self._errors as exc:
            raise HttpTransportError(type(exc).__name__) from None
        for line in splitter.end():
            yield line

    async def aclose(self) -> None:
        # Closing (not releasing) a body that was not read to its end: the connection cannot be reused then.
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()


class AiohttpBackend:
    """Real providers over aiohttp: one session, one connection pool (``max_connections`` in all), TCP_NODELAY
    (aiohttp's default: without it Nagle's algorithm holds a request's body behind its headers), the proxy the
    environment names, and the TLS context given (Butler passes httpx's, so both clients trust the same CAs).

    Created lazily inside the running event loop (aiohttp binds its session to one)."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, max_connections: int = 200,
                 keepalive_s: float = 5.0) -> None:
        self._tls = tls
        self._max = max_connections
        self._keepalive = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._errors: tuple[type[BaseException], ...] = (OSError,)

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._errors = (aiohttp.ClientError, OSError)
            connector = aiohttp.TCPConnector(limit=self._max, limit_per_host=0, keepalive_timeout=self._keepalive,
                                             ssl=self._tls if self._tls is not None else True,
                                             family=socket.AF_UNSPEC)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                                  raise_for_status=False)
        return self._session

    def _proxy(self, url: str) -> str | None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = _proxy_for(url)
        return self._proxies[origin]

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        import aiohttp

        # Per step, as httpx.Timeout(t): waiting for a pooled connection + connecting, then each read.
        return aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s)

    async def _request(self, url: str, body: bytes, headers: Mapping[str, str],
                       timeout_s: float) -> aiohttp.ClientResponse:
        session = self._open_session()
        try:
            return await session.post(url, data=body, headers=dict(headers), timeout=self._timeout(timeout_s),
                                      proxy=self._proxy(url), allow_redirects=False)
        except TimeoutError:
            raise HttpTimeout("no answer") from None
        except self._errors as exc:
            raise HttpTransportError(type(exc).__name__) from None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpResponse:
        response = await self._request(url, body, headers, timeout_s)
        stream = _AiohttpStream(response, self._errors)
        try:
            content = await stream.aread()
        finally:
            await stream.aclose()
        return HttpResponse(response.status, response.headers, content)

    async def open(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpStream:
        return _AiohttpStream(await self._request(url, body, headers, timeout_s), self._errors)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
