"""Dashboard sign-ins: the cookie holds a random session value, never the access token; the ledger keeps only its
hash; a session ends when it expires, when its token is revoked, and at sign-out; a forged one opens nothing; and
no log line, event or row carries the value."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from butler_skill.gateway.dashboard import COOKIE, DashboardSettings, dashboard_routes
from butler_skill.host.context import Context
from butler_skill.store.access_tokens import AccessTokenStore
from butler_skill.store.dashboard_sessions import SESSION_PREFIX, DashboardSessions, session_hash
from tests.dashboard.conftest import TOKEN, Served, authenticator

SNAPSHOT = "/dashboard/api/snapshot"


def _with(served: Served, value: str) -> httpx.Client:
    client = httpx.Client(base_url=served.base_url, timeout=10.0)
    client.cookies.set(COOKIE, value, domain="127.0.0.1", path="/dashboard")
    return client


def _rows(ctx: Context) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM dashboard_sessions")]


def test_the_cookie_holds_a_random_session_value_never_the_token(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10.0) as client:
        r = client.get("/dashboard", params={"token": TOKEN}, follow_redirects=False)
        form = client.post("/dashboard/login", content=f"token={TOKEN}", follow_redirects=False,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    values = []
    for answer in (r, form):
        header = answer.headers["set-cookie"]
        assert TOKEN not in header and TOKEN.split("_", 2)[2] not in header
        attrs = [a.strip().lower() for a in header.split(";")]
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/dashboard" in attrs
        assert f"max-age={DashboardSettings().session_seconds}" in attrs
        assert "secure" not in attrs  # plain HTTP on loopback: a Secure cookie would never come back
        value = answer.cookies[COOKIE]
        assert value.startswith(SESSION_PREFIX) and len(value) == len(SESSION_PREFIX) + 43
        values.append(value)
    assert values[0] != values[1]  # each sign-in its own session
    # The ledger holds the values' hashes, tied to the token's id, never a value or the token.
    rows = _rows(served.ctx)
    assert sorted(r["session_hash"] for r in rows) == sorted(session_hash(v) for v in values)
    assert {r["token_id"] for r in rows} == {"tok-dashboard"}
    assert not any(v in str(rows) for v in (*values, TOKEN))
    for value in values:
        with _with(served, value) as client:
            assert client.get(SNAPSHOT).status_code == 200


def test_the_cookie_is_secure_when_served_over_tls(served: Served) -> None:
    app = Starlette(routes=dashboard_routes(lambda: served.ctx, authenticator(served.ctx)))
    with TestClient(app, base_url="https://testserver") as client:
        r = client.get("/dashboard", params={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303
        assert "secure" in [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
        out = client.post("/dashboard/logout", follow_redirects=False)
        assert "secure" in [a.strip().lower() for a in out.headers["set-cookie"].split(";")]


def test_revoking_the_token_ends_its_sessions_and_no_other(served: Served) -> None:
    store = AccessTokenStore(served.ctx.db)
    other = "butler_at_another-dashboard-token-0123456789"
    store.create(token_id="tok-other", name="other", secret=other, role="agent", daily_budget=1, now=served.clock())
    mine, theirs = served.sign_in(), served.sign_in(other)
    with _with(served, mine) as a, _with(served, theirs) as b:
        assert a.get(SNAPSHOT).status_code == 200 and b.get(SNAPSHOT).status_code == 200
        store.revoke("tok-other", served.clock())
        assert b.get(SNAPSHOT).status_code == 401 and b.get("/dashboard").status_code == 401
        assert b.get("/dashboard/api/events").status_code == 401
        assert a.get(SNAPSHOT).status_code == 200
    assert {r["token_id"] for r in _rows(served.ctx)} == {"tok-dashboard"}  # revoking deleted its sessions
    # A token revoked by a statement that leaves its sessions' rows (another host, an old Butler) ends them too:
    # a session counts only while its token is active.
    with served.ctx.db.write() as conn:
        conn.execute("UPDATE access_tokens SET revoked_at = ? WHERE id = 'tok-dashboard'", ("2026-11-24T14:05:00Z",))
    with _with(served, mine) as a:
        assert a.get(SNAPSHOT).status_code == 401


def test_an_expired_session_is_refused(served: Served) -> None:
    value = served.sign_in()
    with _with(served, value) as client:
        served.clock.now += timedelta(seconds=DashboardSettings().session_seconds - 60)
        assert client.get(SNAPSHOT).status_code == 200
        served.clock.now += timedelta(seconds=61)
        assert client.get(SNAPSHOT).status_code == 401
        assert client.get("/dashboard").status_code == 401  # the login form again
    served.sign_in()  # a sign-in clears the expired sessions
    assert session_hash(value) not in {r["session_hash"] for r in _rows(served.ctx)}


@pytest.mark.parametrize("forged", [
    TOKEN,  # the old cookie: the access token itself opens nothing any more
    SESSION_PREFIX + "A" * 43,  # the right shape, never issued
    "session",
])
def test_a_forged_session_is_refused(served: Served, forged: str) -> None:
    with _with(served, forged) as client:
        for path in (SNAPSHOT, "/dashboard/api/history", "/dashboard/api/spend.csv", "/dashboard/api/events"):
            assert client.get(path).status_code == 401, path
        assert client.get("/dashboard").status_code == 401


def test_an_altered_session_value_is_refused(served: Served) -> None:
    value = served.sign_in()
    altered = value[:-1] + ("A" if value[-1] != "A" else "B")
    with _with(served, altered) as client:
        assert client.get(SNAPSHOT).status_code == 401
    assert DashboardSessions(served.ctx.db).token_of(value, served.clock()) == "tok-dashboard"


def test_signing_out_ends_the_session_on_the_server(served: Served) -> None:
    value = served.sign_in()
    with _with(served, value) as client:
        assert client.get(SNAPSHOT).status_code == 200
        out = client.post("/dashboard/logout", follow_redirects=False)
        assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    # A copy of the cookie kept elsewhere (another tab's jar, a proxy's log) opens nothing now.
    with _with(served, value) as copy:
        assert copy.get(SNAPSHOT).status_code == 401
    assert _rows(served.ctx) == []


def test_the_event_stream_ends_when_the_session_does(served: Served) -> None:
    value = served.sign_in()
    with _with(served, value) as client, client.stream("GET", "/dashboard/api/events") as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event: version"))
        DashboardSessions(served.ctx.db).close(value)
        rest = list(lines)  # the server ends the stream at its next poll (else this would wait 60 s)
    assert not any(line.startswith("event:") for line in rest)


def test_nothing_logs_the_session_value(served: Served, caplog: pytest.LogCaptureFixture,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    # Every server-side logger at DEBUG (uvicorn's access log included); the test's own HTTP client (httpx and
    # httpcore, which print the headers they receive) stays quiet: it is the browser here, not Butler.
    loggers = [logging.getLogger(name) for name in ("", "butler", "uvicorn", "uvicorn.error", "uvicorn.access")]
    clients = [logging.getLogger(name) for name in ("httpx", "httpcore")]
    levels = [lg.level for lg in loggers + clients]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        if caplog.handler not in lg.handlers:
            lg.addHandler(caplog.handler)
    for lg in clients:
        lg.setLevel(logging.WARNING)
    try:
        value = served.sign_in()
        with _with(served, value) as client:
            assert client.get(SNAPSHOT).status_code == 200
            assert client.get("/dashboard/api/spend.csv").status_code == 200
            client.post("/dashboard/logout", follow_redirects=False)
            assert client.get(SNAPSHOT).status_code == 401
    finally:
        for lg, level in zip(loggers + clients, levels, strict=True):
            lg.setLevel(level)
            lg.removeHandler(caplog.handler)
    out, err = capfd.readouterr()
    assert any(r.name == "uvicorn.access" for r in caplog.records)  # the capture saw the server's request lines
    assert value not in caplog.text and value not in out and value not in err
    with served.ctx.db.read() as conn:
        events = [dict(r) for r in conn.execute("SELECT * FROM events")]
    assert value not in str(events)
