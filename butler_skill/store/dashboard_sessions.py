"""Dashboard sign-ins: a browser's session, opened with an access token, held by a random value in its cookie.

The cookie never holds the access token (a cookie jar, a proxy log or a browser profile would then hold the
bearer secret). It holds 256 random bits, made here, returned once by `open` and stored nowhere: the ledger keeps
their SHA-256 (migration 0017), the token that signed in and an absolute expiry. A session counts while it has not
expired and its token is not revoked (one indexed read joins the two, so revoking a token ends its sessions at
once, whatever the dashboard cached); signing out deletes it; each sign-in deletes the sessions that expired.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from butler_skill.store.access_tokens import token_hash
from butler_skill.store.db import Database
from butler_skill.store.timestamps import ts

# A session value travels in a cookie: URL-safe base64 of 32 random bytes (43 characters), with this prefix so a
# person (or the secret scanner's keyword prefilter) can tell what it is.
SESSION_PREFIX = "butler_ds_"


# Stored as access tokens' secrets are: their SHA-256 (256 random bits: a fast hash loses nothing).
session_hash = token_hash


class DashboardSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    def open(self, token_id: str, now: datetime, lifetime: timedelta) -> str:
        """A new session for `token_id` until `now + lifetime`; its value (returned here once, stored hashed)."""
        value = SESSION_PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as conn:
            conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", (ts(now),))
            conn.execute("INSERT INTO dashboard_sessions(session_hash, token_id, created_at, expires_at)"
                         " VALUES (?, ?, ?, ?)", (session_hash(value), token_id, ts(now), ts(now + lifetime)))
        return value

    def token_of(self, value: str, now: datetime) -> str | None:
        """The id of the active token whose session `value` is, if it has not expired; else None."""
        if not value.startswith(SESSION_PREFIX):
            return None
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT s.token_id FROM dashboard_sessions s JOIN access_tokens t ON t.id = s.token_id"
                " WHERE s.session_hash = ? AND s.expires_at > ? AND t.revoked_at IS NULL",
                (session_hash(value), ts(now))).fetchone()
        return None if row is None else row["token_id"]

    def close(self, value: str) -> None:
        """End the session `value` (signing out); an unknown value changes nothing."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM dashboard_sessions WHERE session_hash = ?", (session_hash(value),))
