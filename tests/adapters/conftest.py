"""Fixtures for the provider adapter tests: the loopback fake LLM server, and the HTTP client the adapters use
against it (every test on `fake_llm` runs on httpx, on aiohttp (the proxy fallback) and on the lean client, Butler's
client for real providers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest

from butler_skill.adapters.providers.http import AiohttpBackend, HttpBackend
from butler_skill.adapters.providers.lean import LeanBackend
from tests.servers.fake_llm import FakeLLM, start_fake_llm

HTTP_CLIENTS = ("httpx", "aiohttp", "lean")
_client = {"kind": "httpx"}


@asynccontextmanager
async def loopback_http() -> AsyncIterator[HttpBackend | httpx.AsyncClient]:
    """The HTTP client of the running test's parameter (see `fake_llm`), closed afterwards."""
    kind = _client["kind"]
    http: HttpBackend | httpx.AsyncClient = (
        httpx.AsyncClient() if kind == "httpx" else AiohttpBackend() if kind == "aiohttp" else LeanBackend())
    try:
        yield http
    finally:
        await http.aclose()


@pytest.fixture(scope="module")
def fake_llm_server() -> Iterator[FakeLLM]:
    server = start_fake_llm()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=HTTP_CLIENTS)
def fake_llm(fake_llm_server: FakeLLM, request: pytest.FixtureRequest) -> Iterator[FakeLLM]:
    """A running fake server with an empty script and no recorded requests; `loopback_http` gives the client."""
    _client["kind"] = request.param
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()
