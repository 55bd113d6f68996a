-- The treasury: payment intents and their history, a double-entry ledger, and the failure breaker.
-- Amounts are decimal strings (never REAL: 0.1 + 0.2 must be 0.3). Times are fixed-width UTC text.
-- The append-only triggers on the ledger tables are created by butler_skill/store/treasury.py, because
-- the migration runner splits statements on semicolons, which a trigger body needs.

-- A purchase is an intent first, stored with its idempotency key before any call to the wallet provider.
CREATE TABLE treasury_intents (
    id               TEXT PRIMARY KEY,            -- also Circle's refId
    idempotency_key  TEXT NOT NULL UNIQUE,        -- UUID v4, sent with every attempt, never replaced
    provider         TEXT NOT NULL,
    destination      TEXT NOT NULL,
    amount           TEXT NOT NULL,               -- USDC, decimal string
    currency         TEXT NOT NULL DEFAULT 'USDC',
    reason           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'sending', 'submitted',
                                                    'unknown', 'complete', 'failed', 'failed_safe')),
    auto_approved    INTEGER NOT NULL DEFAULT 0,
    approved_by      TEXT,
    approved_at      TEXT,
    request          TEXT,                        -- the transfer body first sent (no ciphertext), re-sent as is
    provider_tx_id   TEXT,                        -- Circle's transaction id
    provider_state   TEXT,                        -- Circle's last reported state
    attempts         INTEGER NOT NULL DEFAULT 0,
    failure          TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    sent_at          TEXT,                        -- when it was claimed for sending: the cap window it counts in
    settled_at       TEXT
);
CREATE INDEX treasury_intents_state ON treasury_intents(state);
CREATE INDEX treasury_intents_provider ON treasury_intents(provider, state);
CREATE UNIQUE INDEX treasury_intents_tx ON treasury_intents(provider_tx_id) WHERE provider_tx_id IS NOT NULL;

-- Every state change of an intent, who made it and why. Append-only.
CREATE TABLE treasury_intent_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    intent_id   TEXT NOT NULL REFERENCES treasury_intents(id),
    at          TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX treasury_intent_events_intent ON treasury_intent_events(intent_id, seq);

-- One posting per (intent, kind): recording the same outcome twice is a no-op, not a second entry.
CREATE TABLE treasury_postings (
    id               TEXT PRIMARY KEY,
    intent_id        TEXT NOT NULL REFERENCES treasury_intents(id),
    kind             TEXT NOT NULL CHECK (kind IN ('transfer', 'fee')),
    idempotency_key  TEXT NOT NULL,
    provider_tx_id   TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    UNIQUE (intent_id, kind)
);

-- The entries: debits positive, credits negative, and each posting sums to zero per currency. Append-only.
CREATE TABLE treasury_entries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    posting_id       TEXT NOT NULL REFERENCES treasury_postings(id),
    intent_id        TEXT NOT NULL REFERENCES treasury_intents(id),
    account          TEXT NOT NULL,
    currency         TEXT NOT NULL,
    amount           TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    provider_tx_id   TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX treasury_entries_intent ON treasury_entries(intent_id);
CREATE INDEX treasury_entries_account ON treasury_entries(account, currency);

-- Consecutive failures. Once tripped, only a person resets it.
CREATE TABLE treasury_breaker (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    consecutive_failures  INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    tripped_at            TEXT,
    reset_at              TEXT,
    reset_by              TEXT,
    updated_at            TEXT NOT NULL
);
INSERT INTO treasury_breaker (id, consecutive_failures, updated_at) VALUES (1, 0, '1970-01-01T00:00:00.000000Z')
