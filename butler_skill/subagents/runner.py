"""Run a planned task's sub-tasks against provider APIs: in dependency order, at most `maxConcurrent`
at once, each bounded by what is left of its share, with retries, rotation and a timeout.

Every decision (retry, rotate, give up, how long to wait) is `core.inflight.decide`; this module only
does what it says: calls the provider, settles usage in the ledger, sleeps, and records attempts. A
sub-task's session is released whatever happens (success, failure, timeout, cancellation).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from butler_skill import sessions
from butler_skill.adapters.providers.base import CompletionResult, ProviderFailure, estimate_prompt_tokens
from butler_skill.core import inflight
from butler_skill.core.aggregation import ResultValues
from butler_skill.core.decomposition import decompose_plain
from butler_skill.core.prompts import subtask_prompt
from butler_skill.errors import UnknownSession
from butler_skill.models import ResolvedKey
from butler_skill.store.db import redact_texts
from butler_skill.store.ledger import expire_leases_in
from butler_skill.store.tasks import (
    AttemptRecord,
    Finish,
    SessionLeg,
    SubTaskRow,
    TaskRow,
    TaskStore,
    end_subtasks_in,
    finish_in,
)
from butler_skill.subagents.batching import BatchedReads, GroupCommit
from butler_skill.subagents.clients import ClientFactory
from butler_skill.subagents.planning import plan
from butler_skill.subagents.slots import Slots

if TYPE_CHECKING:
    from sqlite3 import Connection

    from butler_skill.host.context import Context

ProgressStatus = Literal["waiting", "running", "retrying", "rotated", "success", "failed", "timeout", "cancelled",
                         "interrupted"]


class SpawnOptions(BaseModel):
    """The original's options and defaults, plus what a careful runner needs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    maxConcurrent: int = Field(default=3, ge=1, le=1_000)
    retryOnFailure: bool = True
    maxRetries: int = Field(default=2, ge=0, le=20)
    timeoutMs: int = Field(default=300_000, ge=100, le=86_400_000)
    stream: bool = Field(default=False, description="Stream answers (usage taken from the final chunk).")
    backoffBaseMs: int = Field(default=1_000, ge=1, le=600_000)
    backoffMaxMs: int = Field(default=30_000, ge=1, le=3_600_000)
    preferredProvider: str | None = None

    def policy(self) -> inflight.RetryPolicy:
        attempts = 1 + (self.maxRetries if self.retryOnFailure else 0)
        return inflight.RetryPolicy(base_delay_s=self.backoffBaseMs / 1000,
                                    max_delay_s=max(self.backoffMaxMs, self.backoffBaseMs) / 1000,
                                    max_attempts=attempts, bad_response_attempts=min(attempts, 2))


class Progress(BaseModel):
    task_id: str
    subtask_id: str
    status: ProgressStatus
    key_id: str | None = None
    attempt: int = 0
    tokens: int = 0
    message: str = ""


ProgressSink = Callable[[Progress], None]
log = logging.getLogger("butler.runner")
T = TypeVar("T")


