"""What the dashboard shows, assembled from the tools' own handlers and the read model in store/reports.py.

The figures for today come from the same functions `monitor_usage` and `get_available_keys` use, so the page
and the tools can never disagree. Nothing here carries key material: keys are named by id, and the treasury
section is the `treasury_status` output (which already holds none).
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from butler_skill.core.days import next_utc_midnight
from butler_skill.core.decomposition import stages as stage_layers
from butler_skill.core.reporting import ProviderUsage
from butler_skill.handlers.agents import task_aggregate
from butler_skill.handlers.tokens import MonitorUsageInput, key_states, monitor_usage
from butler_skill.handlers.treasury import TreasuryStatusOutput, build_status, open_service
from butler_skill.host.context import Context
from butler_skill.models import Alert, Event, SessionInfo
from butler_skill.store.reports import Reports, SpendRow, history_days
from butler_skill.store.tasks import TaskStore
from butler_skill.subagents.planning import spec_of

TASKS_SHOWN = 5
APPROVE_COMMAND = "butler treasury approve {intent_id}"


class KeyToday(BaseModel):
    key_id: str
    provider: str
    scope: str
    model: str
    capacity: int
    used: int
    reserved: int
    remaining: int
    cost: float
    threshold: int  # tokens at the rotation threshold (75% by default) of the day's capacity
    resting: Literal["cooldown", "parked"] | None = None  # parked: rests until the next UTC day
    resting_until: datetime | None = None
    resting_reason: str | None = None


class SubTaskNode(BaseModel):
    sub_task_id: str
    title: str
    stage: int
    depends_on: list[str]
    status: str
    attempts: int
    round: int
    share: int
    tokens: int
    key_id: str


class TaskView(BaseModel):
    task_id: str
    name: str
    budget: int
    mode: str
    created_at: datetime
    stages: int
    subtasks: list[SubTaskNode]
    total_sub_tasks: int
    successful: int
    failed: int
    pending: int
    total_tokens_used: int
    success_rate: float


class PendingIntent(BaseModel):
    intent_id: str
    provider: str
    amount: str
    reason: str
    created_at: str
    approve_command: str


class Snapshot(BaseModel):
    version: str
    day: str
    generated_at: datetime
    next_reset: datetime
    threshold_ratio: float
    total: ProviderUsage
    providers: dict[str, ProviderUsage]
    keys: list[KeyToday]
    sessions: list[SessionInfo]
    open_sessions: int
    alerts: list[Alert]
    rotations: list[Event]
    tasks: list[TaskView]
    spend_by_label: list[SpendRow]
    spend_by_task: list[SpendRow]
    treasury: TreasuryStatusOutput | None
    treasury_error: str | None = None
    awaiting_approval: list[PendingIntent]


class Series(BaseModel):
    provider: str
    tokens: list[int]
    cost: list[float]


class History(BaseModel):
    days: list[str]
    providers: dict[str, Series]
    keys: dict[str, Series]


def version(ctx: Context) -> str:
    return Reports(ctx.db).version(ctx.now())


def snapshot(ctx: Context) -> Snapshot:
    now = ctx.now()
    cfg = ctx.config
    reports = Reports(ctx.db)
    stamp = reports.version(now)
    usage = monitor_usage(ctx, MonitorUsageInput())
    resting = {c.key_id: c for c in reports.cooldowns(now)}
    midnight = next_utc_midnight(now)
    keys: list[KeyToday] = []
    for k in key_states(ctx, now):
        rest = resting.get(k.key_id)
        keys.append(KeyToday(
            key_id=k.key_id, provider=k.provider, scope=k.scope, model=k.model, capacity=k.tokens_per_day,
            used=k.used, reserved=k.reserved, remaining=k.remaining, cost=k.cost_today,
            threshold=math.floor(k.tokens_per_day * cfg.rotation_threshold),
            resting=None if rest is None else ("parked" if rest.until >= midnight else "cooldown"),
            resting_until=rest.until if rest else None, resting_reason=rest.reason if rest else None,
        ))
    treasury: TreasuryStatusOutput | None = None
    treasury_error: str | None = None
    try:
        treasury = _treasury_status(ctx, refresh=False)
    except Exception as exc:  # a broken policy file must not take the whole page down
        treasury_error = f"treasury status unavailable ({type(exc).__name__}); run `butler treasury status`"
    return Snapshot(
        version=stamp, day=usage.day, generated_at=now, next_reset=midnight, threshold_ratio=cfg.rotation_threshold,
        total=usage.total, providers=usage.keys_by_provider, keys=keys,
        sessions=reports.open_sessions(), open_sessions=reports.open_session_count(),
        alerts=reports.pending_alerts(now), rotations=ctx.ledger.events("rotation", 20),
        tasks=[_task_view(ctx, t.task_id) for t in reports.recent_tasks(TASKS_SHOWN)],
        spend_by_label=reports.spend_by_label(now), spend_by_task=reports.spend_by_task(now),
        treasury=treasury, treasury_error=treasury_error,
        awaiting_approval=[] if treasury is None else [
            PendingIntent(intent_id=i.id, provider=i.provider, amount=i.amount, reason=i.reason,
                          created_at=i.created_at, approve_command=APPROVE_COMMAND.format(intent_id=i.id))
            for i in treasury.recent if i.id in set(treasury.awaiting_approval)
        ],
    )


def live_treasury(ctx: Context) -> TreasuryStatusOutput:
    """Balances and credit asked from Circle and the providers (the page's refresh button)."""
    return _treasury_status(ctx, refresh=True)


@functools.cache
def _http() -> httpx.Client:
    """One client for every treasury read: building one loads the CA bundle (about 0.2 s on this machine),
    which `treasury_status` pays on each call and a page refreshed on every ledger change must not."""
    return httpx.Client(timeout=httpx.Timeout(20.0, connect=5.0), follow_redirects=False)


def _treasury_status(ctx: Context, *, refresh: bool) -> TreasuryStatusOutput:
    """`treasury_status` (same builder), on the dashboard's shared HTTP client."""
    with open_service(ctx, http=_http()) as service:
        return build_status(service, recent=10, refresh=refresh)


def _task_view(ctx: Context, task_id: str) -> TaskView:
    store = TaskStore(ctx.db)
    head = store.task(task_id)
    rows = store.subtasks(task_id)
    stage_of = {sid: n for n, layer in enumerate(stage_layers([spec_of(r) for r in rows])) for sid in layer}
    agg = task_aggregate(task_id, rows)
    return TaskView(
        task_id=task_id, name=head.name, budget=head.budget, mode=head.mode, created_at=head.created_at,
        stages=max(stage_of.values(), default=-1) + 1,
        subtasks=[SubTaskNode(sub_task_id=r.id, title=r.title, stage=stage_of.get(r.id, 0),
                              depends_on=list(r.depends_on), status=r.status, attempts=r.attempts, round=r.round,
                              share=r.share, tokens=r.tokens_used, key_id=r.key_id) for r in rows],
        total_sub_tasks=agg.total_sub_tasks, successful=agg.successful, failed=agg.failed, pending=agg.pending,
        total_tokens_used=agg.total_tokens_used, success_rate=agg.success_rate,
    )


def history(ctx: Context) -> History:
    now = ctx.now()
    days = history_days(now)
    index = {d: n for n, d in enumerate(days)}
    provider_of = {k.id: k.provider for k in ctx.config.resolved()}
    providers: dict[str, Series] = {}
    keys: dict[str, Series] = {}
    for row in Reports(ctx.db).history(now):
        provider = provider_of.get(row.key_id, "unknown")
        for table, name in ((providers, provider), (keys, row.key_id)):
            series = table.get(name) or Series(provider=provider, tokens=[0] * len(days), cost=[0.0] * len(days))
            series.tokens[index[row.day]] += row.used
            series.cost[index[row.day]] = round(series.cost[index[row.day]] + row.cost, 6)
            table[name] = series
    return History(days=days, providers=dict(sorted(providers.items())), keys=dict(sorted(keys.items())))


def history_csv_rows(ctx: Context) -> list[list[Any]]:
    """day, provider, key_id, tokens used, tokens reserved, cost: one row per key and day with figures."""
    now = ctx.now()
    provider_of = {k.id: k.provider for k in ctx.config.resolved()}
    rows: list[list[Any]] = [["day", "provider", "key_id", "tokens_used", "tokens_reserved", "cost_usd"]]
    for r in Reports(ctx.db).history(now):
        rows.append([r.day, provider_of.get(r.key_id, "unknown"), r.key_id, r.used, r.reserved, f"{r.cost:.6f}"])
    return rows


def spend_csv_rows(ctx: Context) -> list[list[Any]]:
    now = ctx.now()
    reports = Reports(ctx.db)
    rows: list[list[Any]] = [["group", "name", "task_id", "sessions", "tokens_allocated", "tokens_used", "cost_usd"]]
    for group, items in (("label", reports.spend_by_label(now)), ("task", reports.spend_by_task(now))):
        rows.extend([group, i.name, i.task_id or "", i.sessions, i.allocated, i.used, f"{i.cost:.6f}"] for i in items)
    return rows


