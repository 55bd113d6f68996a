"""Which wire-format client speaks for a key: the demo transport in-process, httpx for everything else."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import httpx

from butler_skill.adapters.providers.anthropic import AnthropicClient
from butler_skill.adapters.providers.base import ChatClient
from butler_skill.adapters.providers.demo import DemoFaults, DemoTransport
from butler_skill.adapters.providers.openai_compat import OpenAICompatClient
from butler_skill.models import ResolvedKey

if TYPE_CHECKING:
    from butler_skill.config import ButlerConfig


class ClientFactory:
    """One pooled httpx client for real providers, one demo transport for the demo provider."""

    def __init__(self, config: ButlerConfig, *, demo_faults: DemoFaults | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, run_id: str = "demo") -> None:
        self.config = config
        # The demo numbers its answers per transport: a run-specific prefix keeps request ids unique in the ledger.
        self.demo = DemoTransport(demo_faults, id_prefix=run_id)
        self._http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(60.0, connect=10.0),
                                       limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        self._demo_http = httpx.AsyncClient(transport=self.demo)

    def client_for(self, key: ResolvedKey) -> ChatClient:
        if key.provider == "demo":
            return OpenAICompatClient(self._demo_http, key.base_url, None)
        secret = self.config.secret_for(key.id)
        if key.wire_format == "anthropic":
            return AnthropicClient(self._http, key.base_url, secret)
        return OpenAICompatClient(self._http, key.base_url, secret)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._demo_http.aclose()

    async def __aenter__(self) -> ClientFactory:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
