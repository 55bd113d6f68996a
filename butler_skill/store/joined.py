"""One write transaction shared by several store operations.

Every store operation (`Ledger.open_session`, `Ledger.close_session`, `AccessTokenStore.reserve`, ...) runs in a
transaction of its own: `with self.db.write() as conn`. `Joined` is a database face over a transaction that is
already open: its `write()` and `read()` hand back that same connection and neither begin nor commit, so the
stores built on it compose into the caller's one transaction (one `BEGIN IMMEDIATE` and one durable commit on
SQLite, one advisory lock and one COMMIT on PostgreSQL) and are undone together when it rolls back.

    with db.write() as conn:
        joined = Joined(conn, db.dialect)
        AccessTokenStore(joined).reserve(...)
        Ledger(joined).open_session(...)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Joined:
    """`write()` and `read()` over a connection whose transaction the caller owns (begun and ended by it)."""

    def __init__(self, conn: Any, dialect: str = "sqlite") -> None:
        self.conn = conn
        self.dialect = dialect

    @contextmanager
    def write(self) -> Iterator[Any]:
        yield self.conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        yield self.conn
