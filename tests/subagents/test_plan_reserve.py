"""A plan reserves its shares in bulk (one read and one conditional update per key, TaskStore._reserve_shares):
property, it chooses the same key for every share, leaves the same counters and refuses the same plans as
reserving the shares one at a time did, and never takes a key past its limit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.errors import NoCapacity
from butler_skill.host.context import Context
from butler_skill.store.ledger import expire_leases_in
from butler_skill.store.tasks import TaskStore
from butler_skill.subagents.planning import _picker
from tests.conftest import write_keys

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def context(folder: Path, limits: list[int], preferred: list[int]) -> Context:
    folder.mkdir(parents=True, exist_ok=True)
    keys = [{"id": f"k{i}", "provider": "openai" if i % 2 else "groq", "scope": f"s{i % 3}",
             "key": f"sk-test-not-a-secret-{i:06d}", "price_in_per_m": 0.1 * (1 + preferred[i]),
             "price_out_per_m": 0.2, "limits": {"tokens_per_day": limit}} for i, limit in enumerate(limits)]
    write_keys(folder / "keys.json", keys)
    return Context(env={"HOME": str(folder)}, keys_path=folder / "keys.json", state_path=folder / "s.db")


def one_by_one(ctx: Context, shares: list[int]) -> list[str] | str:
    """The reference: each share chosen on fresh views and reserved by its own conditional update."""
    pick = _picker(NOW, None)
    try:
        with ctx.db.write() as conn:
            expire_leases_in(conn, NOW)
            return [TaskStore._reserve_share(conn, share, ctx.config.resolved(), pick, NOW).key_id
                    for share in shares]
    except NoCapacity as exc:
        return exc.message


def in_bulk(ctx: Context, shares: list[int]) -> list[str] | str:
    pick = _picker(NOW, None)
    try:
        with ctx.db.write() as conn:
            expire_leases_in(conn, NOW)
            return TaskStore._reserve_shares(conn, shares, ctx.config.resolved(), pick, NOW)
    except NoCapacity as exc:
        return exc.message


def counters(ctx: Context) -> dict[str, tuple[int, int]]:
    with ctx.db.read() as conn:
        return {r["key_id"]: (r["used"], r["reserved"]) for r in conn.execute(
            "SELECT key_id, used, reserved FROM key_day_counters WHERE reserved > 0 OR used > 0")}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limits=st.lists(st.integers(min_value=1, max_value=5_000), min_size=1, max_size=5),
       preferred=st.lists(st.integers(min_value=0, max_value=3), min_size=5, max_size=5),
       shares=st.lists(st.integers(min_value=1, max_value=1_500), min_size=1, max_size=12))
def test_bulk_reservation_equals_one_by_one(tmp_path_factory: pytest.TempPathFactory, limits: list[int],
                                           preferred: list[int], shares: list[int]) -> None:
    folder = tmp_path_factory.mktemp("plan")
    ref, bulk = context(folder / "ref", limits, preferred), context(folder / "bulk", limits, preferred)
    try:
        expected, got = one_by_one(ref, shares), in_bulk(bulk, shares)
        assert got == expected  # the same key for each share, or the same refusal
        assert counters(bulk) == counters(ref)
        if isinstance(got, str):
            assert counters(bulk) == {}  # a refused plan reserves nothing
        for key_id, (used, reserved) in counters(bulk).items():
            assert used + reserved <= limits[int(key_id[1:])]
    finally:
        ref.close()
        bulk.close()


def test_a_plan_that_does_not_fit_reserves_nothing(tmp_path: Path) -> None:
    ctx = context(tmp_path, [1_000, 1_000], [0, 0, 0, 0, 0])
    try:
        store = TaskStore(ctx.db)
        with pytest.raises(NoCapacity):
            _create(store, ctx, [600, 600, 600, 600])  # 2,400 tokens for 2,000 of room: no way
        assert counters(ctx) == {}
        _create(store, ctx, [1_000, 600, 400])
        assert sum(r for _, r in counters(ctx).values()) == 2_000
    finally:
        ctx.close()


def _create(store: TaskStore, ctx: Context, shares: list[int]) -> Any:
    from butler_skill.core.decomposition import SubTaskSpec
    from butler_skill.store.tasks import PlannedSubTask

    planned = [PlannedSubTask(spec=SubTaskSpec(id=f"st-{i}", title="t", text="t", kind="analyze", weight_bp=1,
                                               estimated_tokens=share, priority="medium", depends_on=()),
                              share=share, session_id=ctx.new_id("ses")) for i, share in enumerate(shares)]
    return store.create(task_id=ctx.new_id("task"), name="n", description="d", budget=sum(shares), mode="plan",
                        options={}, planned=planned, keys=ctx.config.resolved(), pick=_picker(NOW, None),
                        threshold_ratio=0.75, now=NOW, lease_seconds=600)
