"""Group commit (subagents/batching.py): writes handed over in one turn of the event loop share a transaction, and
each keeps the guarantees of a transaction of its own (durable before done, failures isolated, nothing lost on
cancellation). The runner's use of it is checked end to end in test_runner.py and, for a crash half-way, below."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.host.context import Context
from butler_skill.store.db import Database
from butler_skill.subagents.batching import BatchedReads, GroupCommit
from tests.conftest import write_keys
from tests.servers.fake_llm import FakeLLM, slow, start_fake_llm


class Boom(Exception):
    pass


# Inline (the loop's thread: PostgreSQL) and on a writer thread (SQLite): the same guarantees.
writer = pytest.mark.parametrize("thread", [False, True], ids=["inline", "writer-thread"])


def scratch(tmp_path: Path) -> Database:
    db = Database(tmp_path / "s.db")
    with db.write() as conn:
        conn.execute("CREATE TABLE scratch (x INTEGER PRIMARY KEY)")
    return db


def rows(path: Path) -> set[int]:
    """What another connection sees: only committed rows."""
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT x FROM scratch")}
    finally:
        conn.close()


def insert(x: int, fail: bool = False) -> Any:
    def work(conn: Any) -> int:
        conn.execute("INSERT INTO scratch (x) VALUES (?)", (x,))
        if fail:
            raise Boom(x)
        return x

    return work


@writer
def test_writes_of_one_turn_share_one_transaction_and_are_committed_when_done(tmp_path: Path, thread: bool) -> None:
    db = scratch(tmp_path)
    seen_when_done: dict[int, set[int]] = {}

    async def one(group: GroupCommit, x: int) -> None:
        assert await group.write(insert(x)) == x
        seen_when_done[x] = rows(tmp_path / "s.db")

    async def go() -> GroupCommit:
        group = GroupCommit(db, thread=thread)
        await asyncio.gather(*(one(group, x) for x in range(20)))
        await asyncio.gather(*(one(group, x) for x in range(20, 25)))
        await group.aclose()
        return group

    group = asyncio.run(go())
    assert group.batches == [20, 5]
    assert all(x in seen for x, seen in seen_when_done.items())  # another connection saw it before it was done
    assert rows(tmp_path / "s.db") == set(range(25))


def test_writes_handed_over_during_a_transaction_form_the_next_one(tmp_path: Path) -> None:
    db = scratch(tmp_path)

    def slow_insert(conn: Any) -> int:
        conn.execute("INSERT INTO scratch (x) VALUES (100)")
        time.sleep(0.3)  # the writer thread is busy; the loop goes on
        return 100

    async def go() -> GroupCommit:
        group = GroupCommit(db, thread=True)
        first = asyncio.create_task(group.write(slow_insert))
        await asyncio.sleep(0.05)  # the first transaction is under way
        await asyncio.gather(first, *(group.write(insert(x)) for x in range(5)))
        await group.aclose()
        return group

    group = asyncio.run(go())
    assert group.batches == [1, 5] and rows(tmp_path / "s.db") == {100, 0, 1, 2, 3, 4}


@writer
def test_a_failing_write_is_undone_alone(tmp_path: Path, thread: bool) -> None:
    db = scratch(tmp_path)

    async def go() -> list[Any]:
        group = GroupCommit(db, thread=thread)
        results = await asyncio.gather(*(group.write(insert(x, fail=x == 5)) for x in range(10)),
                                       return_exceptions=True)
        await group.aclose()
        return results

    results = asyncio.run(go())
    assert isinstance(results[5], Boom) and results[:5] + results[6:] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert rows(tmp_path / "s.db") == set(range(10)) - {5}


@writer
def test_a_failed_transaction_fails_every_writer_and_writes_nothing(tmp_path: Path, thread: bool) -> None:
    db = scratch(tmp_path)

    def prepare(conn: Any) -> None:
        conn.execute("INSERT INTO scratch (x) VALUES (-1)")
        raise Boom("prepare")

    async def go() -> list[Any]:
        group = GroupCommit(db, prepare=prepare, thread=thread)
        results = await asyncio.gather(*(group.write(insert(x)) for x in range(4)), return_exceptions=True)
        await group.aclose()
        return results

    assert all(isinstance(r, Boom) for r in asyncio.run(go()))
    assert rows(tmp_path / "s.db") == set()


def test_prepare_runs_first_in_every_transaction(tmp_path: Path) -> None:
    db = scratch(tmp_path)
    order: list[str] = []

    async def go() -> None:
        group = GroupCommit(db, prepare=lambda conn: order.append("prepare"))

        def work(conn: Any) -> None:
            order.append("write")

        await asyncio.gather(group.write(work), group.write(work))
        await group.write(work)

    asyncio.run(go())
    assert order == ["prepare", "write", "write", "prepare", "write"]


@writer
def test_a_cancelled_waiter_is_written_before_the_cancellation_goes_on(tmp_path: Path, thread: bool) -> None:
    # Inline, the write is still pending when its waiter is cancelled: it is written alone, at once. On a writer
    # thread it is already being written: the waiter waits for that transaction before it lets go.
    db = scratch(tmp_path)
    after: list[int] = []

    async def go() -> GroupCommit:
        group = GroupCommit(db, thread=thread)
        task = asyncio.create_task(group.write(insert(7), after.append))
        await asyncio.sleep(0)  # the write is handed over; the writer starts on the next turn
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await group.aclose()
        return group

    group = asyncio.run(go())
    assert rows(tmp_path / "s.db") == {7} and after == [7] and group.batches == [1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=1, max_size=8), min_size=1, max_size=6), st.booleans())
def test_property_committed_rows_are_exactly_the_writes_that_succeeded(tmp_path_factory: pytest.TempPathFactory,
                                                                       groups: list[list[bool]], thread: bool) -> None:
    """Groups of writes handed over together (each may fail): one transaction per group, and the table holds
    exactly the writes whose awaiters got a result."""
    folder = tmp_path_factory.mktemp("gc")
    db = scratch(folder)

    async def go() -> tuple[GroupCommit, set[int]]:
        group = GroupCommit(db, thread=thread)
        ok: set[int] = set()
        n = 0
        for fails in groups:
            xs = list(range(n, n + len(fails)))
            n += len(fails)
            results = await asyncio.gather(*(group.write(insert(x, f)) for x, f in zip(xs, fails, strict=True)),
                                           return_exceptions=True)
            for x, f, r in zip(xs, fails, results, strict=True):
                assert isinstance(r, Boom) if f else r == x
                if not f:
                    ok.add(x)
        await group.aclose()
        return group, ok

    group, ok = asyncio.run(go())
    assert group.batches == [len(g) for g in groups]
    assert rows(folder / "s.db") == ok
    db.close()


def test_batched_reads_ask_once_per_turn_and_raise_for_what_is_missing() -> None:
    asked: list[list[str]] = []

    def load(keys: list[str]) -> dict[str, int]:
        asked.append(keys)
        return {k: len(k) for k in keys if k != "gone"}

    def missing(key: str) -> int:
        raise KeyError(key)

    async def go() -> list[Any]:
        reads: BatchedReads[str, int] = BatchedReads(load, missing)
        return await asyncio.gather(reads.get("a"), reads.get("bb"), reads.get("gone"), return_exceptions=True)

    results = asyncio.run(go())
    assert results[:2] == [1, 2] and isinstance(results[2], KeyError)
    assert asked == [["a", "bb", "gone"]]


# ---- a run killed half-way ----------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from butler_skill.handlers.agents import SpawnAgentInput, spawn_agent
    from butler_skill.host.context import Context
    from butler_skill.subagents.runner import SpawnOptions
    folder = Path(sys.argv[1])
    ctx = Context(env={"HOME": str(folder), "BUTLER_LEASE_SECONDS": "600"},
                  keys_path=folder / "keys.json", state_path=folder / "state.db")
    description = "\\n".join(f"- Item {i}: say ok" for i in range(60))
    spawn_agent(ctx, SpawnAgentInput(name="crash", description=description, budget=60_000,
                                     options=SpawnOptions(maxConcurrent=10, timeoutMs=600_000)))
""")


