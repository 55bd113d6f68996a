"""An allocation on SQLite reuses the figures the last allocation on its connection left (store/ledger.py `_Seen`)
instead of reading today's counters, the running cooldowns and the earliest open lease again, while no other
connection committed (`PRAGMA data_version`), no other write ran on its own connection, and neither the day, a
cooldown nor a lease has run out since. The property: over random allocations, settlements, closes, cooldowns,
expiries and clock moves (across leases, cooldowns and UTC days), made through two connections of one file (each
keeping a memo of its own, each seeing the other's commits only through the file), every allocation sees exactly
the key views a read in every allocation sees, grants the same, and leaves every row of the ledger the same."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from butler_skill.config import KeyConfig, resolve_key
from butler_skill.core import selection
from butler_skill.core.selection import KeyView
from butler_skill.core.usage import Usage
from butler_skill.store import ledger as L
from butler_skill.store.db import Database
from butler_skill.store.ledger import Ledger
from butler_skill.store.protocol import Grant

START = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # an hour before midnight: clock moves cross the UTC day
NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # the fixed clock of the tests that do not move it
KEYS = [resolve_key(KeyConfig(id=f"k{n}", provider=provider, limits={"tokens_per_day": limit}, scope=f"acct{n % 2}"))
        for n, (provider, limit) in enumerate([("groq", 3_000), ("openai", 5_000), ("groq", 2_000)])]

via = st.sampled_from(["main", "main", "main", "other"])
alloc = st.tuples(st.just("alloc"), via, st.integers(0, 1_500), st.sampled_from([None, "groq", "openai"]),
                  st.sampled_from([0, 30, 600]))
# Allocations are most of the steps (runs of them are what reuses the figures); every other write ends a memo.
steps = st.lists(st.one_of(
    alloc, alloc, alloc, st.tuples(st.just("burst"), st.lists(alloc, min_size=2, max_size=8)),
    st.tuples(st.just("use"), via, st.integers(0, 40), st.integers(0, 2_500)),
    st.tuples(st.just("close"), via, st.integers(0, 40)),
    st.tuples(st.just("cool"), via, st.integers(0, 2), st.sampled_from([-60, -1, 0, 1, 2, 3, 5, 60, 900])),
    st.tuples(st.just("expire"), via),
    st.tuples(st.just("tick"), st.sampled_from([0, 1, 29, 31, 200, 601, 3_600, 86_400])),
    st.tuples(st.just("tick"), st.sampled_from([-2, 0, 1, 5, 3_597]))),
    min_size=1, max_size=60)


@contextmanager
def reuse(on: bool) -> Iterator[None]:
    was = L._REUSE
    L._REUSE = on
    try:
        yield
    finally:
        L._REUSE = was


class Run:
    """One ledger file, written through two connections (two Database objects: as two processes would)."""

    def __init__(self, folder: Path, memo: bool) -> None:
        self.memo = memo
        self.dbs = {"main": Database(folder / "state.db"), "other": Database(folder / "state.db")}
        self.ledgers = {name: Ledger(db) for name, db in self.dbs.items()}
        self.now = START
        self.sessions: list[str] = []
        self.seen: list[Any] = []  # per allocation: the views its choice saw, and what it got

    def step(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "burst":  # several allocations, a second apart
            for one in step[1]:
                self.step(one)
                self.now += timedelta(seconds=1)
            return
        if kind == "tick":
            self.now += timedelta(seconds=step[1])
            return
        name = step[1]
        ledger, now = self.ledgers[name], self.now
        with reuse(self.memo):
            if kind == "alloc":
                _, _, need, provider, lease = step
                seen: list[list[KeyView]] = []

                def pick(views: list[KeyView], need: int = need, provider: str | None = provider) -> KeyView | None:
                    seen.append(list(views))
                    return selection.choose_key(views, need, now, preferred_provider=provider)

                sid = f"s{len(self.sessions)}"
                got = ledger.open_session(keys=KEYS, pick=pick, need=need, session_id=sid, label=None, task_id=None,
                                          threshold_ratio=0.75, now=now, lease_seconds=lease)
                if isinstance(got, Grant):
                    self.sessions.append(sid)
                    self.seen.append((seen, got.key.key_id))
                else:
                    self.seen.append((seen, None))
            elif kind == "use" and self.sessions:
                sid = self.sessions[step[2] % len(self.sessions)]
                with ledger.db.write() as conn:
                    L.expire_leases_in(conn, now)
                    L.commit_usage_in(conn, L.UsageReport(
                        request_id=f"r{len(self.seen)}-{step[3]}", session_id=sid,
                        usage=Usage(input_tokens=step[3] // 2, output_tokens=step[3] - step[3] // 2),
                        cost_usd=Decimal(0), now=now, lease_seconds=600, key_limit=3_000,
                        key_id=L.sessions_in(conn, [sid])[sid].key_id))
                self.seen.append("use")
            elif kind == "close" and self.sessions:
                ledger.close_session(self.sessions[step[2] % len(self.sessions)], now)
            elif kind == "cool":
                ledger.set_cooldown(KEYS[step[2]].id, now + timedelta(seconds=step[3]), "rate_limit", now)
            elif kind == "expire":
                ledger.expire_leases(now)

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        conn = self.dbs["main"]._connection()
        return {table: [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
                for table in ("key_day_counters", "sessions", "key_cooldowns", "events", "session_spend_days",
                              "usage_records")}

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


A = ("alloc", "main", 10, None, 600)


@settings(max_examples=100, deadline=None)
@given(steps)
# (The first allocation after another write only marks a run; the second reads and keeps; the third reuses.)
@example([("cool", "main", 0, 2), ("burst", [A, A, A, A, A])])  # a cooldown ends between two allocations
@example([("tick", 3_597), ("burst", [A, A, A, A, A])])  # so does the UTC day
@example([("cool", "main", 0, 1), ("tick", 1), A, A, ("tick", -2), A])  # the clock steps back into a cooldown
@example([A, ("alloc", "main", 1_500, None, 0), ("tick", 1), A])  # the memo's own lease falls due
@example([A, ("alloc", "other", 1_000, None, 600), A, ("use", "other", 0, 900), A, ("close", "main", 0), A])
def test_reused_figures_equal_a_read_in_every_allocation(plan: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        runs = [Run(Path(a), memo=True), Run(Path(b), memo=False)]
        try:
            for step in plan:
                for run in runs:
                    run.step(step)
            assert runs[0].seen == runs[1].seen
            assert runs[0].rows() == runs[1].rows()
        finally:
            for run in runs:
                run.close()


def _alloc(ledger: Ledger, need: int, now: datetime, sid: str) -> tuple[list[KeyView], Grant | list[KeyView]]:
    seen: list[list[KeyView]] = []

    def pick(views: list[KeyView]) -> KeyView | None:
        seen.append(list(views))
        return selection.choose_key(views, need, now)

    got = ledger.open_session(keys=KEYS, pick=pick, need=need, session_id=sid, label=None, task_id=None,
                              threshold_ratio=0.75, now=now, lease_seconds=600)
    return seen[0], got


def test_a_commit_from_another_process_is_seen_by_the_next_allocation(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    ledger = Ledger(db)
    try:
        now = NOON
        _, first = _alloc(ledger, 1_000, now, "s1")
        views, second = _alloc(ledger, 1_000, now, "s2")  # reuses the first one's figures
        assert isinstance(first, Grant) and isinstance(second, Grant)
        assert {v.key_id: v.reserved for v in views}[first.key.key_id] == 1_000
        script = (
            "import sys; from datetime import UTC, datetime\n"
            "from butler_skill.store.db import Database\n"
            "db = Database(sys.argv[1])\n"
            "with db.write() as conn:\n"
            "    conn.execute('UPDATE key_day_counters SET reserved = reserved + 777 WHERE key_id = ? AND day = ?',\n"
            "                 (sys.argv[2], sys.argv[3]))\n"
            "    conn.execute('INSERT INTO key_cooldowns(key_id, until, reason, updated_at) VALUES (?,?,?,?)',\n"
            "                 ('k2', '2999-01-01T00:00:00.000000Z', 'rate_limit', '2026-01-01T00:00:00.000000Z'))\n")
        subprocess.run([sys.executable, "-c", script, str(tmp_path / "state.db"), second.key.key_id,
                        now.date().isoformat()], check=True)
        views, _ = _alloc(ledger, 10, now, "s3")
        by_id = {v.key_id: v for v in views}
        reserved = 1_000 * (1 + (first.key.key_id == second.key.key_id)) + 777
        assert by_id[second.key.key_id].reserved == reserved  # the other process's reserve is seen
        assert by_id["k2"].cooldown_until is not None  # and its cooldown
    finally:
        db.close()


def test_any_other_write_on_the_connection_ends_the_memo(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    ledger = Ledger(db)
    try:
        _, first = _alloc(ledger, 1_000, NOON, "s1")
        _, run = _alloc(ledger, 1_000, NOON, "s2")  # a run of allocations: the figures kept now carry a data version
        assert isinstance(first, Grant) and isinstance(run, Grant)
        with db.write() as conn:  # the same connection: PRAGMA data_version does not move for it
            conn.execute("UPDATE key_day_counters SET reserved = reserved + 5 WHERE key_id = ?", (first.key.key_id,))
        views, second = _alloc(ledger, 10, NOON, "s3")
        assert isinstance(second, Grant)
        held = 1_000 + 1_000 * (run.key.key_id == first.key.key_id) + 5
        assert {v.key_id: v.reserved for v in views}[first.key.key_id] == held  # read again: the +5 is seen
        assert db._local.memo is not None  # (kept by that allocation for the next one)
        with reuse(True):
            failed = db.write()
            try:
                with failed as conn:
                    conn.execute("UPDATE key_day_counters SET reserved = reserved + 1")
                    raise RuntimeError("rolled back")
            except RuntimeError:
                pass
        assert db._local.memo is None  # a write that rolled back ended it too (nothing it saw is kept)
    finally:
        db.close()


def _allocate_many(path: str, n: int, go: Any, out: Any) -> None:
    ledger = Ledger(Database(path))
    go.wait()
    granted = 0
    for i in range(n):  # a run of allocations: each after the first reuses its figures unless another process wrote
        now = NOON
        got = ledger.open_session(keys=KEYS[:2], pick=lambda views, now=now: selection.choose_key(views, 100, now),
                                  need=100, session_id=f"p{os.getpid()}-{i}", label=None, task_id=None,
                                  threshold_ratio=0.75, now=now, lease_seconds=600)
        granted += isinstance(got, Grant)
    out.put(granted)


def test_processes_allocating_together_fill_every_key_exactly(tmp_path: Path) -> None:
    # Room for 30 + 50 grants of 100 on two keys, 4 processes asking 20 times each. A figure reused after another
    # process reserved would send a choice to a key that no longer fits: the conditional reserve refuses it, and
    # one of them would be refused and fewer than 80 granted. Every grant that fits is made, and none past a limit.
    Database(tmp_path / "state.db").close()
    spawn = multiprocessing.get_context("spawn")
    go, out = spawn.Event(), spawn.Queue()
    workers = [spawn.Process(target=_allocate_many, args=(str(tmp_path / "state.db"), 20, go, out)) for _ in range(4)]
    for w in workers:
        w.start()
    go.set()
    granted = sum(out.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    db = Database(tmp_path / "state.db")
    try:
        reserved = {r["key_id"]: r["reserved"] for r in db._connection().execute(
            "SELECT key_id, reserved FROM key_day_counters")}
    finally:
        db.close()
    assert granted == 80
    assert reserved == {"k0": 3_000, "k1": 5_000}
