-- Reads that answer today's question must not scan history (issue 12). Pending alerts and today's counters
-- are indexed by 0009 (alerts_pending, key_day_counters_day).
-- Cooldowns still running: allocation reads these, not every cooldown a key ever had.
CREATE INDEX key_cooldowns_until ON key_cooldowns(until);
-- Open sessions in the order get_status lists them: without it the planner walks every session ever opened
-- through sessions_created (0009) to avoid a sort.
CREATE INDEX sessions_open_created ON sessions(created_at, id) WHERE state = 'open';