@pytest.fixture
def provider() -> Any:
    with start_fake_llm(slow(0.5, prompt_tokens=400, completion_tokens=100, text="ok")) as s:
        yield s


@pytest.mark.slow
def test_sigkill_half_way_leaves_a_consistent_task_ledger(tmp_path: Path, provider: FakeLLM) -> None:
    write_keys(tmp_path / "keys.json", [{"id": "k", "provider": "openai", "base_url": provider.base_url,
                                         "model": "m", "key": "sk-test-not-a-secret-000000",
                                         "limits": {"tokens_per_day": 1_000_000}}])
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill it once some sub-tasks are done and most are not
            done = 0
            if (tmp_path / "state.db").exists():
                conn = sqlite3.connect(tmp_path / "state.db", timeout=30)
                try:
                    done = conn.execute("SELECT COUNT(*) FROM subtasks WHERE status = 'success'").fetchone()[0]
                except sqlite3.OperationalError:  # not migrated yet
                    done = 0
                finally:
                    conn.close()
            if done >= 5 or child.poll() is not None:
                break
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)

    conn = sqlite3.connect(tmp_path / "state.db")
    conn.row_factory = sqlite3.Row
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    subtasks = conn.execute(
        "SELECT st.id, st.status, st.attempts, st.share, s.state, s.leg_held, s.used,"
        " (SELECT COUNT(*) FROM usage_records u WHERE u.session_id = s.id) AS records,"
        " (SELECT COUNT(*) FROM attempts a WHERE a.task_id = st.task_id AND a.subtask_id = st.id) AS tries"
        " FROM subtasks st JOIN sessions s ON s.id = st.session_id").fetchall()
    assert len(subtasks) == 60
    statuses = {r["status"] for r in subtasks}
    assert statuses <= {"success", "pending"}, statuses
    for r in subtasks:
        if r["status"] == "success":  # settled, attempt recorded, released: all of it, in one transaction
            assert (r["state"], r["leg_held"], r["used"], r["records"], r["tries"], r["attempts"]) == \
                ("closed", 0, 500, 1, 1, 1), dict(r)
        else:  # nothing of it was written: still holding its whole share until the lease ends
            assert (r["state"], r["leg_held"], r["used"], r["records"], r["tries"]) == \
                ("open", r["share"], 0, 0, 0), dict(r)
    counter = conn.execute("SELECT used, reserved FROM key_day_counters").fetchone()
    usage = conn.execute("SELECT COALESCE(SUM(total_tokens), 0) FROM usage_records").fetchone()[0]
    held = conn.execute("SELECT COALESCE(SUM(leg_held), 0) FROM sessions WHERE state = 'open'").fetchone()[0]
    assert (counter["used"], counter["reserved"]) == (usage, held)
    conn.close()
    finished = sum(r["status"] == "success" for r in subtasks)
    assert 5 <= finished < 60  # killed half-way (six waves of ten, half a second each)

    ctx = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "state.db")
    assert ctx.ledger.expire_leases(ctx.now() + timedelta(days=1)) == 60 - finished
    with ctx.db.read() as c:  # every hold came back after the lease
        assert c.execute("SELECT SUM(reserved) AS r FROM key_day_counters").fetchone()["r"] == 0
    ctx.close()


