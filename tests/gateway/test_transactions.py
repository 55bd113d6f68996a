"""How many durable commits a gateway call costs, and that none of its statements reads history.

An unbound call (no session named) takes its token's hold and opens its own session in one write transaction,
then counts its usage, closes the session and settles the token in a second one: two commits a call (it was
five). `sessions.transaction` composes them (tests/store/test_joined_transaction.py: on both backends,
whatever raises inside it leaves nothing behind).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from butler_skill.gateway.app import create_app
from butler_skill.gateway.server import BackgroundServer
from butler_skill.gateway.service import GatewaySettings
from butler_skill.gateway.tokens import create_token
from butler_skill.host.context import Context
from tests.conftest import write_keys
from tests.gateway.conftest import Harness, gateway_keys
from tests.gateway.test_relay import CHAT, chat, no_holds
from tests.servers.fake_llm import FakeLLM, ok
from tests.store.test_bounded_reads import BOUNDED_INDEXES, HISTORY


class CountingDatabase:
    """The context's database, counting write transactions (each is one BEGIN IMMEDIATE and one commit) and
    recording every statement run inside a transaction (SQLite's trace)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.writes = 0
        self.statements: list[str] = []

    @contextmanager
    def _traced(self, opened: AbstractContextManager[Any]) -> Iterator[Any]:
        with opened as conn:
            conn.set_trace_callback(self.statements.append)
            try:
                yield conn
            finally:
                conn.set_trace_callback(None)

    def write(self) -> AbstractContextManager[Any]:
        self.writes += 1
        return self._traced(self.db.write())

    def read(self) -> AbstractContextManager[Any]:
        return self._traced(self.db.read())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture
def counted(tmp_path: Path, fake: FakeLLM) -> Iterator[tuple[Harness, CountingDatabase]]:
    write_keys(tmp_path / "keys.json", gateway_keys(fake, limit=10_000))
    ctx = Context(env={"HOME": str(tmp_path)}, keys_path=tmp_path / "keys.json", state_path=tmp_path / "s.db")
    token, secret = create_token(ctx, "agent", daily_budget=1_000_000)
    db = CountingDatabase(ctx.db)
    ctx.__dict__["db"] = db
    ctx.__dict__.pop("ledger", None)
    server = BackgroundServer(create_app(ctx, settings=GatewaySettings(auth_cache_s=0.0)))
    try:
        yield Harness(ctx, fake, server, secret, token.id), db
    finally:
        server.close()
        ctx.close()


def test_an_unbound_call_commits_twice_and_leaves_everything_settled(
        counted: tuple[Harness, CountingDatabase]) -> None:
    h, db = counted
    for stream in (False, True):
        h.fake.script(ok(prompt_tokens=20, completion_tokens=10))
        before = db.writes
        r = h.post(CHAT, chat(stream=stream, stream_options={"include_usage": True} if stream else None))
        assert r.status_code == 200
        r.read()
        assert db.writes - before == 2
    [day] = h.rows("SELECT used, reserved FROM access_token_days WHERE token_id = ?", h.token_id)
    assert day == {"used": 60, "reserved": 0}
    assert [s["state"] for s in h.rows("SELECT state FROM sessions")] == ["closed", "closed"]
    assert sum(c["used"] for c in h.counters().values()) == 60
    no_holds(h)


def test_a_call_no_key_can_take_commits_once_and_holds_nothing(counted: tuple[Harness, CountingDatabase]) -> None:
    h, db = counted
    before = db.writes
    r = h.post(CHAT, chat(max_tokens=50_000))  # more than any key's daily limit (10,000)
    assert r.status_code == 429
    assert db.writes - before == 1
    assert h.fake.requests == []
    assert h.rows("SELECT COUNT(*) AS n FROM sessions")[0]["n"] == 0
    no_holds(h)


def test_usage_that_cannot_be_counted_still_releases_the_call(counted: tuple[Harness, CountingDatabase]) -> None:
    h, _ = counted
    h.fake.script(ok(prompt_tokens=20_000_000, completion_tokens=10))  # past the plausible bound: not counted
    assert h.post(CHAT, chat()).status_code == 200  # the provider answered: the agent gets its answer
    assert h.rows("SELECT COUNT(*) AS n FROM usage_records")[0]["n"] == 0
    assert [s["state"] for s in h.rows("SELECT state FROM sessions")] == ["closed"]
    no_holds(h)


def test_a_gateway_call_reads_no_history_table(counted: tuple[Harness, CountingDatabase]) -> None:
    """Every statement of a call (JSON and streamed) is answered through an index (SQLite's query plan)."""
    h, db = counted
    for _ in range(3):  # some history first
        h.fake.script(ok(prompt_tokens=20, completion_tokens=10))
        assert h.post(CHAT, chat()).status_code == 200
    db.statements.clear()
    for stream in (False, True):
        h.fake.script(ok(prompt_tokens=20, completion_tokens=10))
        h.post(CHAT, chat(stream=stream)).read()
    with h.ctx.db.read() as conn:
        explained = 0
        for sql in dict.fromkeys(db.statements):
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE")):
                continue
            explained += 1
            for detail in (r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql)):
                if detail.startswith("SCAN "):
                    index = detail.split("INDEX ")[-1] if "INDEX " in detail else None
                    assert detail.split()[1] not in HISTORY or index in BOUNDED_INDEXES, (sql, detail)
    assert explained >= 15
