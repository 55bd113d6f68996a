"""Fixtures for the provider adapter tests: the loopback fake LLM server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.fake_llm import FakeLLM, start_fake_llm


@pytest.fixture(scope="module")
def fake_llm_server() -> Iterator[FakeLLM]:
    server = start_fake_llm()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLM) -> Iterator[FakeLLM]:
    """A running fake server with an empty script and no recorded requests."""
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()
