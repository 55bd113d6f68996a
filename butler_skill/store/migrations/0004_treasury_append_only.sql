-- The treasury ledger is append-only, and an intent's terms never change once stored.
CREATE TRIGGER treasury_entries_no_update BEFORE UPDATE ON treasury_entries
BEGIN
    SELECT RAISE(ABORT, 'treasury_entries is append-only');
END;

CREATE TRIGGER treasury_entries_no_delete BEFORE DELETE ON treasury_entries
BEGIN
    SELECT RAISE(ABORT, 'treasury_entries is append-only');
END;

CREATE TRIGGER treasury_postings_no_update BEFORE UPDATE ON treasury_postings
BEGIN
    SELECT RAISE(ABORT, 'treasury_postings is append-only');
END;

CREATE TRIGGER treasury_postings_no_delete BEFORE DELETE ON treasury_postings
BEGIN
    SELECT RAISE(ABORT, 'treasury_postings is append-only');
END;

CREATE TRIGGER treasury_intent_events_no_update BEFORE UPDATE ON treasury_intent_events
BEGIN
    SELECT RAISE(ABORT, 'treasury_intent_events is append-only');
END;

CREATE TRIGGER treasury_intent_events_no_delete BEFORE DELETE ON treasury_intent_events
BEGIN
    SELECT RAISE(ABORT, 'treasury_intent_events is append-only');
END;

CREATE TRIGGER treasury_intents_no_delete BEFORE DELETE ON treasury_intents
BEGIN
    SELECT RAISE(ABORT, 'treasury intents are never deleted');
END;

CREATE TRIGGER treasury_intents_frozen_terms BEFORE UPDATE OF id, idempotency_key, provider, destination, amount, currency ON treasury_intents
BEGIN
    SELECT RAISE(ABORT, 'the terms of a treasury intent are immutable');
END;
