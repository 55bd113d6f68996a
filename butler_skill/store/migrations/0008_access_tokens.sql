-- Access tokens for the gateway (`butler serve`): who may send model calls through Butler.
-- Only a SHA-256 of each token is stored (tokens are 256 random bits, so a fast hash is enough); the token
-- itself is printed once, when it is created. `daily_budget` bounds requests bound to no session.
CREATE TABLE access_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL DEFAULT 'agent' CHECK (role IN ('agent', 'admin')),
    daily_budget INTEGER NOT NULL CHECK (daily_budget >= 0),
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);

-- What each token's unbound requests used and hold today (UTC day in the key, as for keys).
CREATE TABLE access_token_days (
    token_id TEXT NOT NULL REFERENCES access_tokens(id),
    day      TEXT NOT NULL,
    used     INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (token_id, day)
);
