"""The dashboard's read model on both ledgers: the same month of work, seeded through the tools, reads the same
figures from SQLite and from PostgreSQL, and the live-update fingerprint moves with usage on both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from butler_skill.gateway import dashboard_data as data
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from tests.dashboard.conftest import TODAY
from tests.dashboard.seed import MovingClock, env_for, ok, seed_month


def _figures(folder: Path, extra_env: dict[str, str]) -> dict[str, Any]:
    clock = MovingClock(TODAY)
    ctx = Context(env={**env_for(folder), **extra_env}, clock=clock)
    try:
        seed_month(ctx, clock, TODAY)
        snap = data.snapshot(ctx)
        before = data.version(ctx)
        session = snap.sessions[0].session_id
        ok(call_tool("record_usage", {"session_id": session, "request_id": "fp-1", "input_tokens": 5,
                                      "output_tokens": 5}, ctx))
        return {
            "total": snap.total.model_dump(), "providers": {k: v.model_dump() for k, v in snap.providers.items()},
            "keys": [(k.key_id, k.used, k.reserved, k.resting) for k in snap.keys],
            "labels": [r.model_dump() for r in snap.spend_by_label],
            "tasks": [(r.name, r.sessions, r.used) for r in snap.spend_by_task],
            "open": snap.open_sessions, "alerts": len(snap.alerts), "rotations": len(snap.rotations),
            "subtasks": [(n.sub_task_id, n.stage, n.status, n.tokens) for t in snap.tasks for n in t.subtasks],
            "history": data.history(ctx).model_dump(),
            "csv_rows": len(data.history_csv_rows(ctx)),
            "fingerprint_moved": data.version(ctx) != before,
        }
    finally:
        ctx.close()


def test_both_ledgers_show_the_same_dashboard(tmp_path: Path, pg_url: str) -> None:
    (tmp_path / "lite").mkdir()
    (tmp_path / "pg").mkdir()
    lite = _figures(tmp_path / "lite", {})
    pg = _figures(tmp_path / "pg", {"BUTLER_DATABASE_URL": pg_url})
    assert lite["fingerprint_moved"] and pg["fingerprint_moved"]
    assert lite["total"]["used_today"] > 0 and lite["csv_rows"] > 30
    # Costs are exact decimals in PostgreSQL and REAL sums in SQLite: they may differ in the last printed digit.
    for a, b in zip(pg.pop("labels"), lite.pop("labels"), strict=True):
        assert abs(a.pop("cost") - b.pop("cost")) <= 2e-6 and a == b
    assert pg == lite
