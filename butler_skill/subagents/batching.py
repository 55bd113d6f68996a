"""Group commit for the sub-agent runner: writes that become ready together share one transaction.

A hundred sub-tasks in flight finish in bursts (their answers arrive in the same turns of the event loop). Each
one's settlement (usage, attempt, release, status) used to be its own `BEGIN IMMEDIATE` ... `COMMIT`; here a
sub-task hands its write to `GroupCommit.write` and waits. When the writer is free, the first write starts a
writer task whose first step comes on the next turn of the loop (no timer, no added delay), so every write handed
over in this turn joins its transaction; while a transaction runs, new writes wait and all of them form the next
one as soon as it ends (whatever is ready when the writer is free).

Guarantees, each the same as one transaction per write:

* durable before done: a writer's future resolves only after its transaction committed (and `after` ran);
* isolated failures: each write runs inside its own SAVEPOINT, so one that raises (a settlement conflict, an
  implausible usage report) rolls back only its own statements and gets the exception; the others commit;
* all or nothing on the transaction itself: if BEGIN or COMMIT fails (a locked or broken database), every writer
  of the batch gets that exception and none of their statements stays;
* `prepare(conn)` runs first in every transaction (the ledger's rule: expire stale leases before any write);
* set-oriented writes: a write handed over with a `payload` can be written together with the others of its kind
  by `bulk(conn, payloads)` (the runner's settlements: a few statements for the whole group instead of a dozen
  each), which answers per write its result or the exception writing it alone would raise (that write then
  changed nothing). The whole bulk step runs in one SAVEPOINT: if it raises, it is undone and each of its writes
  runs on its own, in its own SAVEPOINT, as above (`fallbacks` counts these), so one bad write still cannot
  poison the others;
* a writer cancelled while it waits (its sub-task timed out, the run was cancelled) is written at once, alone,
  before the cancellation goes on (or, when its transaction is already under way, waits for it to end): a
  provider answer that was paid for is never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class _Database(Protocol):
    def write(self) -> Any: ...


@dataclass(eq=False, slots=True)
class _Write(Generic[T]):
    work: Callable[[Any], T]
    after: Callable[[T], None] | None
    payload: Any = None
    future: asyncio.Future[T] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    written: bool = False  # its transaction has ended (or will never run), whatever came of it
    # Made only when the waiter was cancelled while its transaction ran: resolved when that transaction has ended.
    ended: asyncio.Future[None] | None = None


class GroupCommit:
    """Coalesce the writes handed over while the writer is busy (or in the same turn of the event loop) into one
    transaction of `db`.

    `thread=True` runs each transaction on a writer thread of its own (SQLite: its C code releases the GIL, so
    the statements run on another core while the loop carries on with the network); the loop then only hands
    writes over and wakes their writers. `thread=False` runs them inline, in the loop's thread. Call `aclose()`
    when done (it waits for the last transaction and closes the writer thread's connection)."""

    def __init__(self, db: _Database, prepare: Callable[[Any], object] | None = None, *, thread: bool = False,
                 close_connection: Callable[[], None] | None = None,
                 bulk: Callable[[Any, list[Any]], list[tuple[bool, Any]]] | None = None) -> None:
        self._db = db
        self._prepare = prepare
        self._bulk = bulk
        self.fallbacks = 0  # bulk steps that raised and were written one write at a time (read by tests)
        self._pending: list[_Write[Any]] = []
        self._writing: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="butler-writer") if thread else None
        self._close_connection = close_connection
        self.batches: list[int] = []  # the size of each transaction written (read by tests and benchmarks)

    async def write(self, work: Callable[[Any], T], after: Callable[[T], None] | None = None, *,
                    payload: Any = None) -> T:
        """Run `work(conn)` in the next group transaction; its result once committed. `after(result)` runs in
        the loop's thread right after the commit, before the writer resumes (for state that must agree with
        the ledger). With a `payload` (and a `bulk` writer), the write goes with the others that have one in
        `bulk(conn, payloads)`; `work` is what writes it alone (if the bulk step fails), with the same result."""
        item: _Write[T] = _Write(work, after, payload)
        self._pending.append(item)
        if self._writing is None or self._writing.done():
            self._schedule()
        # Awaited as it is, not through asyncio.shield (an extra future and two callbacks per write): a cancelled
        # waiter cancels `item.future`, and the writer then only runs `after` and leaves the future alone.
        try:
            return await item.future
        except asyncio.CancelledError:
            if item in self._pending:  # not written yet: write it now, alone, then let the cancellation go on
                self._pending.remove(item)
                self._finish(self._transaction([item]))
            elif not item.written:
                # Being written right now: let that transaction end (a paid answer is never lost).
                ended = item.ended = asyncio.get_running_loop().create_future()
                await asyncio.wait([ended])
            if item.future.done() and not item.future.cancelled():
                item.future.exception()  # seen: the cancellation is what the caller hears about
            raise

    def _schedule(self) -> None:
        """Start a writer task (none runs): its first step comes on the next turn of the loop, after every write
        handed over in this turn; a running one picks up what is pending when its transaction ends."""
        self._writing = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    if self._executor is None:
                        outcome = self._transaction(batch)
                    else:
                        outcome = await loop.run_in_executor(self._executor, self._transaction, batch)
                except Exception as exc:  # the writer thread is gone (closed): nothing of the batch was written
                    outcome = _Outcome(batch, None, exc)
                except BaseException:  # this task is cancelled (the loop shuts down): its writers must not wait
                    for item in batch:
                        if not item.future.done():
                            item.future.cancel()
                        _ended(item)
                    raise
                self._finish(outcome)
        finally:
            self._writing = None  # (set before the task ends: a write handed over from now on starts a new one)

    def _transaction(self, batch: list[_Write[Any]]) -> _Outcome:
        """One transaction for the batch (in the writer thread when there is one): each write in a SAVEPOINT."""
        results: list[tuple[_Write[Any], bool, Any]] = []
        try:
            with self._db.write() as conn:
                if self._prepare is not None:
                    self._prepare(conn)
                i = 0
                while i < len(batch):
                    if self._bulk is None or batch[i].payload is None:
                        results.append(_write_one(conn, batch[i]))
                        i += 1
                        continue
                    j = i + 1  # a run of writes with a payload, in the order they were handed over
                    while j < len(batch) and batch[j].payload is not None:
                        j += 1
                    results.extend(self._write_bulk(conn, batch[i:j]))
                    i = j
        except Exception as exc:  # the transaction itself failed: nothing of the batch was written
            return _Outcome(batch, None, exc)
        return _Outcome(batch, results, None)

    def _write_bulk(self, conn: Any, run: list[_Write[Any]]) -> list[tuple[_Write[Any], bool, Any]]:
        """`bulk` for a run of writes in one SAVEPOINT; if it raises, undo it and write each alone."""
        assert self._bulk is not None
        conn.execute("SAVEPOINT group_bulk")
        try:
            answers = self._bulk(conn, [item.payload for item in run])
            if len(answers) != len(run):
                raise RuntimeError(f"bulk writer answered {len(answers)} of {len(run)} writes")
        except Exception:  # undone; the writes go one by one, each isolated from the others' failures
            conn.execute("ROLLBACK TO SAVEPOINT group_bulk")
            conn.execute("RELEASE SAVEPOINT group_bulk")
            self.fallbacks += 1
            return [_write_one(conn, item) for item in run]
        conn.execute("RELEASE SAVEPOINT group_bulk")
        return [(item, ok, value) for item, (ok, value) in zip(run, answers, strict=True)]

    def _finish(self, outcome: _Outcome) -> None:
        """In the loop's thread: run the `after`s and wake the writers."""
        if outcome.results is None:
            for item in outcome.batch:
                if not item.future.done():
                    item.future.set_exception(outcome.error or RuntimeError("group commit failed"))
                _ended(item)
            return
        self.batches.append(len(outcome.batch))
        for item, ok, value in outcome.results:
            if ok and item.after is not None:
                try:
                    item.after(value)
                except Exception as exc:  # committed, but the caller must hear that its bookkeeping failed
                    ok, value = False, exc
            _ended(item)
            if item.future.done():  # (its waiter was cancelled)
                continue
            if ok:
                item.future.set_result(value)
            else:
                item.future.set_exception(value)

    async def aclose(self) -> None:
        """Wait for the transaction under way, then let the writer thread go: it closes its connection as it leaves,
        unawaited (every write is committed by then; waiting for the thread to close and stop cost the end of a run
        a few ms, more on a busy machine)."""
        while self._writing is not None and not self._writing.done():
            await asyncio.wait([self._writing])
        if self._pending:  # handed over after the last transaction began and not picked up: write them now
            self._finish(self._transaction(self._pending))
            self._pending = []
        if self._executor is not None:
            executor, self._executor = self._executor, None
            if self._close_connection is not None:
                executor.submit(self._close_connection)
            executor.shutdown(wait=False)


