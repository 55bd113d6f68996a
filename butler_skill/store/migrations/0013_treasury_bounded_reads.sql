-- The treasury's rules read only what can change a decision (issue 12): open intents (by treasury_intents_state,
-- 0003) and intents sent in the current UTC month (this index), not every top-up ever made.
CREATE INDEX treasury_intents_sent ON treasury_intents(sent_at) WHERE sent_at IS NOT NULL;
-- treasury_status's recent intents, newest first, without sorting the whole table.
CREATE INDEX treasury_intents_created ON treasury_intents(created_at, id)
