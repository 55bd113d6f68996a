-- Reads that answer today's question must not scan history (issue 12).
-- Pending alerts: a partial index, so get_status reads the pending ones only, not every alert ever raised.
CREATE INDEX alerts_pending ON alerts(created_at, id) WHERE resolved_at IS NULL;
-- Today's counters for every key: by day first (the primary key is (key_id, day)).
CREATE INDEX key_day_counters_day ON key_day_counters(day, key_id);
-- Cooldowns still running: allocation reads these, not every cooldown a key ever had.
CREATE INDEX key_cooldowns_until ON key_cooldowns(until);
