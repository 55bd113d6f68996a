"""Dashboard sessions on both ledgers (migration 0017): only a hash is stored; a session counts until it expires,
while its token is active, and until it is closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from butler_skill.host.context import Context
from butler_skill.store.access_tokens import AccessTokenStore
from butler_skill.store.dashboard_sessions import SESSION_PREFIX, DashboardSessions, session_hash

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_a_session_lives_until_expiry_revocation_or_close(ctx: Context) -> None:
    tokens = AccessTokenStore(ctx.db)
    tokens.create(token_id="tok-a", name="a", secret="butler_at_aaaaaaaaaaaaaaaa", role="agent", daily_budget=1,
                  now=NOW)
    tokens.create(token_id="tok-b", name="b", secret="butler_at_bbbbbbbbbbbbbbbb", role="agent", daily_budget=1,
                  now=NOW)
    store = DashboardSessions(ctx.db)
    first, second = store.open("tok-a", NOW, HOUR), store.open("tok-a", NOW, HOUR)
    other = store.open("tok-b", NOW, HOUR)
    assert len({first, second, other}) == 3 and all(v.startswith(SESSION_PREFIX) for v in (first, second, other))
    with ctx.db.read() as conn:
        stored = [dict(r) for r in conn.execute("SELECT * FROM dashboard_sessions")]
    assert {r["session_hash"] for r in stored} == {session_hash(v) for v in (first, second, other)}
    assert not any(v in str(stored) for v in (first, second, other))
    assert store.token_of(first, NOW + HOUR - timedelta(seconds=1)) == "tok-a"
    assert store.token_of(first, NOW + HOUR) is None  # expired
    assert store.token_of(SESSION_PREFIX + "x" * 43, NOW) is None and store.token_of("butler_at_aaaa", NOW) is None
    store.close(second)
    assert store.token_of(second, NOW) is None and store.token_of(first, NOW) == "tok-a"
    tokens.revoke("tok-a", NOW)
    assert store.token_of(first, NOW) is None and store.token_of(other, NOW) == "tok-b"
    # A sign-in deletes the sessions that expired (by the expiry index), and only those.
    later = store.open("tok-b", NOW + 2 * HOUR, HOUR)
    with ctx.db.read() as conn:
        left = {r["session_hash"] for r in conn.execute("SELECT session_hash FROM dashboard_sessions")}
    assert left == {session_hash(later)}
