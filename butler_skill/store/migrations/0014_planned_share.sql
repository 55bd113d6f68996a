-- A retry is capped at the share its sub-task was planned with (core/allocation.retry_shares). `share` is the
-- current round's share and a retry overwrites it, so the planned one is kept apart: a second retry is then capped
-- by the plan, not by the first retry's smaller share. Rows planned before this migration start from their
-- current share (what was planned is no longer known for a sub-task already retried).
ALTER TABLE subtasks ADD COLUMN planned_share INTEGER;
UPDATE subtasks SET planned_share = share;
