"""`sessions.transaction`: store operations that share one write transaction commit together or not at all, on
SQLite and on PostgreSQL (the gateway takes a token's hold and opens a session this way, in one commit)."""

from __future__ import annotations

import pytest

from butler_skill import sessions
from butler_skill.gateway.tokens import create_token
from butler_skill.host.context import Context
from butler_skill.store.access_tokens import AccessTokenStore
from butler_skill.store.protocol import Grant


def _totals(ctx: Context) -> tuple[int, int, int]:
    with ctx.db.read() as conn:
        return (int(conn.execute("SELECT COUNT(*) AS n FROM sessions").fetchone()["n"]),
                int(conn.execute("SELECT COALESCE(SUM(reserved), 0) AS n FROM key_day_counters").fetchone()["n"]),
                int(conn.execute("SELECT COALESCE(SUM(reserved), 0) AS n FROM access_token_days").fetchone()["n"]))


def test_what_shares_a_transaction_rolls_back_together(ctx: Context) -> None:
    token, _ = create_token(ctx, "agent", daily_budget=1_000)
    now = ctx.now()
    with pytest.raises(RuntimeError, match="after both"), sessions.transaction(ctx) as tx:
        assert AccessTokenStore(tx.db).reserve(token, 500, now)  # type: ignore[arg-type]
        grant = sessions.open_session(tx, 500, now=now)  # last: on PostgreSQL its insert goes with the COMMIT
        assert isinstance(grant, Grant)
        raise RuntimeError("after both")
    assert _totals(ctx) == (0, 0, 0)


def test_what_shares_a_transaction_commits_together(ctx: Context) -> None:
    token, _ = create_token(ctx, "agent", daily_budget=1_000)
    now = ctx.now()
    with sessions.transaction(ctx) as tx:
        assert AccessTokenStore(tx.db).reserve(token, 500, now)  # type: ignore[arg-type]
        grant = sessions.open_session(tx, 500, now=now)  # last: on PostgreSQL its insert goes with the COMMIT
    assert isinstance(grant, Grant)
    assert ctx.ledger.session(grant.session.session_id).held == 500
    assert AccessTokenStore(ctx.db).day(token.id, now).reserved == 500
    assert _totals(ctx) == (1, 500, 500)