class _Run:
    def __init__(self, ctx: Context, task_id: str, options: SpawnOptions, factory: ClientFactory,
                 progress: ProgressSink | None, jitter: Callable[[], float],
                 planned: tuple[TaskRow, list[SubTaskRow]] | None = None) -> None:
        self.ctx = ctx
        self.store = TaskStore(ctx.db)
        self.planned = planned
        self.task = planned[0] if planned is not None else self.store.task(task_id)
        self.options = options
        self.factory = factory
        self.progress = progress
        self.jitter = jitter
        self.keys = {k.id: k for k in ctx.config.resolved()}
        self.slots = Slots(options.maxConcurrent)  # (asyncio.Semaphore's release scans its queue: slots.py)
        self.outputs: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.writes = group_commit(ctx)
        # What an attempt needs of its session (key, share, what it still holds): plain rows, no SessionInfo.
        self.sessions: BatchedReads[str, SessionLeg] = BatchedReads(self.store.session_legs, _no_session)
        # The first attempt of a just-planned sub-task that waits on nothing takes its leg from the plan: it is what
        # reading it at the run's start (as that sub-task did) answers (SessionLeg.planned; a property holds them
        # equal). Sub-tasks that wait on others, and every later attempt, read theirs when they start.
        self.first_legs: dict[str, SessionLeg] = {}
        # Each sub-task's answer (`TaskStore.results`' values) when the run knows exactly what the ledger holds of it.
        self.answers: dict[str, ResultValues] = {}
        self.rows: list[SubTaskRow] = []
        self.policy = options.policy()  # one RetryPolicy for the run (a pydantic model: not one per sub-task)

    def emit(self, st: SubTaskRow, status: ProgressStatus, **kw: object) -> None:
        if self.progress is not None:
            self.progress(Progress(task_id=self.task.id, subtask_id=st.id, status=status,
                                   **kw))  # type: ignore[arg-type]

    def finish(self, st: SubTaskRow, status: str, *, output: str | None = None, error: str | None = None,
               attempt: AttemptRecord | None = None) -> None:
        self.store.finish(task_id=self.task.id, st_id=st.id, session_id=st.session_id, status=status,
                          now=self.ctx.now(), output=output, error=error, attempt=attempt)
        self.status[st.id] = status
        if output is not None:
            self.outputs[st.id] = output

    async def run(self) -> None:
        if self.planned is not None:  # just written by the plan: the rows `subtasks` would read back
            rows = self.planned[1]
            self.first_legs = {st.id: SessionLeg.planned(st) for st in rows if not st.depends_on}
        else:
            rows = self.store.subtasks(self.task.id)
        self.rows = rows
        for st in rows:
            self.done[st.id] = asyncio.Event()
            if st.status == "success":  # a retry round keeps what already succeeded
                self.status[st.id] = "success"
                self.outputs[st.id] = st.output or ""
                self.done[st.id].set()
        try:
            await asyncio.gather(*(self.one(st) for st in rows if st.status == "pending"))
        finally:
            await self.writes.aclose()

    def results(self) -> list[ResultValues] | None:
        """The task's results as `TaskStore.results` reads them after the run, without reading them: known when the
        run was just planned and every sub-task ended with its first call settled (a property holds them equal
        to the read); None otherwise (then read them)."""
        if self.planned is None or len(self.answers) != len(self.rows):
            return None
        return [self.answers[st.id] for st in self.rows]

    async def one(self, st: SubTaskRow) -> None:
        try:
            for dep in st.depends_on:
                await self.done[dep].wait()
            blocked = [d for d in st.depends_on if self.status.get(d) != "success"]
            if blocked:
                self.finish(st, "cancelled", error=f"not run: {', '.join(blocked)} did not succeed")
                self.emit(st, "cancelled", message=f"waits on {', '.join(blocked)}")
                return
            try:
                async with asyncio.timeout(self.options.timeoutMs / 1000):
                    await self.attempts(st)
            except TimeoutError:
                if st.id not in self.status:  # (a result written as the time ran out stands)
                    self.finish(st, "timeout", error=f"no result within {self.options.timeoutMs} ms")
                    self.emit(st, "timeout")
        except asyncio.CancelledError:
            if st.id not in self.status:
                self.finish(st, "cancelled", error="the run was cancelled")
            raise
        finally:
            if st.id not in self.status:  # an unexpected error: never leave the share reserved
                self.finish(st, "failed", error="internal error in the runner")
            self.done[st.id].set()

    async def attempts(self, st: SubTaskRow) -> None:
        attempt, rate_limits = 0, 0
        policy = self.policy
        while True:
            attempt += 1
            session = self.first_legs.pop(st.id, None) if attempt == 1 else None
            if session is None:
                session = await self.sessions.get(st.session_id)
            key = self.keys[session.key_id]
            prompt = subtask_prompt(task_name=self.task.name, task_description=self.task.description,
                                    subtask_id=st.id, subtask_text=st.text, depends_on=st.depends_on,
                                    outputs=self.outputs, share=session.allocated)
            messages = [{"role": "user", "content": prompt}]
            room = session.held - estimate_prompt_tokens(messages)
            if room < 1:
                self.finish(st, "failed", error=f"share exhausted: {session.held} tokens left, prompt needs more")
                self.emit(st, "failed", key_id=key.id, attempt=attempt, message="share exhausted")
                return
            started = self.ctx.now()
            self.emit(st, "running", key_id=key.id, attempt=attempt)
            try:
                async with self.slots:
                    result = await self.factory.client_for(key).complete(
                        key.model, messages, max_tokens=room, timeout_s=self.options.timeoutMs / 1000,
                        stream=self.options.stream, bounded=True,  # (`one` bounds the sub-task by the same time)
                    )
            except ProviderFailure as failure:
                ended = self.ctx.now()
                # The failure's text is already redacted (ProviderFailure), and the log's filter masks again.
                log.info("sub-task %s/%s attempt %d on %s: %s", self.task.id, st.id, attempt, key.id, failure.message)
                self.store.record_attempt(task_id=self.task.id, st_id=st.id, key_id=key.id, outcome=failure.kind,
                                          request_id=failure.request_id, tokens=0, error=failure.message,
                                          started=started, ended=ended)
                rate_limits = rate_limits + 1 if failure.kind == "rate_limit" else 0
                step = sessions.recover(self.ctx, st.session_id, failure=failure.kind,
                                        retry_after_s=failure.retry_after_s, attempt=attempt,
                                        consecutive_rate_limits=rate_limits, jitter=self.jitter(), policy=policy)
                if not await self.act(st, step, attempt, failure):
                    return
                continue
            await self.settle(st, key, result, started, attempt)
            return

    async def act(self, st: SubTaskRow, step: sessions.Recovery, attempt: int, failure: ProviderFailure) -> bool:
        """Carry out what `sessions.recover` decided; False when the sub-task is over."""
        if step.give_up is not None:
            self.finish(st, "failed", error=f"{step.give_up}: {failure.message}")
            self.emit(st, "failed", attempt=attempt, message=step.give_up)
            return False
        if step.rotation is not None and step.rotation.rotated:
            self.emit(st, "rotated", key_id=step.rotation.to_key_id, attempt=attempt,
                      message=f"{step.rotation.from_key_id} -> {step.rotation.to_key_id} ({step.rotation.reason})")
        elif step.rotation is not None:
            self.emit(st, "retrying", attempt=attempt, message=f"no other key; waiting {step.wait_s:.0f}s")
        else:
            self.emit(st, "retrying", attempt=attempt, message=f"{failure.kind}, retry in {step.wait_s:.1f}s")
        if step.wait_s:
            await asyncio.sleep(step.wait_s)
        return True

    async def settle(self, st: SubTaskRow, key: ResolvedKey, result: CompletionResult, started: datetime,
                     attempt: int) -> None:
        """Settle the usage and end the sub-task in one write, grouped with the others finishing now; reported
        (progress, status) only once it is committed."""
        u = result.usage.model_copy(update={"estimated": True}) if result.interrupted else result.usage
        now = self.ctx.now()
        # One settlement per call: the attempt number keeps calls apart even when a provider repeats its response
        # ids (sessions.commit scopes every id by its session, so other sub-tasks never collide either).
        request_id = f"{attempt}/" + sessions.provider_request_id(key.id, result.request_id, "no-id")
        tokens = u.counted_tokens
        if result.interrupted:
            # A cut answer is not a result: settled pessimistically, kept as output, reported failed
            # ("interrupted: ...") so aggregation counts it and retry_failed_tasks can run it again.
            status, error = "failed", f"interrupted: {result.interruption or 'stream ended early'}; usage estimated"
            record = AttemptRecord(key_id=key.id, outcome="interrupted", request_id=request_id, tokens=tokens,
                                   error=result.interruption, started=started, ended=now)
        else:
            note = "usage lost after the finish: settled at the output limit (estimated)" if result.usage_lost else None
            status, error = "success", None
            record = AttemptRecord(key_id=key.id, outcome="success", request_id=request_id, tokens=tokens, error=note,
                                   started=started, ended=now)

        # Written with the others of its group transaction (settle_group), or alone if that fails (settle_one).
        payload = Settlement(sessions.Report(st.session_id, request_id, u, key, now, close=True),
                             Finish(self.task.id, st.id, status, now, result.text, error, record))

        def written(done: Settled) -> None:
            self.status[st.id] = status
            self.outputs[st.id] = result.text
            if attempt == 1 and self.planned is not None:
                # What the ledger now holds of it, as `TaskStore.results` would read it back: a just-planned
                # sub-task's first call has one session (its usage is the sub-task's) and attempt number 1.
                self.answers[st.id] = ResultValues(st.id, status, done.counted.used, done.error, done.output, key.id,
                                                   1)

        settled = await self.writes.write(partial(settle_one, self.ctx, payload=payload), written, payload=payload)
        used = settled.counted.used
        if result.interrupted:
            self.emit(st, "interrupted", key_id=key.id, attempt=attempt, tokens=used, message=error or "")
        else:
            self.emit(st, "success", key_id=key.id, attempt=attempt, tokens=used, message=record.error or "")


