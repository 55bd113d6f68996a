"""The token ledger's operations: what any store (SQLite today, Postgres for several hosts later) must do.

Handlers and the runner depend on these operations only. Every write is one transaction; every grant is the
conditional `used + reserved + n <= limit`; usage is settled idempotently by request id; holds expire by lease.
`butler_skill.store.ledger.Ledger` implements it on both databases (SQLite, and PostgreSQL through
`store/pg.py`); a test keeps the signatures identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from butler_skill.core.selection import KeyView
from butler_skill.models import Alert, Event, ResolvedKey, RotationReason, SessionInfo

Picker = Callable[[list[KeyView]], KeyView | None]


class Grant:
    """A reservation made and the session opened on it: the session's id and rotation threshold, the key view it
    was granted on, and `session` (its SessionInfo), built the first time it is read: an allocation's own answer
    needs only the id and the threshold, and building a pydantic model inside every allocation cost about what
    its reserve statement does. `session` is a SessionInfo or what makes one."""

    __slots__ = ("_make", "_session", "key", "rotation_threshold", "session_id")

    def __init__(self, *, key: KeyView, session_id: str, rotation_threshold: int,
                 session: SessionInfo | Callable[[], SessionInfo]) -> None:
        self.key = key
        self.session_id = session_id
        self.rotation_threshold = rotation_threshold
        self._session, self._make = (session, None) if isinstance(session, SessionInfo) else (None, session)

    @property
    def session(self) -> SessionInfo:
        if self._session is None:
            assert self._make is not None
            self._session, self._make = self._make(), None
        return self._session

    def __repr__(self) -> str:
        return f"Grant(session_id={self.session_id!r}, key={self.key!r})"


@dataclass(frozen=True)
class UsageOutcome:
    duplicate: bool
    session: SessionInfo
    leg_used: int
    leg_granted: int


@dataclass(frozen=True)
class Rotation:
    session: SessionInfo
    from_key_id: str
    to_key_id: str
    moved: int
    cooldown_until: datetime | None


@runtime_checkable
class TokenLedger(Protocol):
    def close_session(self, session_id: str, now: datetime) -> SessionInfo:
        """End a session and give back what it still holds."""
        ...

    def costs_by_key(self) -> dict[str, Decimal]:
        """LLM cost recorded per key over all days (the treasury derives prepaid credit from it)."""
        ...

    def costs_today(self, now: datetime) -> dict[str, Decimal]:
        ...

    def events(self, kind: str | None = None, limit: int = 20) -> list[Event]:
        ...

    def expire_leases(self, now: datetime) -> int:
        ...

    def key_views(self, keys: Sequence[ResolvedKey], now: datetime) -> list[KeyView]:
        ...

    def open_session(
        self,
        *,
        keys: Sequence[ResolvedKey],
        pick: Picker,
        need: int,
        session_id: str,
        label: str | None,
        task_id: str | None,
        threshold_ratio: float,
        now: datetime,
        lease_seconds: int,
        minted_id: bool = False,
    ) -> Grant | list[KeyView]:
        """Reserve `need` tokens on the key `pick` chooses and open a session on it. `minted_id`: `session_id` is
        one Butler just made (`Context.new_id`), not text from outside, so the redaction hook skips it."""
        ...

    def pending_alerts(self, now: datetime) -> list[Alert]:
        """The alerts pending at `now` (`core.alerts`), oldest first."""
        ...

    def raise_alert(self, *, alert_id: str, session_id: str, key_id: str, kind: str, message: str,
                    now: datetime) -> bool:
        """Record an alert once per (session, key, kind). True when it is new."""
        ...

    def rotate_session(
        self,
        *,
        session_id: str,
        keys: Sequence[ResolvedKey],
        pick: Callable[[list[KeyView], KeyView | None, int], KeyView | None],
        reason: RotationReason,
        cooldown: Callable[[int], datetime | None],
        now: datetime,
        lease_seconds: int,
        rest_scope: bool = False,
    ) -> Rotation | list[KeyView]:
        """Move a session's remaining allocation to another key, in one transaction."""
        ...

    def session(self, session_id: str) -> SessionInfo:
        ...

    def sessions(self, *, open_only: bool = True, task_id: str | None = None) -> list[SessionInfo]:
        ...

    def set_cooldown(self, key_id: str, until: datetime, reason: str, now: datetime, *,
                     keys: Sequence[ResolvedKey] = (), rest_scope: bool = False) -> None:
        ...

    def totals(self, now: datetime) -> dict[str, int]:
        """Sum of used and reserved today over all keys: what the ledger reports as granted."""
        ...
