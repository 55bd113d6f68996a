"""Many threads and several processes reserve against one small key: never more than the limit."""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path

import pytest

from butler_skill.errors import NoCapacity
from butler_skill.handlers import tokens as t
from butler_skill.host.context import Context
from tests.conftest import write_keys

LIMIT = 5_000
EACH = 100  # 50 reservations fit


def _ctx(folder: Path, database_env: dict[str, str] | None = None) -> Context:
    # database_env selects the ledger (PostgreSQL when it names one); every Context opens its own pool.
    return Context(env={"HOME": str(folder), **(database_env or {})}, keys_path=folder / "keys.json",
                   state_path=folder / "state.db")


def _one_key(folder: Path) -> None:
    write_keys(folder / "keys.json", [{"id": "tiny", "provider": "groq", "limits": {"tokens_per_day": LIMIT}}])


def _grab(folder: Path, attempts: int, database_env: dict[str, str] | None = None) -> int:
    ctx = _ctx(folder, database_env)
    granted = 0
    try:
        for _ in range(attempts):
            try:
                t.allocate_tokens(ctx, t.AllocateTokensInput(prd_text="x", tokens=EACH))
                granted += EACH
            except NoCapacity:
                pass
    finally:
        ctx.close()
    return granted


def test_threads_never_overspend(tmp_path: Path, database_env: dict[str, str]) -> None:
    _one_key(tmp_path)
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        got = _grab(tmp_path, 10, database_env)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(16)]  # 160 attempts for 50 places
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    granted = sum(results)
    assert granted == LIMIT
    ctx = _ctx(tmp_path, database_env)
    totals = ctx.ledger.totals(ctx.now())
    assert totals["reserved"] + totals["used"] == granted
    assert len(ctx.ledger.sessions()) == LIMIT // EACH
    ctx.close()


def _proc_main(folder: str, attempts: int, out: mp.Queue, database_env: dict[str, str]) -> None:  # type: ignore[type-arg]
    out.put(_grab(Path(folder), attempts, database_env))


@pytest.mark.slow
def test_processes_never_overspend(tmp_path: Path, database_env: dict[str, str]) -> None:
    _one_key(tmp_path)
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    procs = [spawn.Process(target=_proc_main, args=(str(tmp_path), 25, queue, database_env)) for _ in range(4)]
    for p in procs:
        p.start()
    granted = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(granted) == LIMIT  # 100 attempts for 50 places
    ctx = _ctx(tmp_path, database_env)
    totals = ctx.ledger.totals(ctx.now())
    assert totals["reserved"] == sum(granted) and totals["used"] == 0
    ctx.close()
