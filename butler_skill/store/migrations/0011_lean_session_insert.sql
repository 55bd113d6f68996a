-- An allocation inserts one sessions row, and every index on sessions is one more B-tree page that its commit
-- writes (issue 12: allocate_tokens within 3x of one bare conditional UPDATE). Two of them only ordered reads
-- that other indexes answer as well:
-- sessions_updated (0009) served the dashboard's change fingerprint alone, which now reads the newest
-- created_at (sessions_created), the latest open lease and the count of open sessions (sessions_open_lease),
-- beside today's counters and the newest event: every change to a session moves one of them.
DROP INDEX IF EXISTS sessions_updated;
-- sessions_open_created (0010) listed open sessions in created order; the ledger now reads the open sessions
-- through the partial index of open leases and sorts them itself (never a walk over every session ever opened).
DROP INDEX IF EXISTS sessions_open_created;
