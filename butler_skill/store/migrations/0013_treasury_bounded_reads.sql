-- The treasury's rules read only what can change a decision (issue 12): open intents and intents sent in the
-- current UTC month, not every top-up ever made. Open intents have their own partial index (its WHERE is the
-- very term store/treasury.py queries with, literal for literal: a planner uses a partial index only then,
-- whatever its statistics say about the state column).
CREATE INDEX treasury_intents_open ON treasury_intents(created_at)
    WHERE state IN ('approved', 'proposed', 'sending', 'submitted', 'unknown');
CREATE INDEX treasury_intents_sent ON treasury_intents(sent_at) WHERE sent_at IS NOT NULL;
-- treasury_status's recent intents, newest first, without sorting the whole table.
CREATE INDEX treasury_intents_created ON treasury_intents(created_at, id)
