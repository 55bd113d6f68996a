"""A plan is written in bulk (TaskStore.create: one executemany for the sessions, one for the sub-tasks, outside
text through the redaction hook once, nothing read back). On both ledgers: property, the ledger afterwards and the
rows create returns equal what the plan written row by row (the previous definition, kept below as the reference)
left and what the previous read-back query returns; a failure half-way through the bulk write leaves nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.core.allocation import exact_shares, largest_remainder, shares_usable
from butler_skill.core.decomposition import decompose
from butler_skill.errors import NoCapacity
from butler_skill.host.context import Context
from butler_skill.store import tasks as tasks_module
from butler_skill.store.ledger import expire_leases_in, insert_session_in
from butler_skill.store.tasks import PlannedSubTask, SessionLeg, TaskStore
from butler_skill.subagents.planning import _lease, _picker, plan
from tests.conftest import SECRETS, Clock


class _Rollback(Exception):
    pass


TABLES = {
    "tasks": "SELECT * FROM tasks ORDER BY id",
    "subtasks": "SELECT * FROM subtasks ORDER BY task_id, position",
    "sessions": "SELECT * FROM sessions ORDER BY id",
    "counters": "SELECT key_id, day, used, reserved FROM key_day_counters WHERE reserved > 0 OR used > 0"
                " ORDER BY key_id, day",
}


def snapshot(conn: Any) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in conn.execute(sql).fetchall()] for name, sql in TABLES.items()}


# The read-back query the store ran before (one statement joining the sessions and their grouped usage).
OLD_READ = ("SELECT st.*, s.key_id AS key_id, COALESCE(u.used, 0) AS tokens_used"
            " FROM subtasks st JOIN sessions s ON s.id = st.session_id"
            " LEFT JOIN (SELECT label, SUM(used) AS used FROM sessions WHERE task_id = ? GROUP BY label) u"
            " ON u.label = st.id WHERE st.task_id = ? ORDER BY st.position")


def old_rows(conn: Any, task_id: str) -> list[tuple[Any, ...]]:
    return [(r["task_id"], r["id"], r["position"], r["round"], r["title"], r["text"], r["kind"], r["priority"],
             r["weight_bp"], r["estimated_tokens"], r["share"], tuple(json.loads(r["depends_on"])), r["session_id"],
             r["key_id"], r["status"], r["output"], r["error"], r["attempts"], int(r["tokens_used"]),
             r["planned_share"] if r["planned_share"] is not None else r["share"])
            for r in conn.execute(OLD_READ, (task_id, task_id)).fetchall()]


def plan_by_definition(ctx: Context, *, name: str, description: str, budget: int, options: dict[str, Any],
                       task_id: str, session_ids: list[str]) -> Any:
    """The plan as it was written before: model specs, Fraction shares, one INSERT per session and sub-task, each
    through the hook. Run in a transaction that is rolled back: what it wrote (as read inside it) or its refusal."""
    specs = decompose(description, name)
    shares = largest_remainder(budget, exact_shares(budget, [(s.estimated_tokens, s.priority) for s in specs]))
    if not shares_usable(shares):
        return "unusable"
    now = ctx.now()
    cfg = ctx.config
    planned = [PlannedSubTask(s, share, sid) for s, share, sid in zip(specs, shares, session_ids, strict=False)]
    stamp = tasks_module.ts(now)
    captured: Any = None
    try:
        with ctx.db.write() as conn:
            expire_leases_in(conn, now)
            conn.execute(
                "INSERT INTO tasks(id, name, description, budget, mode, options, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (task_id, name, description, budget, "spawn", json.dumps(options, sort_keys=True), stamp, stamp))
            chosen = TaskStore._reserve_shares(conn, [p.share for p in planned], cfg.resolved(), _picker(now, None),
                                               now)
            for position, (item, key_id) in enumerate(zip(planned, chosen, strict=True)):
                insert_session_in(conn, item.session_id, item.spec.id, task_id, key_id, item.share,
                                  cfg.rotation_threshold, now, _lease(ctx, options))
                s = item.spec
                conn.execute(
                    "INSERT INTO subtasks(task_id, id, position, title, text, kind, priority, weight_bp,"
                    " estimated_tokens, share, planned_share, depends_on, session_id, status, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'pending',?)",
                    (task_id, s.id, position, s.title, s.text, s.kind, s.priority, s.weight_bp, s.estimated_tokens,
                     item.share, item.share, json.dumps(list(s.depends_on)), item.session_id, stamp))
            captured = (snapshot(conn), old_rows(conn, task_id))
            raise _Rollback
    except NoCapacity as refused:
        return refused.message
    except _Rollback:
        pass
    return captured


SECRET = SECRETS["TEST_GROQ_KEY_1"]
WORDS = st.sampled_from(["Research", "the", "prices", "analyze", "write", "a", "report", "urgent", "optional",
                         "review", "deploy", f"key {SECRET}", SECRET[4:30], "aws", "sk-proj-abc", "set up", "é", "—",
                         "1.", "\t", "x" * 70])
ITEMS = st.lists(st.lists(WORDS, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=ITEMS, budget=st.integers(min_value=1, max_value=45_000), prose=st.booleans(),
       name=st.sampled_from(["bench", f"paste {SECRET}", "p0 launch"]))
def test_the_bulk_plan_writes_what_the_row_by_row_plan_wrote(ctx: Context, clock: Clock, items: list[str],
                                                             budget: int, prose: bool, name: str) -> None:
    description = ". ".join(items) if prose else "\n".join(f"- {i}" for i in items)
    options = {"maxConcurrent": 3, "note": f"from {SECRET}" if "paste" in name else "n"}
    clock.advance(seconds=1)
    n = ctx.ids.n  # type: ignore[attr-defined]
    # The ids the plan is about to mint (tests.conftest.Ids counts): the reference uses the same ones.
    task_id, session_ids = f"task_{n + 1:06d}", [f"ses_{n + 2 + i:06d}" for i in range(len(items) * 4)]
    expected = plan_by_definition(ctx, name=name, description=description, budget=budget, options=options,
                                  task_id=task_id, session_ids=session_ids)
    with ctx.db.read() as conn:
        before = snapshot(conn)
    try:
        task, rows = plan(ctx, name=name, description=description, budget=budget, mode="spawn", options=options)
    except NoCapacity as refused:
        assert expected in (refused.message, "unusable"), (expected, refused.message)
        with ctx.db.read() as conn:
            assert snapshot(conn) == before  # a refused plan writes nothing
        return
    assert task.id == task_id and not isinstance(expected, str), expected
    tables, read_rows = expected
    store = TaskStore(ctx.db)
    with ctx.db.read() as conn:
        assert snapshot(conn) == tables  # every row and counter the row-by-row plan left
        assert [tuple(r) for r in rows] == old_rows(conn, task_id) == read_rows
    assert [tuple(r) for r in store.subtasks(task_id)] == read_rows
    # The runner's first attempts take their legs from the plan's rows (runner._Run.first_legs): what reading them
    # back answers.
    assert {r.session_id: SessionLeg.planned(r) for r in rows} == store.session_legs([r.session_id for r in rows])
    assert store.results(task_id) == [(r[1], r[14], r[18], r[16], r[15], r[13], r[17]) for r in read_rows]
    assert store.task(task_id) == task
    assert all(SECRET[4:20] not in (r.title + r.text) for r in rows)  # outside text went through the hook


def _bulk_plan(ctx: Context, n: int) -> Any:
    return plan(ctx, name="half", description="\n".join(f"- Item {i}: say ok" for i in range(n)), budget=n * 10,
                mode="spawn", options={})


@pytest.mark.parametrize("where", ["session", "subtask", "row"])
def test_a_failure_half_way_through_the_bulk_write_leaves_nothing(ctx: Context, monkeypatch: pytest.MonkeyPatch,
                                                                  where: str) -> None:
    _bulk_plan(ctx, 20)  # something already in the ledger, which must stay as it is
    with ctx.db.read() as conn:
        before = snapshot(conn)
    ids = ctx.ids

    if where == "session":  # the 500th session id repeats an earlier one: the sessions' INSERT fails mid-way
        minted: list[str] = []

        def repeating(prefix: str) -> str:
            minted.append(ids(prefix))
            return minted[-1] if len(minted) != 501 else minted[250]

        ctx.ids = repeating
    elif where == "subtask":  # the 500th sub-task repeats an id: the sub-tasks' INSERT fails after the sessions'
        real = tasks_module.executemany_own

        def many(conn: Any, sql: str, rows: Any) -> None:
            if sql.startswith("INSERT INTO subtasks"):
                rows = [r if i != 499 else (r[0], "st-1", *r[2:]) for i, r in enumerate(rows)]
            real(conn, sql, rows)

        monkeypatch.setattr(tasks_module, "executemany_own", many)
    else:  # building a row raises half-way (after the sessions were written)
        calls = {"n": 0}
        real_deps = tasks_module._deps_json

        def failing(deps: Any) -> str:
            calls["n"] += 1
            if calls["n"] == 500:
                raise RuntimeError("injected half-way")
            return real_deps(deps)

        monkeypatch.setattr(tasks_module, "_deps_json", failing)
    with pytest.raises(Exception) as raised:
        _bulk_plan(ctx, 1_000)
    assert not isinstance(raised.value, NoCapacity)
    with ctx.db.read() as conn:
        assert snapshot(conn) == before  # no task, sub-task, session or reservation of the failed plan
    ctx.ids = ids



def test_the_read_back_equals_the_previous_query_after_rounds_of_retries(ctx: Context) -> None:
    """A sub-task's tokens are the usage of every session it had, its key that of its current one."""
    from butler_skill.subagents.planning import replan_failed

    task, _ = plan(ctx, name="rounds", description="\n".join(f"- Analyze part {i}" for i in range(6)),
                      budget=6_000, mode="spawn", options={})
    store = TaskStore(ctx.db)
    for round_ in range(2):
        current = store.subtasks(task.id)
        with ctx.db.write() as conn:
            for i, r in enumerate(current):
                conn.execute("UPDATE sessions SET used = ? WHERE id = ?", (100 * (i + 1) + round_, r.session_id))
                conn.execute("UPDATE subtasks SET status = ?, attempts = ?, output = ?, error = ? WHERE task_id = ?"
                             " AND id = ?", ("failed" if i % 2 else "success", round_ + 1, f"out {i}",
                                             "boom" if i % 2 else None, task.id, r.id))
        failed = [r for r in store.subtasks(task.id) if r.status == "failed"]
        replan_failed(ctx, task.id, failed, 3_000)
    with ctx.db.read() as conn:
        expected = old_rows(conn, task.id)
    assert [tuple(r) for r in store.subtasks(task.id)] == expected
    assert store.results(task.id) == [(r[1], r[14], r[18], r[16], r[15], r[13], r[17]) for r in expected]
    assert any(r[3] == 3 and r[18] > 200 for r in expected)  # three rounds, usage summed over them
