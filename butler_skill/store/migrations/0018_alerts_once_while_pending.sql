-- An alert is raised once per session, key and kind while it is pending, not once for good: overrun alerts now end
-- with their UTC day (core/alerts.py), and a session that takes the same key past its limit again on a later day
-- must raise a new one (the unique index over every row swallowed it: ON CONFLICT DO NOTHING, and nothing pending).
DROP INDEX IF EXISTS alerts_once_per_session_key;
CREATE UNIQUE INDEX alerts_once_while_pending ON alerts(session_id, key_id, kind) WHERE resolved_at IS NULL;
