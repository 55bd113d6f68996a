"""The narrowed allocation write (one read statement, expiry only when a lease is due, the session insert with
only its outside texts through the redaction hook) keeps every rule of the wider one, on both backends."""

from __future__ import annotations

import pytest

from butler_skill.handlers import tokens as t
from butler_skill.host.context import Context
from butler_skill.store.protocol import Grant
from butler_skill.store.timestamps import ts
from tests.conftest import SECRETS, Clock


def alloc(ctx: Context, n: int, **kw: object) -> t.AllocateTokensOutput:
    return t.allocate_tokens(ctx, t.AllocateTokensInput(prd_text="x", tokens=n, **kw))


def test_an_allocation_expires_a_due_lease_first_and_uses_what_it_held(ctx: Context, clock: Clock) -> None:
    first = alloc(ctx, 20_000)  # all of beta-1 (the only key that large)
    clock.advance(seconds=3_599)
    assert ctx.ledger.session(first.session_id).state == "open"
    assert alloc(ctx, 9_000).key_id != first.key_id  # not due yet: beta-1 is still full
    clock.advance(seconds=2)  # first's lease has run out; nothing else has run since
    again = alloc(ctx, 20_000)
    assert again.key_id == first.key_id
    assert ctx.ledger.session(first.session_id).state == "expired"
    expired = [e for e in ctx.ledger.events("lease_expired", 10) if e.session_id == first.session_id]
    assert len(expired) == 1 and expired[0].data == {"released": 20_000}


def test_a_lease_that_is_not_due_is_left_alone(ctx: Context, clock: Clock) -> None:
    first = alloc(ctx, 1_000)
    clock.advance(seconds=3_600)  # exactly at the deadline: not past it
    alloc(ctx, 1_000)
    assert ctx.ledger.session(first.session_id).state == "open"
    assert ctx.ledger.events("lease_expired", 10) == []


def test_the_session_row_is_the_record_and_outside_text_in_it_is_redacted(ctx: Context, clock: Clock) -> None:
    secret = SECRETS["TEST_OPENAI_KEY"]
    out = alloc(ctx, 1_500, label=f"pasted {secret[8:40]} by mistake")
    with ctx.db.read() as conn:
        row = conn.execute("SELECT * FROM sessions WHERE id = ?", (out.session_id,)).fetchone()
    assert row["label"] == "pasted [REDACTED] by mistake"
    assert row["key_id"] == out.key_id and row["allocated"] == row["leg_held"] == 1_500 and row["state"] == "open"
    assert row["created_at"] == ts(clock.now) and row["leg_day"] == ts(clock.now)[:10]
    assert ctx.ledger.totals(clock.now) == {"used": 0, "reserved": 1_500}


def test_open_sessions_are_listed_in_created_order(ctx: Context, clock: Clock) -> None:
    ids = []
    for _ in range(4):
        ids.append(alloc(ctx, 1_000).session_id)
        clock.advance(seconds=1)
    ctx.ledger.close_session(ids[1], clock.now)
    assert [s.session_id for s in ctx.ledger.sessions(open_only=True)] == [ids[0], ids[2], ids[3]]
    assert [s.session_id for s in ctx.ledger.sessions(open_only=False)] == ids


def test_a_failing_session_insert_takes_its_reservation_back_with_it(ctx: Context, clock: Clock) -> None:
    """On PostgreSQL the insert travels with the COMMIT (one round trip): when it fails, nothing commits."""
    from butler_skill import sessions

    first = alloc(ctx, 1_000)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        sessions.open_session(ctx, 2_000, session_id=first.session_id)
    assert ctx.ledger.totals(clock.now) == {"used": 0, "reserved": 1_000}
    assert alloc(ctx, 500).allocated == 500  # the ledger (and its connection) work on
    assert ctx.ledger.totals(clock.now) == {"used": 0, "reserved": 1_500}


def test_the_hook_sees_each_outside_text_of_an_allocation_once_and_the_reserve_uses_what_it_made(
        ctx: Context, clock: Clock) -> None:
    """The label and the key id pass the hook in one check (the reserve reuses the key id it returned); Butler's
    own days, stamps and the session id it minted never reach it; a session id a caller passes in does."""
    seen: list[str] = []
    real = ctx.db.redact
    assert real is not None

    def spy(text: str) -> str:
        seen.append(text)
        return real(text)

    ctx.db.redact = spy
    out = alloc(ctx, 1_000, label="nightly build")
    assert sorted(seen) == sorted(["nightly build", out.key_id])
    assert not any(text[:4].isdigit() for text in seen)  # no day, no timestamp
    assert ctx.ledger.totals(clock.now) == {"used": 0, "reserved": 1_000}  # today's first: its counter row was made too
    # Without a label or a task, the same three texts less the label.
    seen.clear()
    second = alloc(ctx, 1_000)
    assert seen == [second.key_id]
    # A session id from the caller is outside text: it passes the hook with the rest.
    from butler_skill import sessions

    seen.clear()
    given = sessions.open_session(ctx, 1_000, session_id="ses_given_by_caller", label="x")
    assert isinstance(given, Grant) and given.session.session_id == "ses_given_by_caller"
    assert sorted(seen) == sorted(["ses_given_by_caller", "x", given.key.key_id])


def test_a_grants_session_is_the_row_it_wrote_read_back(ctx: Context, clock: Clock) -> None:
    """`Grant.session` is built when first read: the same SessionInfo the ledger reads back from the row, and
    the grant's id and threshold are that session's."""
    from butler_skill import sessions

    grant = sessions.open_session(ctx, 4_000, label="docs pass", task_id=None)
    assert isinstance(grant, Grant)
    stored = ctx.ledger.session(grant.session_id)
    assert grant.session == stored and grant.session is grant.session
    assert (grant.session_id, grant.rotation_threshold, grant.key.key_id) == (
        stored.session_id, stored.rotation_threshold, stored.key_id)
    assert stored.held == stored.allocated == 4_000 and stored.state == "open" and stored.created_at == clock.now
