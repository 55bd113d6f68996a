"""The ledger's rules, one by one, through the token handlers."""

from __future__ import annotations

import sqlite3

import pytest

from butler_skill.errors import Conflict, NoCapacity, UnknownSession
from butler_skill.handlers import tokens as t
from butler_skill.host.context import Context
from butler_skill.store.db import Database, load_migrations
from tests.conftest import Clock


def alloc(ctx: Context, n: int, **kw: object) -> t.AllocateTokensOutput:
    return t.allocate_tokens(ctx, t.AllocateTokensInput(prd_text="x", tokens=n, **kw))


def usage(ctx: Context, session: str, rid: str, i: int, o: int, **kw: object) -> t.RecordUsageOutput:
    return t.record_usage(ctx, t.RecordUsageInput(session_id=session, request_id=rid, input_tokens=i,
                                                  output_tokens=o, **kw))


def test_reserve_then_settle_then_release(ctx: Context, clock: Clock) -> None:
    a = alloc(ctx, 4_000)
    assert a.key_id == "alpha-1"  # cheapest blended price: groq, then most remaining, then id
    assert a.rotation_threshold == 3_000 and a.available_capacity == 6_000
    r = usage(ctx, a.session_id, "req-1", 1_000, 500)
    assert r.session.used == 1_500 and r.session.held == 2_500 and not r.threshold_crossed
    assert ctx.ledger.totals(clock.now) == {"used": 1_500, "reserved": 2_500}
    closed = usage(ctx, a.session_id, "req-2", 100, 0, close=True)
    assert closed.status == "closed" and closed.session.held == 0
    assert ctx.ledger.totals(clock.now) == {"used": 1_600, "reserved": 0}


def test_settling_the_same_request_twice_counts_once(ctx: Context, clock: Clock) -> None:
    a = alloc(ctx, 2_000)
    first = usage(ctx, a.session_id, "req-x", 300, 200)
    again = usage(ctx, a.session_id, "req-x", 300, 200)
    assert not first.duplicate and again.duplicate
    assert again.session.used == 500
    assert ctx.ledger.totals(clock.now)["used"] == 500
    with pytest.raises(Conflict):
        usage(ctx, a.session_id, "req-x", 301, 200)
    assert ctx.ledger.totals(clock.now)["used"] == 500


def test_no_single_key_fits_gives_largest_and_changes_nothing(ctx: Context, clock: Clock) -> None:
    with pytest.raises(NoCapacity) as err:
        alloc(ctx, 25_000)
    assert err.value.details["largest_available"] == 20_000 and err.value.details["hint"] == "split"
    assert ctx.ledger.totals(clock.now) == {"used": 0, "reserved": 0}


def test_threshold_crossing_alerts_and_rotates(ctx: Context, clock: Clock) -> None:
    a = alloc(ctx, 8_000)
    r = usage(ctx, a.session_id, "r1", 5_000, 1_000)
    assert r.threshold_crossed and r.alert is not None and r.status == "rotated"
    assert r.rotation is not None and r.rotation.from_key_id == "alpha-1" and r.rotation.moved_tokens == 2_000
    assert r.session.key_id != "alpha-1" and r.session.held == 2_000
    views = {v.key_id: v for v in ctx.ledger.key_views(ctx.config.resolved(), clock.now)}
    assert views["alpha-1"].reserved == 0 and views["alpha-1"].used == 6_000
    assert views[r.session.key_id].reserved == 2_000
    assert [e.kind for e in ctx.ledger.events("rotation")] == ["rotation"]


def test_rate_limit_moves_to_another_scope_and_rests_the_key(ctx: Context, clock: Clock) -> None:
    a = alloc(ctx, 1_000, preferred_provider="groq")
    assert a.key_id == "alpha-1"
    out = t.rotate_key(ctx, t.RotateKeyInput(session_id=a.session_id, reason="rate_limit", retry_after_s=30))
    assert out.rotation.rotated and out.rotation.to_key_id == "beta-1"  # alpha-2 shares acct-a's limit
    assert out.rotation.cooldown_until == clock.now.replace() + (out.rotation.cooldown_until - clock.now)
    assert (out.rotation.cooldown_until - clock.now).total_seconds() == 30
    avail = {k.key_id for k in t.get_available_keys(ctx, t.GetAvailableKeysInput()).keys}
    assert avail == {"beta-1"}  # the whole of acct-a rests: its limit is the account's, not the key's
    assert alloc(ctx, 100, preferred_provider="groq").key_id == "beta-1"
    clock.advance(seconds=31)
    assert {"alpha-1", "alpha-2"} <= {k.key_id for k in t.get_available_keys(ctx, t.GetAvailableKeysInput()).keys}


