"""The ledger on PostgreSQL: the same stores (ledger, tasks, treasury) and SQL, shared by many hosts.

`PostgresDatabase` has the interface of `store.db.Database` (`write()`, `read()`, `migrate()`,
`schema_version()`, `close()`), so `Ledger`, `TaskStore` and `TreasuryStore` run on it unchanged: their SQL
is written in the subset both databases accept, and `PgConnection` translates `?` placeholders and hands
back rows addressed by column name, as sqlite3.Row does.

Writers are serialised, exactly as SQLite's `BEGIN IMMEDIATE` serialises them: every write transaction
starts by taking one transaction-scoped advisory lock (`pg_advisory_xact_lock`), so the ledger's
read-choose-reserve (read the counters, pick a key, reserve on it) cannot be overtaken by another host
between the read and the write. Under READ COMMITTED every statement after the lock sees every write that
committed before it, so the choice is made on current figures; the conditional
`UPDATE ... WHERE used + reserved + n <= limit` still guards each grant on its own. The lock is released by
COMMIT or ROLLBACK, and by the server when the client's connection ends (a killed process, a dropped
network: `idle_in_transaction_session_timeout` ends a session that went silent holding it). Readers take a
REPEATABLE READ, READ ONLY snapshot and never wait for the lock.

Connections come from a psycopg_pool pool (one per process). psycopg prepares a statement on the server
after it has run `prepare_threshold` times on a connection, so the ledger's hot statements are prepared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from butler_skill.errors import ConfigError, StorageError
from butler_skill.store.db import load_migrations, params_redactor
from butler_skill.store.dialect import for_dialect, to_postgres_ddl, to_postgres_query

# Any fixed 64-bit number: the key of the one advisory lock every writer of this database takes.
WRITE_LOCK = 0x6275746C6572  # "butler"
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_MS = 30_000  # as long as SQLite's busy timeout
IDLE_IN_TRANSACTION_MS = 60_000
PREPARE_THRESHOLD = 2  # prepare a statement on its second run on a connection (psycopg's default is 5)

_BEGIN_WRITE = f"BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

Redactor = Callable[[str], str]


class Row(dict[str, Any]):
    """A row addressed by column name, and by position as sqlite3.Row also allows (`row[0]`)."""

    __slots__ = ("_values",)

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        super().__init__(zip(names, values, strict=True))
        self._values = tuple(values)

    def __getitem__(self, key: str | int) -> Any:  # type: ignore[override]
        if isinstance(key, int):
            return self._values[key]
        return super().__getitem__(key)


def row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = [column.name for column in cursor.description or ()]

    def make(values: Sequence[Any]) -> Row:
        return Row(names, values)

    return make


class PgConnection:
    """What the stores use of a sqlite3.Connection: `execute(sql, params)` returning a cursor."""

    __slots__ = ("_conn", "_last", "_params")

    def __init__(self, conn: psycopg.Connection[Row], redact: Redactor | None) -> None:
        self._conn = conn
        # The same batch form of the hook as on SQLite (store.db.params_redactor).
        self._params = params_redactor(redact) if redact is not None else None
        self._last: list[tuple[str, tuple[Any, ...]]] = []  # statements sent with the COMMIT (`execute_last`)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Row]:
        self._not_after_last()
        args = tuple(params) if self._params is None else tuple(self._params(tuple(params)))
        return self._conn.execute(to_postgres_query(sql), args)

    def execute_last(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A statement of Butler's own parameters whose result nobody reads, closing the transaction: sent
        with the COMMIT in one pipeline (one round trip for both; `store.db.execute_last`)."""
        self._last.append((to_postgres_query(sql), tuple(params)))

    def _not_after_last(self) -> None:
        if self._last:
            raise RuntimeError("a statement after execute_last: it would run before the deferred one")

    def redact_values(self, values: Sequence[Any]) -> Sequence[Any]:
        return values if self._params is None else self._params(values)

    def execute_own(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Row]:
        """A statement whose text parameters Butler made from the clock and numbers (`store.db.execute_own`)."""
        self._not_after_last()
        return self._conn.execute(to_postgres_query(sql), tuple(params))

    def executemany_own(self, sql: str, seq: Sequence[Sequence[Any]]) -> None:
        """`execute_own` for many parameter rows (psycopg pipelines them; `store.db.executemany_own`)."""
        self._not_after_last()
        with self._conn.cursor() as cur:
            cur.executemany(to_postgres_query(sql), [tuple(p) for p in seq])

    def commit(self) -> None:
        """COMMIT, after the statements `execute_last` kept, all in one round trip."""
        conn = self._conn
        if not self._last:
            conn.execute("COMMIT")
            return
        with conn.pipeline():
            for sql, args in self._last:
                conn.execute(sql, args)
            conn.execute("COMMIT")


