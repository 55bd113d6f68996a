"""Which wire-format client speaks for a key: the demo transport in-process (httpx), the lean HTTP/1.1 client for
real providers (``LeanBackend``: asyncio Protocol + llhttp; a URL the environment sends through a proxy goes over
aiohttp instead); ``http="aiohttp"`` or ``http="httpx"`` (sharded pools) put every real provider on those."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import httpx

from butler_skill.adapters.providers.anthropic import AnthropicClient
from butler_skill.adapters.providers.base import ChatClient
from butler_skill.adapters.providers.demo import DemoFaults, DemoTransport
from butler_skill.adapters.providers.http import AiohttpBackend, HttpBackend, HttpxBackend
from butler_skill.adapters.providers.lean import LeanBackend
from butler_skill.adapters.providers.openai_compat import OpenAICompatClient
from butler_skill.models import ResolvedKey

if TYPE_CHECKING:
    from butler_skill.config import ButlerConfig


# httpcore writes a request's headers and body separately and does not set TCP_NODELAY: without it Nagle's
# algorithm holds the body until the server's delayed ACK (~40 ms on Linux; 15 ms a call measured on loopback).
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


class _Shard:
    __slots__ = ("in_flight", "transport")

    def __init__(self, transport: httpx.AsyncHTTPTransport) -> None:
        self.transport = transport
        self.in_flight = 0


class _Release(httpx.AsyncByteStream):
    """A response body that gives its shard's slot back once, when httpx closes it."""

    def __init__(self, inner: httpx.AsyncByteStream, shard: _Shard) -> None:
        self._inner = inner
        self._shard: _Shard | None = shard

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._shard is not None:
                self._shard.in_flight -= 1
                self._shard = None


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several small connection pools instead of one large one.

    httpcore's pool re-examines every connection it holds on each request and each response close (and
    counts the idle ones again for every idle one), so its bookkeeping grows with the square of its
    connections: at 100 requests in flight a single pool spent about 10 ms of CPU per request on loopback,
    which capped a 100-wide run at ~100 requests a second whatever the provider's latency. Each request here
    goes to the pool with the fewest requests in flight; a new pool opens when every pool has `per_shard`
    in flight, up to `max_shards` (`per_shard * max_shards` connections in all, as one 200-connection pool
    allowed before).
    """

    def __init__(self, *, verify: ssl.SSLContext | None = None, per_shard: int = 8, max_shards: int = 25) -> None:
        self._per_shard = per_shard
        self._max_shards = max_shards
        self._shards: list[_Shard] = []
        self._ssl = verify  # loading the CA bundle costs ~30 ms: once, shared by the pools

    def _pick(self) -> _Shard:
        best = min(self._shards, key=lambda s: s.in_flight, default=None)
        if best is None or (best.in_flight >= self._per_shard and len(self._shards) < self._max_shards):
            limits = httpx.Limits(max_connections=self._per_shard, max_keepalive_connections=self._per_shard)
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            best = _Shard(httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits, socket_options=NODELAY))
            self._shards.append(best)
        return best

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        shard = self._pick()
        shard.in_flight += 1
        try:
            response = await shard.transport.handle_async_request(request)
        except BaseException:
            shard.in_flight -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Release(response.stream, shard)
        return response

    async def aclose(self) -> None:
        shards, self._shards = self._shards, []
        for shard in shards:
            await shard.transport.aclose()


class ClientFactory:
    """One pooled HTTP client for real providers, one demo transport for the demo provider.

    `http`: "lean" (default; up to 200 connections per origin, llhttp, the TLS context built only when an https
    origin is first used), "aiohttp" (one pool of 200 connections) or "httpx" (sharded httpcore pools).
    `transport`: an httpx transport for every provider (tests inject one); it implies httpx.
    """

    def __init__(self, config: ButlerConfig, *, demo_faults: DemoFaults | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, run_id: str = "demo",
                 http: Literal["lean", "aiohttp", "httpx"] = "lean") -> None:
        self.config = config
        # The demo numbers its answers per transport: a run-specific prefix keeps request ids unique in the ledger.
        self.demo = DemoTransport(demo_faults, id_prefix=run_id)
        timeout = httpx.Timeout(60.0, connect=10.0)
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self._http: HttpBackend
        if transport is not None:
            self._http = HttpxBackend(httpx.AsyncClient(transport=transport, timeout=timeout, limits=limits))
        elif http == "httpx":
            tls = httpx.create_ssl_context()
            # Direct connections go through small pools; a proxy from the environment is mounted by httpx on a
            # more specific pattern than "all://" and keeps working as before (one pool, as do NO_PROXY hosts).
            self._http = HttpxBackend(httpx.AsyncClient(verify=tls, mounts={"all://": ShardedTransport(verify=tls)},
                                                        timeout=timeout, limits=limits))
        elif http == "aiohttp":
            # httpx's TLS context (certifi's CAs, or SSL_CERT_FILE): both clients trust the same authorities.
            self._http = AiohttpBackend(tls=httpx.create_ssl_context(), max_connections=200)
        else:
            # httpx's TLS context too, built on first https use (loading the CAs costs tens of ms).
            self._http = LeanBackend(tls_factory=httpx.create_ssl_context, max_connections=200)
        self._demo_http = httpx.AsyncClient(transport=self.demo)
        self._clients: dict[tuple[object, ...], ChatClient] = {}

    def client_for(self, key: ResolvedKey) -> ChatClient:
        """The wire-format client for a key: made once per key and settings (it holds no state between calls)."""
        facts = (key.id, key.provider, key.wire_format, key.base_url, key.max_output_tokens, key.token_param)
        client = self._clients.get(facts)
        if client is None:
            client = self._clients[facts] = self._client_for(key)
        return client

    def _client_for(self, key: ResolvedKey) -> ChatClient:
        # The model's output cap bounds every request; the limit goes in the field the key's API expects.
        cap, param = key.max_output_tokens, key.token_param
        if key.provider == "demo":
            return OpenAICompatClient(self._demo_http, key.base_url, None, max_output_tokens=cap, token_param=param)
        secret = self.config.secret_for(key.id)
        if key.wire_format == "anthropic":
            return AnthropicClient(self._http, key.base_url, secret, max_output_tokens=cap)
        return OpenAICompatClient(self._http, key.base_url, secret, max_output_tokens=cap, token_param=param)

    def prepare(self, keys: list[ResolvedKey], n: int) -> None:
        """Start opening connections for about `n` calls about to be made with some of `keys` (which ones is not
        known yet: the plan chooses them): `n` in all, shared evenly by the providers' origins among them, never more
        than `n` to one origin (the demo provider needs none). Called before a run's plan is written, so the
        connections open while it is."""
        clients: dict[str, ChatClient] = {}
        for key in keys:
            if key.provider != "demo":
                clients.setdefault(key.base_url.rstrip("/"), self.client_for(key))
        if clients:
            each = -(-n // len(clients))
            for client in clients.values():
                client.prepare(each)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._demo_http.aclose()

    async def __aenter__(self) -> ClientFactory:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
