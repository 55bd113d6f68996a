"""The runtime context handed to every handler: where state lives, what time it is, how ids are made.

Handlers never read the clock, the environment or files directly: they ask the context, so tests can
pass a fixed clock, a fresh environment and a temporary state directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from butler_skill.config import ButlerConfig
    from butler_skill.keybook import KeyBook
    from butler_skill.store.db import Database
    from butler_skill.store.protocol import TokenLedger


def system_clock() -> datetime:
    return datetime.now(UTC)


def uuid_ids(prefix: str) -> str:
    """Time-ordered ids (milliseconds, then 64 random bits): new rows append to the end of B-tree indexes. The
    random part is the OS's CSPRNG, exactly what `secrets.token_hex(8)` returns (`os.urandom(8).hex()`), without
    importing `secrets` (it loads OpenSSL's hashes) or its call layers on every allocation."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


def uuid_ids_many(prefix: str, n: int) -> list[str]:
    """`n` ids as `uuid_ids` makes them, minted together (a plan's sessions): one clock read and one CSPRNG read
    of 8 bytes per id."""
    head = f"{prefix}_{time.time_ns() // 1_000_000:012x}"
    random = os.urandom(8 * n).hex()
    return [head + random[16 * i:16 * i + 16] for i in range(n)]


class Context:
    """What a handler may ask for: the environment, where the keys and the ledger live, the clock, new ids.
    (A plain class, not a dataclass: a cold `butler call` imports neither dataclasses nor inspect for it.)"""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        keys_path: Path | None = None,
        state_path: Path | None = None,
        clock: Callable[[], datetime] = system_clock,
        ids: Callable[[str], str] = uuid_ids,
        cwd: Path | None = None,
        # Where a long-running tool reports progress (the CLI sets it when stderr is a terminal).
        progress: Callable[[Any], None] | None = None,
        # Faults the built-in demo provider injects (the demo and tests set it; None for real work).
        demo_faults: Any = None,
    ) -> None:
        self.env: Mapping[str, str] = dict(os.environ) if env is None else env
        self.keys_path = keys_path
        self.state_path = state_path
        self.clock = clock
        self.ids = ids
        self.cwd = Path.cwd() if cwd is None else cwd
        self.progress = progress
        self.demo_faults = demo_faults

    def now(self) -> datetime:
        moment = self.clock()
        if moment.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return moment.astimezone(UTC)

    def new_id(self, prefix: str) -> str:
        return self.ids(prefix)

    def new_ids(self, prefix: str, n: int) -> list[str]:
        """`n` new ids at once (`uuid_ids_many` with the default ids, else `ids` called `n` times)."""
        if self.ids is uuid_ids:
            return uuid_ids_many(prefix, n)
        return [self.ids(prefix) for _ in range(n)]

    @cached_property
    def config(self) -> ButlerConfig:
        from butler_skill.config import load_config

        return load_config(self.env, keys_path=self.keys_path, state_path=self.state_path)

    @cached_property
    def keybook(self) -> KeyBook:
        """The keys file as plain values (what the read tools, the ledger's location and redaction need), read
        without pydantic when the file allows it; otherwise (or once `config` is loaded) from `config`, which
        raises the exact config_error for a bad file."""
        from butler_skill.keybook import keybook_of, read_keybook

        if "config" not in self.__dict__:
            book = read_keybook(self.env, keys_path=self.keys_path, state_path=self.state_path)
            if book is not None:
                return book
        return keybook_of(self.config)

    def key_secrets(self) -> list[str]:
        """Every secret the keys reference (for the redaction layer; never for an output)."""
        return list(self.keybook.secrets)

    @cached_property
    def db(self) -> Database:
        from butler_skill.host.redaction import redactor_for
        from butler_skill.store.backend import open_database

        # SQLite in the state folder, or the PostgreSQL ledger BUTLER_DATABASE_URL names (same interface).
        # Every text Butler writes to the ledger passes the same redactor as its outputs and logs.
        cfg = self.keybook
        return open_database(cfg.state_path, self.env, redact=redactor_for(self).redact,  # type: ignore[return-value]
                             busy_timeout_ms=cfg.busy_timeout_ms)

    @cached_property
    def ledger(self) -> TokenLedger:
        from butler_skill.store.ledger import Ledger

        return Ledger(self.db)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
