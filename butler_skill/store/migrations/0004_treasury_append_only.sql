-- The treasury ledger is append-only, and an intent's terms never change once stored.
-- Trigger syntax differs, so the file holds both versions (see butler_skill/store/dialect.py).
-- sqlite-only
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
-- end-only
-- postgres-only
-- PostgreSQL: one trigger function raising the message each trigger passes it; TRUNCATE is refused too
-- (it skips row triggers).
CREATE FUNCTION butler_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER treasury_entries_no_update BEFORE UPDATE ON treasury_entries
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('treasury_entries is append-only');
CREATE TRIGGER treasury_entries_no_delete BEFORE DELETE ON treasury_entries
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('treasury_entries is append-only');
CREATE TRIGGER treasury_entries_no_truncate BEFORE TRUNCATE ON treasury_entries
    FOR EACH STATEMENT EXECUTE FUNCTION butler_refuse('treasury_entries is append-only');
CREATE TRIGGER treasury_postings_no_update BEFORE UPDATE ON treasury_postings
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('treasury_postings is append-only');
CREATE TRIGGER treasury_postings_no_delete BEFORE DELETE ON treasury_postings
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('treasury_postings is append-only');
CREATE TRIGGER treasury_postings_no_truncate BEFORE TRUNCATE ON treasury_postings
    FOR EACH STATEMENT EXECUTE FUNCTION butler_refuse('treasury_postings is append-only');
CREATE TRIGGER treasury_intent_events_no_update BEFORE UPDATE ON treasury_intent_events
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('treasury_intent_events is append-only');
CREATE TRIGGER treasury_intent_events_no_delete BEFORE DELETE ON treasury_intent_events
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('treasury_intent_events is append-only');
CREATE TRIGGER treasury_intent_events_no_truncate BEFORE TRUNCATE ON treasury_intent_events
    FOR EACH STATEMENT EXECUTE FUNCTION butler_refuse('treasury_intent_events is append-only');
CREATE TRIGGER treasury_intents_no_delete BEFORE DELETE ON treasury_intents
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('treasury intents are never deleted');
CREATE TRIGGER treasury_intents_no_truncate BEFORE TRUNCATE ON treasury_intents
    FOR EACH STATEMENT EXECUTE FUNCTION butler_refuse('treasury intents are never deleted');
CREATE TRIGGER treasury_intents_frozen_terms BEFORE UPDATE OF id, idempotency_key, provider, destination, amount, currency ON treasury_intents
    FOR EACH ROW EXECUTE FUNCTION butler_refuse('the terms of a treasury intent are immutable');
-- end-only
