-- Dashboard sign-ins (`butler serve`'s /dashboard): the browser's cookie holds a random session value, never the
-- access token it signed in with. Only a SHA-256 of the value is stored (256 random bits: a fast hash loses
-- nothing), with the token that signed in and an absolute expiry. A session counts only while its token is
-- active (revoking the token ends its sessions at once) and until it expires; signing out deletes it.
CREATE TABLE dashboard_sessions (
    session_hash TEXT PRIMARY KEY,
    token_id     TEXT NOT NULL REFERENCES access_tokens(id),
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
-- Expired sessions are deleted by expiry (each sign-in clears them), a revoked token's by its id.
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions(expires_at);
CREATE INDEX dashboard_sessions_token ON dashboard_sessions(token_id)
