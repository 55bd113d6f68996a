"""Plain-text tables for people (no colour codes, so output pipes cleanly)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_usd(x: float) -> str:
    return f"${x:,.4f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def status_tables(status: dict[str, Any]) -> str:
    tokens = status["tokens"]
    providers = tokens["keys_by_provider"]
    rows = [
        [name, p["keys"], fmt_int(p["total_capacity"]), fmt_int(p["used_today"]), fmt_int(p["reserved"]),
         fmt_int(p["remaining"]), fmt_usd(p["cost_today"])]
        for name, p in providers.items()
    ]
    totals = [sum(p[f] for p in providers.values()) for f in ("total_capacity", "used_today", "reserved",
                                                               "remaining")]
    rows.append(["TOTAL", sum(p["keys"] for p in providers.values()), *map(fmt_int, totals),
                 fmt_usd(sum(p["cost_today"] for p in providers.values()))])
    out = [
        f"Butler status for {status['day']} (UTC): {tokens['total_keys']} keys, {tokens['active_keys']} usable, "
        f"{tokens['active_sessions']} open sessions, {tokens['pending_alerts']} pending alerts",
        "",
        table(["provider", "keys", "capacity", "used", "reserved", "remaining", "cost today"], rows,
              right=(1, 2, 3, 4, 5, 6)),
    ]
    if status["sessions"]:
        out += ["", "Open sessions:", table(
            ["session", "label", "key", "allocated", "used", "held", "threshold"],
            [[s["session_id"], s["label"] or "", s["key_id"], fmt_int(s["allocated"]), fmt_int(s["used"]),
              fmt_int(s["held"]), fmt_int(s["rotation_threshold"])] for s in status["sessions"]],
            right=(3, 4, 5, 6))]
    if status["alerts"]:
        out += ["", "Pending alerts:"] + [f"  [{a['kind']}] {a['message']}" for a in status["alerts"]]
    if status["rotation_history"]:
        out += ["", "Recent rotations:"] + [
            f"  {e['at'][:19]}Z  {e['data'].get('from_key_id')} -> {e['data'].get('to_key_id')}"
            f"  ({e['data'].get('reason')}, {fmt_int(e['data'].get('moved_tokens', 0))} tokens moved)"
            for e in status["rotation_history"]
        ]
    return "\n".join(out)


def keys_table(keys: list[dict[str, Any]]) -> str:
    rows = [
        [k["key_id"], k["provider"], k["scope"], k["model"], fmt_int(k["tokens_per_day"]), fmt_int(k["used"]),
         fmt_int(k["reserved"]), fmt_int(k["remaining"]), (k["cooldown_until"] or "")[:19]]
        for k in keys
    ]
    return table(["key", "provider", "scope", "model", "limit/day", "used", "reserved", "remaining", "cooldown"],
                 rows, right=(4, 5, 6, 7))