def test_rate_limit_with_only_the_same_account_left_stays_put(ctx: Context, clock: Clock) -> None:
    b = alloc(ctx, 20_000, preferred_provider="openai")  # fills acct-b
    assert b.key_id == "beta-1"
    a = alloc(ctx, 1_000)
    out = t.rotate_key(ctx, t.RotateKeyInput(session_id=a.session_id, reason="rate_limit", retry_after_s=60))
    assert not out.rotation.rotated and out.session.key_id == a.key_id  # alpha-2 shares the throttled account
    assert out.rotation.cooldown_until is not None
    assert not {"alpha-1", "alpha-2"} & {k.key_id for k in t.get_available_keys(ctx, t.GetAvailableKeysInput()).keys}


def test_quota_exhausted_parks_until_next_utc_midnight(ctx: Context, clock: Clock) -> None:
    a = alloc(ctx, 1_000)
    out = t.rotate_key(ctx, t.RotateKeyInput(session_id=a.session_id, reason="quota_exhausted"))
    assert out.rotation.cooldown_until is not None
    assert out.rotation.cooldown_until.isoformat() == "2026-11-25T00:00:00+00:00"


def test_named_rotation_to_unknown_or_full_key(ctx: Context) -> None:
    from butler_skill.errors import UnknownKey

    a = alloc(ctx, 9_000)
    with pytest.raises(UnknownKey):
        t.rotate_key(ctx, t.RotateKeyInput(session_id=a.session_id, new_key_id="nope"))
    b = alloc(ctx, 9_500)  # alpha-2 now has 500 left
    assert b.key_id == "alpha-2"
    with pytest.raises(NoCapacity):
        t.rotate_key(ctx, t.RotateKeyInput(session_id=a.session_id, new_key_id="alpha-2"))
    moved = t.rotate_key(ctx, t.RotateKeyInput(session_id=a.session_id, new_key_id="beta-1"))
    assert moved.session.key_id == "beta-1"


def test_unknown_session(ctx: Context) -> None:
    with pytest.raises(UnknownSession):
        usage(ctx, "ses_missing", "r", 1, 1)


def test_lease_expiry_returns_holds_and_usage_renews_it(ctx: Context, clock: Clock) -> None:
    a = alloc(ctx, 5_000)
    clock.advance(seconds=3_000)
    usage(ctx, a.session_id, "r1", 100, 100)  # renews the lease to now + 3600
    clock.advance(seconds=3_000)
    assert ctx.ledger.expire_leases(clock.now) == 0
    clock.advance(seconds=700)
    assert ctx.ledger.expire_leases(clock.now) == 1
    assert ctx.ledger.totals(clock.now) == {"used": 200, "reserved": 0}
    assert ctx.ledger.session(a.session_id).state == "expired"


def test_counters_are_per_utc_day(ctx: Context, clock: Clock) -> None:
    a = alloc(ctx, 19_000, preferred_provider="openai")
    assert a.key_id == "beta-1"
    usage(ctx, a.session_id, "r1", 18_000, 0, close=True)
    clock.now = clock.now.replace(hour=23, minute=59, second=59)
    with pytest.raises(NoCapacity):
        alloc(ctx, 19_500)  # beta-1 has 2,000 left today, the others 10,000
    clock.advance(seconds=1)  # 00:00:00 UTC: a new day, new counters
    assert alloc(ctx, 19_500).key_id == "beta-1"
    assert {k.key_id: k.used for k in t.get_available_keys(ctx, t.GetAvailableKeysInput(min_tokens=0)).keys} == {
        "alpha-1": 0, "alpha-2": 0, "beta-1": 0}


def test_migrations_are_numbered_and_idempotent(tmp_path) -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    db = Database(tmp_path / "m.db")
    assert db.schema_version() == migrations[-1].version
    assert db.migrate() == []
    db.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "m.db").stat().st_mode & 0o777 == 0o600


def test_sqlite_ledger_fills_the_store_protocol(ctx: Context) -> None:
    import inspect

    from butler_skill.store.ledger import Ledger
    from butler_skill.store.protocol import TokenLedger

    assert isinstance(ctx.ledger, TokenLedger)
    wanted = {n for n, f in inspect.getmembers(TokenLedger, inspect.isfunction) if not n.startswith("_")}
    assert wanted == {n for n, f in inspect.getmembers(Ledger, inspect.isfunction) if not n.startswith("_")}
    for name in wanted:
        assert inspect.signature(getattr(TokenLedger, name)) == inspect.signature(getattr(Ledger, name)), name
