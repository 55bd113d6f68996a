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

-- A session holds one reservation (its "leg") on its current key: what was granted there, what is
-- still held on the counter, what was used, and the lease after which an unreported hold is released.
-- Rotation moves the leg to another key; the rotation event keeps the old leg's figures.
CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    label            TEXT,
    task_id          TEXT,
    key_id           TEXT NOT NULL,
    allocated        INTEGER NOT NULL CHECK (allocated >= 0),
    used             INTEGER NOT NULL DEFAULT 0,
    cost_usd         REAL NOT NULL DEFAULT 0,
    threshold_ratio  REAL NOT NULL,
    leg_day          TEXT NOT NULL,
    leg_granted      INTEGER NOT NULL CHECK (leg_granted >= 0),
    leg_held         INTEGER NOT NULL CHECK (leg_held >= 0),
    leg_used         INTEGER NOT NULL DEFAULT 0,
    lease_expires_at TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('open', 'closed', 'expired')),
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    closed_at        TEXT
) WITHOUT ROWID;
CREATE INDEX sessions_open_lease ON sessions(lease_expires_at) WHERE state = 'open';
CREATE INDEX sessions_task ON sessions(task_id) WHERE task_id IS NOT NULL;

-- Settled usage, idempotent by request id.
CREATE TABLE usage_records (
    request_id          TEXT PRIMARY KEY,
    session_id          TEXT NOT NULL,
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