class PostgresDatabase:
    """A PostgreSQL database shared by threads (a connection pool) and by processes on many hosts."""

    dialect = "postgres"

    def __init__(self, url: str, *, path: str | Path | None = None, min_size: int = 1, max_size: int = 8,
                 redact: Redactor | None = None, lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                 migrate: bool = True) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("a PostgreSQL ledger needs a postgresql:// URL")
        self.url = url
        # The local state path even so: files that live beside the ledger (the treasury policy) are found from it.
        self.path = Path(path) if path is not None else Path.cwd() / "state.db"
        self.redact = redact  # applied to every str parameter inside write(), as store.db.Database does
        self.lock_timeout_ms = max(0, int(lock_timeout_ms))
        self._local = threading.local()
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, name="butler-ledger",
            kwargs={"autocommit": True, "row_factory": row_factory, "prepare_threshold": PREPARE_THRESHOLD},
            configure=self._configure, timeout=LOCK_TIMEOUT_MS / 1000,
        )
        _probe(url)
        self._pool.open(wait=True, timeout=LOCK_TIMEOUT_MS / 1000)
        if migrate:
            self.migrate()

    # ---- transactions ------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self, begin: str, redact: Redactor | None) -> Iterator[PgConnection]:
        if getattr(self._local, "busy", False):
            # As on SQLite: a transaction inside a transaction on the same thread is a bug (and here would
            # wait forever for the lock its own outer transaction holds).
            raise RuntimeError("a ledger transaction is already open on this thread")
        conn = self._begin(begin)
        self._local.busy = True
        tx = PgConnection(conn, redact)
        try:
            yield tx
            tx.commit()
        except BaseException:
            _rollback(conn)
            raise
        finally:
            self._local.busy = False
            self._pool.putconn(conn)  # the pool rolls back or drops a connection left in a bad state

    def _begin(self, begin: str) -> psycopg.Connection[Row]:
        """A pooled connection with `begin` run on it. A connection that died while idle in the pool (server
        restart, killed backend, dropped network) is dropped and the BEGIN tried once more on a fresh one:
        nothing of the transaction has run yet, so trying again cannot do anything twice."""
        for attempt in (1, 2):
            conn: psycopg.Connection[Row] = self._pool.getconn()
            try:
                conn.execute(begin, prepare=False)
                return conn
            except psycopg.OperationalError:
                broken = conn.broken
                if not broken:
                    _rollback(conn)
                self._pool.putconn(conn)
                if not broken or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def write(self) -> Iterator[PgConnection]:
        """A serialised write transaction: commits on success, rolls back on any exception."""
        with self._storage_errors(), self._transaction(_BEGIN_WRITE, self.redact) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[PgConnection]:
        """A consistent snapshot for several SELECTs."""
        with self._storage_errors(), self._transaction(_BEGIN_READ, None) as conn:
            yield conn

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """The server or the connection failing (not a statement's own error, which is a bug) is a
        StorageError, as a failing SQLite file is: its message names the ledger (without the password)."""
        try:
            yield
        except (psycopg.OperationalError, PoolTimeout) as exc:
            where = redacted_url(self.url)
            if isinstance(exc, psycopg.errors.LockNotAvailable):
                cause, fix = "locked", (f"another host held the ledger's write lock longer than {self.lock_timeout_ms}"
                                        " ms; retry, or raise BUTLER_BUSY_TIMEOUT_MS")
            else:
                cause, fix = "connection", "check that the server is up and reachable, then retry"
            text = str(exc).strip()
            first = _scrub(text.splitlines()[0] if text else type(exc).__name__, self.url)
            raise StorageError(f"PostgreSQL ledger at {where}: {first} ({cause}); {fix}", ledger=where,
                               cause=cause) from None

    # ---- schema ------------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the numbered migrations not yet applied, all in one transaction under the write lock, so
        hosts starting together apply each exactly once and no writer sees a half-made schema."""
        applied: list[int] = []
        with self._transaction(_BEGIN_WRITE, None) as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))"
            )
            have = {r["version"] for r in tx.execute("SELECT version FROM schema_migrations")}
            for migration in load_migrations():
                if migration.version in have:
                    continue
                ddl = to_postgres_ddl(for_dialect(migration.sql, "postgres"))
                # No parameters: psycopg sends the whole file as one simple query (several statements).
                tx._conn.execute(ddl.encode("utf-8"), prepare=False)
                tx.execute("INSERT INTO schema_migrations(version, name) VALUES (?, ?)",
                           (migration.version, migration.name))
                applied.append(migration.version)
        return applied

    def schema_version(self) -> int:
        with self.read() as conn:
            row = conn.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()
        return int(row["v"] or 0) if row else 0

    def describe(self) -> str:
        """Where this ledger lives, without the password: for `butler doctor` and logs."""
        return redacted_url(self.url)

    def close(self) -> None:
        self._pool.close()

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(f"SET lock_timeout = {self.lock_timeout_ms}")
        conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
        conn.execute("SET TIME ZONE 'UTC'")


def _probe(url: str) -> None:
    """Fail fast, and say where, when the server cannot be reached (the pool would retry for its timeout)."""
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True).close()
    except psycopg.Error as exc:
        # The driver's message names host and port, never the password; the URL is shown without it.
        first = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
        raise ConfigError(f"cannot connect to the PostgreSQL ledger at {redacted_url(url)}: {first}",
                          ledger=redacted_url(url)) from None


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if conn.broken:
        return
    with suppress(psycopg.Error):
        conn.execute("ROLLBACK")


def redacted_url(url: str) -> str:
    """postgresql://user@host:port/db: the password and the query string (which may carry one) left out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _scrub(message: str, url: str) -> str:
    """A driver message with the URL and its password taken out, should libpq ever echo them."""
    password = urlsplit(url).password
    message = message.replace(url, redacted_url(url))
    return message.replace(password, "***") if password else message


def postgres_schema_version(url: str) -> int:
    """The highest migration applied on this server's ledger (0 when none), without migrating anything."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
            if not found or not found[0]:
                return 0
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0) if row else 0
    except psycopg.Error as exc:
        first = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
        raise ConfigError(f"cannot read the PostgreSQL ledger at {redacted_url(url)}: {first}",
                          ledger=redacted_url(url)) from None
