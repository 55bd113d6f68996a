"""Access tokens for the gateway: created, listed, revoked, found by hash; each with a daily budget for
requests bound to no session.

Only the SHA-256 of a token is stored (a token is 256 random bits, so a fast hash loses nothing); the token
itself exists once, in the answer to `create`. A token's day counter follows the key counters' rule: a
request reserves with one conditional update `used + reserved + n <= daily_budget`, then settles what it
used and gives back the rest.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from butler_skill.core.days import utc_day
from butler_skill.errors import InvalidInput
from butler_skill.store.db import Database
from butler_skill.store.timestamps import parse_ts, ts

Role = Literal["agent", "admin"]
TOKEN_PREFIX = "butler_at_"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AccessToken:
    """A token's record: never its secret."""

    id: str
    name: str
    role: Role
    daily_budget: int
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class TokenDay:
    used: int
    reserved: int


class AccessTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, *, token_id: str, name: str, secret: str, role: Role, daily_budget: int,
               now: datetime) -> AccessToken:
        if daily_budget < 0:
            raise InvalidInput("daily_budget must be at least 0", path="daily_budget")
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO access_tokens(id, name, token_hash, role, daily_budget, created_at) VALUES (?,?,?,?,?,?)",
                (token_id, name, token_hash(secret), role, daily_budget, ts(now)),
            )
        return AccessToken(token_id, name, role, daily_budget, now)

    def list(self, *, include_revoked: bool = False) -> list[AccessToken]:
        sql = "SELECT * FROM access_tokens" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        with self.db.read() as conn:
            return [_token(r) for r in conn.execute(sql + " ORDER BY created_at, id")]

    def get(self, token_id: str) -> AccessToken | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM access_tokens WHERE id = ?", (token_id,)).fetchone()
        return _token(row) if row is not None else None

    def revoke(self, token_id: str, now: datetime) -> AccessToken | None:
        """Revoke a token (again is a no-op); None when there is no such token."""
        with self.db.write() as conn:
            conn.execute("UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                         (ts(now), token_id))
            # Its dashboard sign-ins end with it (they count only while the token is active in any case).
            conn.execute("DELETE FROM dashboard_sessions WHERE token_id = ?", (token_id,))
            row = conn.execute("SELECT * FROM access_tokens WHERE id = ?", (token_id,)).fetchone()
        return _token(row) if row is not None else None

    def find(self, secret: str) -> AccessToken | None:
        """The active token whose hash matches `secret`, else None."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM access_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                               (token_hash(secret),)).fetchone()
        return _token(row) if row is not None else None

    def reserve(self, token: AccessToken, need: int, now: datetime) -> bool:
        """Hold `need` tokens of the token's budget for today, or nothing (False)."""
        day = utc_day(now)
        sql = ("UPDATE access_token_days SET reserved = reserved + ? WHERE token_id = ? AND day = ?"
               " AND used + reserved + ? <= ?")
        args = (need, token.id, day, need, token.daily_budget)
        with self.db.write() as conn:
            if conn.execute(sql, args).rowcount == 1:
                return True
            conn.execute("INSERT INTO access_token_days(token_id, day) VALUES (?, ?)"
                         " ON CONFLICT (token_id, day) DO NOTHING", (token.id, day))
            return conn.execute(sql, args).rowcount == 1

    def settle(self, token_id: str, day: str, *, held: int, used: int) -> None:
        """A request held `held` on `day` and used `used`: count the use, give back the hold."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE access_token_days SET used = used + ?,"
                " reserved = CASE WHEN reserved > ? THEN reserved - ? ELSE 0 END"
                " WHERE token_id = ? AND day = ?", (used, held, held, token_id, day),
            )

    def day(self, token_id: str, now: datetime) -> TokenDay:
        with self.db.read() as conn:
            row = conn.execute("SELECT used, reserved FROM access_token_days WHERE token_id = ? AND day = ?",
                               (token_id, utc_day(now))).fetchone()
        return TokenDay(int(row["used"]), int(row["reserved"])) if row else TokenDay(0, 0)

    def clear_holds(self) -> int:
        """Give back every token hold (a gateway starting has no request in flight; a crashed one left
        its holds behind). One gateway process per state file is assumed for token budgets."""
        with self.db.write() as conn:
            return conn.execute("UPDATE access_token_days SET reserved = 0 WHERE reserved > 0").rowcount


def _token(row: sqlite3.Row) -> AccessToken:
    return AccessToken(
        id=row["id"], name=row["name"], role=row["role"], daily_budget=int(row["daily_budget"]),
        created_at=parse_ts(row["created_at"]),
        revoked_at=parse_ts(row["revoked_at"]) if row["revoked_at"] else None,
    )