def _ended(item: _Write[Any]) -> None:
    """The write's transaction has ended: wake its waiter if, cancelled, it waits for that."""
    item.written = True
    if item.ended is not None and not item.ended.done():
        item.ended.set_result(None)


def _write_one(conn: Any, item: _Write[Any]) -> tuple[_Write[Any], bool, Any]:
    """One write in its own SAVEPOINT: if it raises, only its own statements are undone."""
    conn.execute("SAVEPOINT group_write")
    try:
        value = item.work(conn)
    except Exception as exc:  # this write only: undo its statements, keep the others
        conn.execute("ROLLBACK TO SAVEPOINT group_write")
        conn.execute("RELEASE SAVEPOINT group_write")
        return item, False, exc
    conn.execute("RELEASE SAVEPOINT group_write")
    return item, True, value


@dataclass
class _Outcome:
    batch: list[_Write[Any]]
    results: list[tuple[_Write[Any], bool, Any]] | None
    error: Exception | None


class BatchedReads(Generic[K, V]):
    """Reads asked for in one turn of the event loop go to the database together: `load(keys)` answers a dict;
    a key it leaves out gets `missing(key)` (which should raise the caller's error)."""

    def __init__(self, load: Callable[[list[K]], dict[K, V]], missing: Callable[[K], V]) -> None:
        self._load = load
        self._missing = missing
        self._pending: list[tuple[K, asyncio.Future[V]]] = []
        self._scheduled = False

    async def get(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending.append((key, future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = [(k, f) for k, f in self._pending if not f.done()], []
        if not batch:
            return
        try:
            found = self._load([k for k, _ in batch])
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for key, future in batch:
            if key in found:
                future.set_result(found[key])
                continue
            try:
                future.set_result(self._missing(key))
            except Exception as exc:
                future.set_exception(exc)
