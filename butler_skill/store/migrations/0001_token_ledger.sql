-- The token ledger. Counters are keyed by (key_id, UTC day): there is no reset job.
-- Times are ISO 8601 strings in UTC with an explicit offset.
CREATE TABLE key_day_counters (
    key_id      TEXT NOT NULL,
    day         TEXT NOT NULL,            -- YYYY-MM-DD, UTC
    used        INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    reserved    INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    cost_usd    REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    label           TEXT,
    task_id         TEXT,
    key_id          TEXT NOT NULL,
    allocated       INTEGER NOT NULL CHECK (allocated >= 0),
    used            INTEGER NOT NULL DEFAULT 0,
    cost_usd        REAL NOT NULL DEFAULT 0,
    threshold_ratio REAL NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    closed_at       TEXT
);

-- One hold per (session, key leg). `held` is what is still reserved on the counter.
CREATE TABLE reservations (
    id               TEXT PRIMARY KEY,
    session_id       TEXT NOT NULL REFERENCES sessions(id),
    key_id           TEXT NOT NULL,
    day              TEXT NOT NULL,
    granted          INTEGER NOT NULL CHECK (granted >= 0),
    held             INTEGER NOT NULL CHECK (held >= 0),
    used             INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL CHECK (state IN ('active', 'released', 'expired')),
    lease_expires_at TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    ended_at         TEXT
);
CREATE INDEX reservations_active ON reservations(state, lease_expires_at);
CREATE INDEX reservations_session ON reservations(session_id);

-- Settled usage, idempotent by request id.
CREATE TABLE usage_records (
    request_id          TEXT PRIMARY KEY,
    session_id          TEXT NOT NULL REFERENCES sessions(id),
    key_id              TEXT NOT NULL,
    day                 TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cache_read_tokens   INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    total_tokens        INTEGER NOT NULL,
    cost_usd            REAL NOT NULL,
    cost_reported       INTEGER NOT NULL DEFAULT 0,
    estimated           INTEGER NOT NULL DEFAULT 0,
    recorded_at         TEXT NOT NULL
);
CREATE INDEX usage_records_session ON usage_records(session_id);

CREATE TABLE key_cooldowns (
    key_id     TEXT PRIMARY KEY,
    until      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    strikes    INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);

CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    session_id  TEXT,
    key_id      TEXT,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    resolved_at TEXT
);
CREATE UNIQUE INDEX alerts_once_per_session_key ON alerts(session_id, key_id, kind);

-- Append-only history: rotations, alerts raised, expiries.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    session_id TEXT,
    key_id     TEXT,
    data       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_kind ON events(kind, seq)
