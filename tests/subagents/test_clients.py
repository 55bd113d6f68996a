"""ClientFactory: the lean client for real providers by default, aiohttp or httpx (sharded pools) on request, one
client per key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from butler_skill.adapters.providers.http import AiohttpBackend, HttpxBackend
from butler_skill.adapters.providers.lean import LeanBackend
from butler_skill.host.context import Context
from butler_skill.store.tasks import TaskStore
from butler_skill.subagents.clients import ClientFactory
from butler_skill.subagents.planning import plan_task
from butler_skill.subagents.runner import SpawnOptions, run_task
from tests.conftest import write_keys
from tests.servers.fake_llm import FakeLLM, ok, start_fake_llm


@pytest.fixture
def server() -> Iterator[FakeLLM]:
    with start_fake_llm(ok(text="done", prompt_tokens=100, completion_tokens=20)) as s:
        yield s


def make_ctx(tmp_path: Path, server: FakeLLM) -> Context:
    write_keys(tmp_path / "keys.json", [
        {"id": "oa", "provider": "openai", "base_url": server.base_url, "model": "m",
         "key": "sk-test-not-a-secret-000001", "limits": {"tokens_per_day": 100_000}},
        {"id": "an", "provider": "anthropic", "base_url": server.base_url, "model": "c",
         "key": "sk-test-not-a-secret-000002", "limits": {"tokens_per_day": 100_000}}])
    return Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")


@pytest.mark.parametrize("http", ["lean", "aiohttp", "httpx", None])
def test_a_run_on_either_client(tmp_path: Path, server: FakeLLM, http: str) -> None:
    ctx = make_ctx(tmp_path, server)
    try:
        task_id, _ = plan_task(ctx, name="t", description="1. First\n2. Second\n3. Third\n4. Fourth", budget=8_000,
                               mode="spawn", options={})

        async def go() -> type:
            kw = {} if http is None else {"http": http}
            async with ClientFactory(ctx.config, **kw) as factory:  # type: ignore[arg-type]
                await run_task(ctx, task_id, SpawnOptions(maxConcurrent=4), factory)
                return type(factory._http)

        backend = asyncio.run(go())
        assert backend is {"lean": LeanBackend, None: LeanBackend, "aiohttp": AiohttpBackend,
                           "httpx": HttpxBackend}[http]
        rows = TaskStore(ctx.db).subtasks(task_id)
        assert [r.status for r in rows] == ["success"] * 4 and all(r.tokens_used == 120 for r in rows)
        assert len(server.requests) == 4
    finally:
        ctx.close()


def test_one_client_per_key_and_settings(tmp_path: Path, server: FakeLLM) -> None:
    ctx = make_ctx(tmp_path, server)
    try:
        oa, an = ctx.config.resolved()

        async def go() -> None:
            async with ClientFactory(ctx.config) as factory:
                assert factory.client_for(oa) is factory.client_for(oa)
                assert factory.client_for(an) is not factory.client_for(oa)
                moved = oa.model_copy(update={"base_url": server.origin + "/other/v1"})
                assert factory.client_for(moved) is not factory.client_for(oa)

        asyncio.run(go())
    finally:
        ctx.close()
