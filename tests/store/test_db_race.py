"""Several processes whose first call races on a state file that does not exist yet all succeed: creation,
the WAL switch and the migrations are safe under that race, and each migration is applied exactly once."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.store.db import load_migrations
from tests.conftest import write_keys

PROCS = 6
ROUNDS = 2
# Opening the Database alone is quick, so many rounds fit: the old code failed about one open in 240 here.
OPEN_PROCS = 8
OPEN_ROUNDS = 30


def _open(path: str, start: Any, results: Any) -> None:
    from butler_skill.store.db import Database

    start.wait()
    try:
        db = Database(path)
        with db.write() as tx:
            tx.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()
        db.close()
        results.put(True)
    except BaseException as exc:  # reported to the parent
        results.put(f"raised {type(exc).__name__}: {exc}")


def test_racing_opens_of_a_new_file_never_fail(tmp_path: Path) -> None:
    mpc = mp.get_context("fork")
    failures: list[str] = []
    for round_ in range(OPEN_ROUNDS):
        path = str(tmp_path / f"s{round_}.db")
        start, results = mpc.Event(), mpc.Queue()
        procs = [mpc.Process(target=_open, args=(path, start, results)) for _ in range(OPEN_PROCS)]
        for p in procs:
            p.start()
        start.set()
        failures += [o for o in (results.get(timeout=120) for _ in procs) if o is not True]
        for p in procs:
            p.join(60)
    assert failures == []


def _first_call(folder: str, start: Any, results: Any) -> None:
    start.wait()
    ctx = Context(env={"HOME": folder}, keys_path=Path(folder) / "keys.json", state_path=Path(folder) / "state.db")
    try:
        out = call_tool("allocate_tokens", {"prd_text": "x", "tokens": 10}, ctx)
        results.put(out["ok"] or f"{out['error']['code']}: {out['error']['message']}")
    except BaseException as exc:  # reported to the parent
        results.put(f"raised {type(exc).__name__}: {exc}")
    finally:
        ctx.close()


def test_first_calls_of_racing_processes_never_fail(tmp_path: Path) -> None:
    mpc = mp.get_context("fork")
    for round_ in range(ROUNDS):
        folder = tmp_path / f"r{round_}"
        folder.mkdir()
        write_keys(folder / "keys.json", [{"id": "k", "provider": "groq", "limits": {"tokens_per_day": 10_000}}])
        start, results = mpc.Event(), mpc.Queue()
        procs = [mpc.Process(target=_first_call, args=(str(folder), start, results)) for _ in range(PROCS)]
        for p in procs:
            p.start()
        start.set()  # all at once, on a file none of them has created
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
        assert outcomes == [True] * PROCS, outcomes
        with sqlite3.connect(folder / "state.db") as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
            sessions = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert versions == [m.version for m in load_migrations()]  # each once, none missing
        assert sessions == PROCS and mode == "wal"