def group_commit(ctx: Context) -> GroupCommit:
    """A run's writer. Sub-tasks that finish in the same turn of the event loop share one transaction. On SQLite
    the transactions run on a writer thread (SQLite's C code releases the GIL: the statements run on another core
    while the loop carries on with the network); PostgreSQL's run in the loop."""
    sqlite = ctx.db.dialect == "sqlite"
    return GroupCommit(ctx.db, prepare=lambda conn: expire_leases_in(conn, ctx.now()), thread=sqlite,
                       close_connection=ctx.db.close if sqlite else None, bulk=partial(settle_group, ctx))


def _no_session(session_id: str) -> SessionLeg:
    raise UnknownSession(f"no session {session_id!r}", session_id=session_id)


@dataclass(slots=True)
class Settled:
    """A settlement written: what its report counted, and the sub-task's output and error as the ledger holds
    them (through the redaction hook)."""

    counted: sessions.Counted
    output: str | None
    error: str | None


@dataclass(slots=True)
class Settlement:
    """A sub-task's last call settled and its end: the usage report (its session released after it) and the
    sub-task's status, output and attempt."""

    report: sessions.Report
    finish: Finish


def settle_one(ctx: Context, conn: Connection, payload: Settlement) -> Settled:
    """One settlement in the caller's transaction, statement by statement (`sessions.commit_in`, `finish_in`):
    what a group falls back to when its set-oriented write fails."""
    r, f = payload.report, payload.finish
    committed = sessions.commit_in(ctx, conn, r.session_id, r.request_id, r.usage, key=r.key, now=r.now)
    finish_in(conn, task_id=f.task_id, st_id=f.st_id, session_id=r.session_id, status=f.status, now=f.now,
              output=f.output, error=f.error, attempt=f.attempt)
    clean = redact_texts(conn, [f.output, f.error])  # what finish_in's statement stored (the same hook)
    return Settled(sessions.Counted(committed.outcome.duplicate, committed.outcome.session.used, committed.cost,
                                    committed.alert), clean[f.output], clean[f.error])


