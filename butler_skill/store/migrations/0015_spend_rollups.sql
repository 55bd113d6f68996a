-- An allocation writes one B-tree page per index on sessions (issue 12: allocate_tokens within 3x of one bare
-- conditional UPDATE). sessions_created (0009) served only the dashboard's 30-day spend per label and per task and
-- its change fingerprint. Both are now read without it:
-- Spend of ended sessions per UTC day they were opened on, per label (sessions outside a task) or per task, added
-- to when a session ends (closed, expired, released) and by usage settled after it ended; open sessions are read
-- live through the partial index of open leases (sessions_open_lease). An allocation writes neither.
CREATE TABLE session_spend_days (
    grp        TEXT NOT NULL CHECK (grp IN ('label', 'task')),
    day        TEXT NOT NULL,              -- YYYY-MM-DD, UTC: the day the sessions were opened on
    name       TEXT NOT NULL,              -- the label ('' for none) or the task id
    sessions   BIGINT NOT NULL DEFAULT 0,
    allocated  BIGINT NOT NULL DEFAULT 0,
    used       BIGINT NOT NULL DEFAULT 0,
    cost_pusd  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (grp, day, name)
);
INSERT INTO session_spend_days(grp, day, name, sessions, allocated, used, cost_pusd)
    SELECT CASE WHEN task_id IS NULL THEN 'label' ELSE 'task' END, SUBSTR(created_at, 1, 10),
           COALESCE(task_id, label, ''), COUNT(*), SUM(allocated), SUM(used), SUM(cost_pusd)
    FROM sessions WHERE state <> 'open' GROUP BY 1, 2, 3;
-- The fingerprint's "a session was opened": grants made on a key-day, counted by the conditional reserve itself
-- (the counter's row is written anyway: no other page).
ALTER TABLE key_day_counters ADD COLUMN grants BIGINT NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS sessions_created