# ---- on the ledger's database (collected again in tests/store/test_behaviour_both.py for PostgreSQL) ---------
def test_group_commit_on_the_ledger_database(ctx: Context) -> None:
    with ctx.db.write() as conn:
        conn.execute("CREATE TABLE scratch (x INTEGER PRIMARY KEY)")

    async def go() -> tuple[GroupCommit, list[Any]]:
        group = GroupCommit(ctx.db)
        results = await asyncio.gather(*(group.write(insert(x, fail=x == 3)) for x in range(8)),
                                       return_exceptions=True)
        return group, results

    group, results = asyncio.run(go())
    assert group.batches == [8] and isinstance(results[3], Boom)
    with ctx.db.read() as conn:
        assert {r["x"] for r in conn.execute("SELECT x FROM scratch")} == set(range(8)) - {3}


def test_a_run_settles_every_sub_task_in_grouped_transactions(env: dict[str, str], tmp_path: Path) -> None:
    from butler_skill.handlers.agents import SpawnAgentInput, spawn_agent
    from butler_skill.subagents.runner import SpawnOptions

    with start_fake_llm(slow(0.05, prompt_tokens=300, completion_tokens=50, text="ok")) as server:
        keys = write_keys(tmp_path / "run-keys.json", [
            {"id": f"k{i}", "provider": "openai", "scope": f"a{i}", "base_url": server.base_url, "model": "m",
             "key": f"sk-test-not-a-secret-{i:06d}", "limits": {"tokens_per_day": 10_000}} for i in (1, 2)])
        ctx = Context(env={**env, "BUTLER_KEYS_PATH": str(keys)})
        try:
            description = "\n".join(f"- Item {i}: say ok" for i in range(24))
            out = spawn_agent(ctx, SpawnAgentInput(name="grouped", description=description, budget=19_200,
                                                   options=SpawnOptions(maxConcurrent=24)))
            assert [r.status for r in out.results] == ["success"] * 24
            assert all(r.tokensUsed == 350 and r.attempts == 1 for r in out.results)
            with ctx.db.read() as conn:
                counters = conn.execute("SELECT SUM(used) AS used, SUM(reserved) AS reserved FROM key_day_counters"
                                        " WHERE key_id IN ('k1', 'k2')").fetchone()
                records = conn.execute("SELECT COUNT(*) AS n FROM usage_records").fetchone()["n"]
                open_ = conn.execute("SELECT COUNT(*) AS n FROM sessions WHERE state = 'open'").fetchone()["n"]
            assert (counters["used"], counters["reserved"], records, open_) == (24 * 350, 0, 24, 0)
        finally:
            ctx.close()
