"""spawn_agent answers from what its run holds in memory (runner._Run.results) instead of reading the task back:
property, over random runs against a real loopback provider (answers that succeed, carry a credential-shaped text
the ledger redacts, fail and are retried, or are cut mid-stream), the results it answers are exactly what
`TaskStore.results` reads from the ledger afterwards; when the run cannot know them (a retry, a failure), it says
so and the answer is read, as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.host.context import Context
from butler_skill.store.tasks import TaskStore
from butler_skill.subagents.clients import ClientFactory
from butler_skill.subagents.runner import SpawnOptions, plan_and_run, run_in_loop
from tests.conftest import write_keys
from tests.servers.fake_llm import FakeLLM, Reply, dropped, ok, server_error, start_fake_llm

LEAK = "sk-proj-" + "Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc" + "T3BlbkFJ" + "Vb1Nm2Mq3Wn4Eb5Rv6"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLM]:
    with start_fake_llm() as s:
        yield s


REPLIES: dict[str, Any] = {
    "ok": lambda: ok(text="done"),
    "leak": lambda: ok(text=f"here is a key: {LEAK}"),
    "server_error": lambda: server_error(500),
    "cut": lambda: dropped(after_chunks=3),  # (text arrived: settled as interrupted, or none: retried)
}


def run_spawn(folder: Path, server: FakeLLM, items: int, stream: bool, concurrency: int
              ) -> tuple[Context, str, Any]:
    write_keys(folder / "keys.json", [
        {"id": f"k{i}", "provider": "openai", "scope": f"acct-{i}", "key": f"sk-test-not-a-secret-{i:06d}",
         "base_url": server.base_url, "model": "gpt-test", "limits": {"tokens_per_day": 1_000_000}} for i in (1, 2)])
    ctx = Context(env={"HOME": str(folder)}, keys_path=folder / "keys.json", state_path=folder / "s.db")
    options = SpawnOptions(maxConcurrent=concurrency, stream=stream, backoffBaseMs=1, backoffMaxMs=2)

    async def go() -> tuple[str, Any]:
        async with ClientFactory(ctx.config, run_id="t") as factory:
            return await plan_and_run(ctx, name="memory", description="\n".join(f"- item {i}" for i in range(items)),
                                      budget=items * 4_000, options=options, factory=factory)

    task_id, results = run_in_loop(go())
    return ctx, task_id, results


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.integers(1, 5), stream=st.booleans(), concurrency=st.integers(1, 3),
       replies=st.lists(st.sampled_from(sorted(REPLIES)), max_size=6))
def test_the_results_a_run_answers_are_what_the_ledger_holds(tmp_path_factory: Any, server: FakeLLM, items: int,
                                                             stream: bool, concurrency: int,
                                                             replies: list[str]) -> None:
    server.reset()
    server.script(*[REPLIES[r]() for r in replies])
    ctx, task_id, results = run_spawn(tmp_path_factory.mktemp("mem"), server, items, stream, concurrency)
    try:
        read = TaskStore(ctx.db).results(task_id)
        if all(r in ("ok", "leak") for r in replies):
            # Every sub-task ended with its first call settled.
            assert results is not None
        if results is not None:
            assert results == read
        assert all(LEAK not in (v.output or "") for v in read)
    finally:
        ctx.close()


def test_a_run_with_a_retry_is_read_back(tmp_path: Path, server: FakeLLM) -> None:
    server.reset()
    server.script(server_error(500), Reply(text="second time"))
    ctx, task_id, results = run_spawn(tmp_path, server, 1, False, 1)
    try:
        assert results is None  # the second attempt: the run does not claim to know its numbering
        assert [(v.status, v.attempts) for v in TaskStore(ctx.db).results(task_id)] == [("success", 2)]
    finally:
        ctx.close()
