"""The read tools' one implementation, in plain values: get_status, get_available_keys, monitor_usage.

Free of pydantic, so a one-shot `butler call get_status` imports neither pydantic nor the models of other
tools (host/quick.py calls these directly and checks the result against the generated output schema). The
pydantic handlers in handlers/tokens.py call the same functions and validate the result into their output
models, so the two fronts cannot drift. Each function takes the tool's input as a dict with its defaults
filled and returns the tool's output as JSON-ready dicts, fields in the models' order.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from butler_skill.core.days import utc_day
from butler_skill.core.money import usd
from butler_skill.core.tally import key_overrun, provider_figures, usable
from butler_skill.store import reads
from butler_skill.store.reads import KeyDay, json_time

if TYPE_CHECKING:
    from butler_skill.host.context import Context

_NO_FIGURES = {"keys": 0, "total_capacity": 0, "used_today": 0, "reserved": 0, "remaining": 0, "cost_today": 0.0,
               "overrun": 0}


def _today(ctx: Context, now: datetime) -> tuple[list[KeyDay], dict[str, Decimal]]:
    with ctx.db.read() as conn:
        return reads.key_days(conn, ctx.keybook.keys, now), reads.costs_today(conn, now)


def key_state(day: KeyDay, cost: Decimal, now: datetime) -> dict[str, Any]:
    """models.KeyState in JSON."""
    return {"key_id": day.key_id, "provider": day.provider, "scope": day.scope, "model": day.model,
            "tokens_per_day": day.tokens_per_day, "used": day.used, "reserved": day.reserved,
            "remaining": day.remaining, "cost_today": usd(cost),
            "cooldown_until": json_time(day.cooldown_until) if day.cooldown_until and day.cooling(now) else None,
            "cooldown_reason": None}


def key_states(ctx: Context, now: datetime) -> list[dict[str, Any]]:
    """Every enabled key's standing today."""
    days, costs = _today(ctx, now)
    return [key_state(d, costs.get(d.key_id, Decimal(0)), now) for d in days if d.enabled]


def get_available_keys(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    floor, provider = max(args["min_tokens"], 1), args["provider"]
    keys = [s for s in key_states(ctx, now) if s["remaining"] >= floor and s["cooldown_until"] is None
            and (provider is None or s["provider"] == provider)]
    return {"day": utc_day(now), "keys": keys}


def monitor_usage(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    days, costs = _today(ctx, now)
    total = provider_figures(days, costs, provider_of=lambda d: "all").get("all") or dict(_NO_FIGURES)
    return {"day": utc_day(now), "keys_by_provider": provider_figures(days, costs), "total": total}


def get_status(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    now = ctx.now()
    limit = args["history_limit"]
    with ctx.db.read() as conn:  # one snapshot for every figure
        days = reads.key_days(conn, ctx.keybook.keys, now)
        costs = reads.costs_today(conn, now)
        sessions = reads.open_sessions(conn)
        alerts = reads.pending_alerts(conn, now)
        history = reads.events(conn, "rotation", limit) if limit else []
    return {
        "day": utc_day(now),
        "tokens": {
            "total_keys": sum(1 for d in days if d.enabled),
            "active_keys": sum(1 for d in days if usable(d, now)),
            "active_sessions": len(sessions),
            "pending_alerts": len(alerts),
            "keys_by_provider": provider_figures(days, costs),
            "keys_over_limit": {d.key_id: key_overrun(d) for d in days if d.enabled and key_overrun(d)},
        },
        "sessions": sessions,
        "alerts": alerts,
        "rotation_history": history,
    }
