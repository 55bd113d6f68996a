"""One SQLite database file: connections, numbered migrations, write transactions.

Every write runs inside `BEGIN IMMEDIATE`, so the conditional updates the ledger relies on are
serialised across threads and processes without a read-then-write race. WAL keeps readers off the
writer's back. Migrations are the `NNNN_name.sql` files beside this module, applied in order inside one
`BEGIN IMMEDIATE` transaction that first re-reads `schema_migrations`, so several processes opening a
file that does not exist yet never apply one twice nor fail (busy answers are retried until the busy timeout).

Redaction hook: `Database(path, redact=f)` (or the `redact` attribute) passes every `str` parameter of
every statement run inside `write()` through `f` before SQLite sees it, so no text column can hold key
material. The Context installs its redactor there; a PostgreSQL Database mirrors the same attribute.

Failures of the file itself (corrupt, truncated, locked past the busy timeout, disk full, a directory in
its place, unreadable) become `StorageError` (`storage_error`) naming the file, the cause and a fix.
Other sqlite3 errors (a bad statement, a broken constraint) stay exceptions: they are bugs.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TypeVar

from butler_skill.errors import StorageError
from butler_skill.store.dialect import for_dialect

BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


class Migration(NamedTuple):  # not a dataclass: a cold read-only `butler call` then never imports dataclasses
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    folder = resources.files("butler_skill.store") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        version_text, _, rest = name.partition("_")
        found.append(Migration(int(version_text), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers: {versions}")
    return found


# sqlite3 error names (Python 3.11: exc.sqlite_errorname) that describe the file, not the statement.
_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (_BUSY, "locked",
     "another process held the database lock longer than the busy timeout ({timeout} ms); retry, raise "
     "BUTLER_BUSY_TIMEOUT_MS, or stop the process that holds it"),
    (("SQLITE_FULL",), "full",
     "the disk (or the database's size limit) is full; free space on the volume that holds it and retry"),
    (("SQLITE_CORRUPT", "SQLITE_NOTADB"), "corrupt",
     "the file is corrupt or truncated, or is not a Butler database; move it (and its -wal/-shm files) "
     "aside and restore a backup, or let Butler start an empty ledger there"),
    (("SQLITE_CANTOPEN",), "cannot_open",
     "check that the path names a file (not a directory) in a folder that exists and that you may write"),
    (("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH"), "read_only",
     "the file or its folder is read-only for this user; fix the permissions (the -wal and -shm files "
     "beside it must be writable too)"),
    (("SQLITE_IOERR", "SQLITE_PROTOCOL", "SQLITE_NOLFS"), "io_error",
     "the disk or file system failed to read or write it; check the volume (space, health, a network mount)"),
)


def _error_name(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name:
        return name
    text = str(exc).lower()  # older builds: classify by the message
    for needle, guess in (("locked", "SQLITE_BUSY"), ("disk is full", "SQLITE_FULL"), ("malformed", "SQLITE_CORRUPT"),
                          ("not a database", "SQLITE_NOTADB"), ("unable to open", "SQLITE_CANTOPEN"),
                          ("readonly", "SQLITE_READONLY"), ("disk i/o", "SQLITE_IOERR")):
        if needle in text:
            return guess
    return ""


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and _error_name(exc).startswith(_BUSY)


def storage_error(exc: BaseException, path: Path, timeout_ms: int) -> StorageError | None:
    """The StorageError for a failure of the database file, or None when `exc` is not one (a bug)."""
    if isinstance(exc, OSError):
        return StorageError(f"state database {path}: {exc.strerror or exc}; check the path and its folder",
                            file=str(path), cause="os_error")
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        return None
    name = _error_name(exc)
    for prefixes, cause, fix in _CAUSES:
        if name.startswith(prefixes):
            return StorageError(f"state database {path}: {exc} ({cause}); {fix.format(timeout=timeout_ms)}",
                                file=str(path), cause=cause)
    return None


def params_redactor(redact: Callable[[str], str]) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """What a statement's positional parameters go through: the redactor's own `redact_params` when it has one
    (host.redaction.Redactor, or its bound `redact`: one check over all the statement's texts, and each text
    redacted only when that check finds something), else `redact` on each str."""
    owner = redact if hasattr(redact, "redact_params") else getattr(redact, "__self__", None)
    batch = getattr(owner, "redact_params", None)
    if batch is not None and (owner is redact or getattr(owner, "redact", None) == redact):
        return batch  # type: ignore[no-any-return]

    def each(params: Sequence[Any]) -> Sequence[Any]:
        return tuple(redact(v) if isinstance(v, str) else v for v in params)

    return each


def execute_own(conn: Any, sql: str, params: Sequence[Any]) -> Any:
    """Run a statement whose text parameters Butler made itself from the clock (UTC days, `timestamps.ts` text)
    and numbers, and nothing else: no text from outside (no id, label, key id, provider answer), so the redaction
    hook has nothing to look at. Every other statement goes through `execute`. Works on a plain connection too."""
    own = getattr(conn, "execute_own", None) if not isinstance(conn, sqlite3.Connection) else None
    return (own or conn.execute)(sql, params)


def executemany_own(conn: Any, sql: str, seq: Sequence[Sequence[Any]]) -> None:
    """`execute_own` for many parameter rows (one prepared statement run for each): their texts are Butler's own
    or already passed the hook (`redact_values`)."""
    own = getattr(conn, "executemany_own", None) if not isinstance(conn, sqlite3.Connection) else None
    (own or conn.executemany)(sql, seq)


def execute_last(conn: Any, sql: str, params: Sequence[Any]) -> None:
    """The last statement of a write transaction, its result unread, its parameters Butler's own or already
    redacted (`redact_values`), as for `execute_own`. SQLite runs it at once; PostgreSQL sends it with the
    COMMIT in one pipeline, one round trip for both (nothing may run after it there)."""
    last = getattr(conn, "execute_last", None) if not isinstance(conn, sqlite3.Connection) else None
    if last is not None:
        last(sql, params)
    else:
        conn.execute(sql, params)


def redact_values(conn: Any, values: Sequence[Any]) -> Sequence[Any]:
    """`values` as the connection's redaction hook passes a statement's parameters (unchanged without a hook):
    for a statement run with `execute_own` that also carries text from outside."""
    own = getattr(conn, "redact_values", None) if not isinstance(conn, sqlite3.Connection) else None
    return own(values) if own is not None else values


def redact_texts(conn: Any, texts: Sequence[str | None]) -> dict[Any, Any]:
    """Each distinct text of `texts` (None passes) as the connection's redaction hook leaves it, by text: one check
    of them all, each once however often it recurs (a group of writes repeats its task and key ids)."""
    distinct = list(dict.fromkeys(texts))
    return dict(zip(distinct, redact_values(conn, distinct), strict=True))


class _RedactingConnection:
    """A write transaction's connection whose statements see only redacted text parameters."""

    __slots__ = ("_conn", "_params", "_redact")

    def __init__(self, conn: sqlite3.Connection, redact: Callable[[str], str],
                 params: Callable[[Sequence[Any]], Sequence[Any]]) -> None:
        self._conn = conn
        self._redact = redact
        self._params = params

    def _clean(self, params: Any) -> Any:
        if isinstance(params, dict):
            redact = self._redact
            return {k: redact(v) if isinstance(v, str) else v for k, v in params.items()}
        return self._params(params)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, self._clean(params))

    def execute_own(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """See `execute_own` (module level): no redaction pass."""
        return self._conn.execute(sql, params)

    def redact_values(self, values: Sequence[Any]) -> Sequence[Any]:
        return self._params(values)

    execute_last = execute_own

    def executemany_own(self, sql: str, seq: Any) -> sqlite3.Cursor:
        """See `executemany_own` (module level): no redaction pass."""
        return self._conn.executemany(sql, seq)

    def executemany(self, sql: str, seq: Any) -> sqlite3.Cursor:
        return self._conn.executemany(sql, (self._clean(p) for p in seq))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Write:
    """`Database.write()`: BEGIN IMMEDIATE on enter; COMMIT, or ROLLBACK on any exception, on exit.

    `found` and `memo`: what one write transaction may leave the next on the same connection (the allocation's
    figures, store/ledger.py `_Seen`). Entering takes what the last one left into `found`, so the connection keeps
    it for one write only: any write transaction, whatever it does, ends it. A memo set in `memo` is kept only when
    this transaction commits. (Other connections' commits are seen by `PRAGMA data_version`: the ledger checks it.)"""

    __slots__ = ("_conn", "_db", "found", "memo")

    def __init__(self, db: Database) -> None:
        self._db = db
        self.memo: Any = None

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        local = db._local
        self.found = getattr(local, "memo", None)
        local.memo = None
        try:
            conn = self._conn = db._connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            db._raise_mapped(exc)
        redact = db.redact
        if redact is None:
            return conn
        if redact is not db._params_of:  # the hook was set or replaced: find its batch form once
            db._params, db._params_of = params_redactor(redact), redact
        return _RedactingConnection(conn, redact, db._params)  # type: ignore[return-value]

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        conn = self._conn
        if kind is None:
            try:
                conn.execute("COMMIT")
                if self.memo is not None:
                    self._db._local.memo = self.memo
                return False
            except BaseException as failed:
                exc = failed
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            self._db._raise_mapped(exc)
        if kind is None and exc is not None:
            raise exc
        return False


class Database:
    """A file-backed SQLite database shared by threads (one connection per thread) and processes.

    `redact`: applied to every str parameter of statements inside `write()` (None: none).
    `busy_timeout_ms`: how long a statement waits for another process's lock before `storage_error`.
    """

    dialect = "sqlite"

    def __init__(self, path: str | Path, redact: Callable[[str], str] | None = None,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.redact = redact
        self._params_of: Callable[[str], str] | None = None  # the `redact` that `_params` was made from
        self._params: Callable[[Sequence[Any]], Sequence[Any]] | None = None
        self.busy_timeout_ms = max(0, int(busy_timeout_ms))
        self._local = threading.local()
        if self.path.is_dir():
            raise StorageError(f"state database {self.path} is a directory; point BUTLER_STATE_PATH (or --state) "
                               "at a file, or move the directory away", file=str(self.path), cause="is_directory")
        with self._guard():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists()
            self._connection()
            if fresh:
                with suppress(OSError):
                    self.path.chmod(0o600)
            self._retry_busy(self._set_wal)
        self.migrate()

    @contextmanager
    def _guard(self, os_errors: bool = True) -> Iterator[None]:
        """Turn failures of the file into StorageError; leave bugs alone (and, around a transaction's body,
        the caller's own OSErrors)."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, OSError) and not os_errors:
                raise
            mapped = storage_error(exc, self.path, self.busy_timeout_ms)
            if mapped is None:
                raise
            raise mapped from exc

    def _raise_mapped(self, exc: sqlite3.Error) -> NoReturn:
        """Raise the StorageError for a failure of the file, else `exc` itself (a bug), as `_guard` does."""
        mapped = storage_error(exc, self.path, self.busy_timeout_ms)
        if mapped is None:
            raise exc
        raise mapped from exc

    def _retry_busy(self, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying while SQLite answers busy without waiting (journal-mode switch, WAL recovery,
        a stale snapshot), until the busy timeout has passed."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(random.uniform(0.002, 0.02))

    def _set_wal(self) -> None:
        conn = self._connection()
        row = conn.execute("PRAGMA journal_mode").fetchone()
        if str(row[0]).lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN ourselves so the lock mode is explicit.
            # cached_statements: Butler runs about 140 distinct statements (its migrations another 56, once); with
            # sqlite3's default of 128, a long-lived server that used every tool could push the allocation's own
            # prepared statements out and prepare them again.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                                   check_same_thread=True, cached_statements=512)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
                conn.execute("PRAGMA foreign_keys=ON")
                # NORMAL is durable against process crashes in WAL mode (only power loss may drop the tail).
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
        return conn

    def write(self) -> _Write:
        """A serialised write transaction: commits on success, rolls back on any exception. Failures of the
        file become StorageError as under `_guard(os_errors=False)` (a class, not two nested generator
        context managers: it is entered on every allocation)."""
        return _Write(self)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs."""
        with self._guard(os_errors=False):
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("COMMIT")

    def _pending(self, migrations: list[Migration]) -> bool:
        try:
            have = {r[0] for r in self._connection().execute("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError as exc:
            if is_busy(exc) or "no such table" in str(exc):
                return True
            raise
        return any(m.version not in have for m in migrations)

    def migrate(self) -> list[int]:
        migrations = load_migrations()
        with self._guard():
            if not self._pending(migrations):
                return []
            return self._retry_busy(lambda: self._apply(migrations))

    def _apply(self, migrations: list[Migration]) -> list[int]:
        applied: list[int] = []
        # One BEGIN IMMEDIATE around the check and the apply: a second process waits, then sees them done.
        with self.write() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
            )
            have = {r[0] for r in tx.execute("SELECT version FROM schema_migrations")}
            for migration in migrations:
                if migration.version in have:
                    continue
                for statement in _statements(for_dialect(migration.sql, "sqlite")):
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_migrations(version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )
                applied.append(migration.version)
        return applied

    def schema_version(self) -> int:
        with self._guard():
            row = self._connection().execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()
        return int(row["v"] or 0)

    def describe(self) -> str:
        """Where this ledger lives: for `butler doctor`."""
        return f"sqlite:///{self.path}"

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        self._local.memo = None  # it described that connection's view of the file
        if conn is not None:
            conn.close()
            self._local.conn = None


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would COMMIT our transaction).

    sqlite3.complete_statement knows about string literals, comments and trigger bodies, so a ';'
    inside any of them does not end a statement.
    """
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _has_code(buffer):
        statements.append(buffer.strip())
    return statements


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())
