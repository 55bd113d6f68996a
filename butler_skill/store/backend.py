"""Which ledger: SQLite in the state folder (the default), or PostgreSQL when BUTLER_DATABASE_URL names one.

Several hosts that share one budget share one PostgreSQL ledger: each SQLite file believes it holds the
whole daily limit, so N hosts with N files spend N times it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from butler_skill.errors import ConfigError
from butler_skill.store.db import BUSY_TIMEOUT_MS, Database

if TYPE_CHECKING:
    from butler_skill.store.pg import PostgresDatabase

DATABASE_URL_ENV = "BUTLER_DATABASE_URL"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def database_url(env: Mapping[str, str]) -> str | None:
    """The PostgreSQL URL the environment names, or None for the SQLite default."""
    url = env.get(DATABASE_URL_ENV, "").strip()
    if not url:
        return None
    if not url.startswith(POSTGRES_SCHEMES):
        # The message never repeats the value: a URL may carry a password.
        raise ConfigError(f"{DATABASE_URL_ENV} must start with postgresql:// (or be unset for SQLite)",
                          variable=DATABASE_URL_ENV)
    return url


def open_database(state_path: Path, env: Mapping[str, str], *, redact: Callable[[str], str] | None = None,
                  busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Database | PostgresDatabase:
    """`redact` is applied to every text parameter written, on either backend; `busy_timeout_ms` is how long a
    writer waits for another's lock (SQLite's busy timeout, PostgreSQL's lock_timeout)."""
    url = database_url(env)
    if url is None:
        return Database(state_path, redact=redact, busy_timeout_ms=busy_timeout_ms)
    try:
        from butler_skill.store.pg import PostgresDatabase
    except ImportError as exc:  # psycopg is an extra: pip install 'butler-skill[postgres]'
        raise ConfigError(f"{DATABASE_URL_ENV} names PostgreSQL but psycopg is not installed",
                          variable=DATABASE_URL_ENV, hint="pip install 'butler-skill[postgres]'") from exc
    return PostgresDatabase(url, path=state_path, redact=redact, lock_timeout_ms=busy_timeout_ms)


def inspect_ledger(state_path: Path, env: Mapping[str, str]) -> dict[str, object]:
    """What `butler doctor` reports of the ledger: backend, where (no password), reachable, schema version.
    Looks without changing anything: no migration, and no SQLite file created."""
    from butler_skill.store.db import load_migrations

    expected = max((m.version for m in load_migrations()), default=0)
    try:
        url = database_url(env)
    except ConfigError as exc:
        return {"backend": "postgres", "location": DATABASE_URL_ENV, "error": exc.message,
                "expected_version": expected}
    if url is None:
        facts: dict[str, object] = {"backend": "sqlite", "location": str(state_path), "expected_version": expected}
        if not state_path.exists():
            return {**facts, "exists": False}
        try:
            import sqlite3

            conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return {**facts, "error": str(exc)}
        return {**facts, "schema_version": int(row[0] or 0)}
    from butler_skill.store.pg import postgres_schema_version, redacted_url

    facts = {"backend": "postgres", "location": redacted_url(url), "expected_version": expected}
    try:
        return {**facts, "schema_version": postgres_schema_version(url)}
    except ConfigError as exc:
        return {**facts, "error": exc.message}
