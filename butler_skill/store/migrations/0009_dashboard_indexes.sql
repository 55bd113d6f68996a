-- Indexes for the dashboard's read model (butler_skill/store/reports.py): every figure it shows is a bounded,
-- indexed read, never a scan of a whole table.
-- History: the last 30 UTC days of every key's counters (the primary key leads with key_id, not day).
CREATE INDEX key_day_counters_day ON key_day_counters(day);
-- Spend per session label and per task over the last 30 days, and the live-update fingerprint.
CREATE INDEX sessions_created ON sessions(created_at);
CREATE INDEX sessions_updated ON sessions(updated_at);
-- Recent tasks, newest first, and the fingerprint of sub-task changes.
CREATE INDEX tasks_created ON tasks(created_at);
CREATE INDEX subtasks_updated ON subtasks(updated_at);
-- Pending alerts, oldest first, without reading resolved ones.
CREATE INDEX alerts_pending ON alerts(created_at) WHERE resolved_at IS NULL