def settle_group(ctx: Context, conn: Connection, payloads: list[Settlement]) -> list[tuple[bool, Any]]:
    """The settlements of one group transaction, set-oriented, leaving the ledger as `settle_one` for each in
    turn would: every report's usage and its session's release (`sessions.commit_group_in`), then the sub-tasks'
    attempts and statuses (`end_subtasks_in`) of those whose usage settled; per settlement (True, its `Settled`)
    or (False, the exception that left it unwritten)."""
    counted = sessions.commit_group_in(ctx, conn, [p.report for p in payloads])
    clean = end_subtasks_in(conn, [p.finish for p, c in zip(payloads, counted, strict=True)
                                   if not isinstance(c, Exception)])
    return [(False, c) if isinstance(c, Exception) else
            (True, Settled(c, clean[p.finish.output], clean[p.finish.error]))
            for p, c in zip(payloads, counted, strict=True)]


def run_in_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a sub-agent run to completion in a fresh event loop: uvloop's when it is installed (a dependency except
    on Windows; about a tenth less CPU for 1,000 sub-tasks at 100 in flight), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def plan_and_run(ctx: Context, *, name: str, description: str, budget: int, options: SpawnOptions,
                       factory: ClientFactory, progress: ProgressSink | None = None,
                       jitter: Callable[[], float] = random.random) -> tuple[str, list[ResultValues] | None]:
    """spawn_agent's plan and run in one event loop: the task's id, and its results when the run knows them exactly
    (`_Run.results`: None means read them). The plan is `planning.plan` as `plan_task` makes it (every share
    reserved in one transaction, or nothing); before it is written, the loop starts opening the connections the
    first calls will need (`ClientFactory.prepare`: as many as sub-tasks may run at once, to the origins of the keys
    the plan may choose) and lets each connect leave, so the handshakes go on while the plan is written (the
    kernel's and the provider's work: about 30 ms of a first wave of 100 on loopback). Its rows go to the run as
    written. (Written on the writer thread instead, the plan took longer than the connections it overlapped: its
    SQLite steps hand the GIL back and forth with the loop's thread.)"""
    specs = decompose_plain(description, name)
    keys = ctx.config.resolved()
    preferred = options.preferredProvider
    factory.prepare([k for k in keys if k.provider == preferred] or keys, min(options.maxConcurrent, len(specs)))
    for _ in range(2):  # each connect's first step: its socket's connect is under way (an address needs no lookup)
        await asyncio.sleep(0)
    task, rows = plan(ctx, name=name, description=description, budget=budget, mode="spawn",
                      options=options.model_dump(exclude_none=True), preferred_provider=preferred, specs=specs)
    run = _Run(ctx, task.id, options, factory, progress, jitter, (task, rows))
    await run.run()
    return task.id, run.results()


async def run_task(ctx: Context, task_id: str, options: SpawnOptions, factory: ClientFactory, *,
                   progress: ProgressSink | None = None, jitter: Callable[[], float] = random.random) -> None:
    """Run a task's pending sub-tasks, read from the ledger (retry_failed_tasks; spawn_agent's run takes its plan's
    rows as written: `plan_and_run`)."""
    await _Run(ctx, task_id, options, factory, progress, jitter).run()
