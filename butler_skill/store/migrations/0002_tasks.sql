-- Tasks split into sub-tasks, each with its own session (and so its own reservation) in the token ledger.
-- A sub-task's tokens are its session's settled usage: aggregates are read from the ledger, not copied.
CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    budget      INTEGER NOT NULL CHECK (budget > 0),
    mode        TEXT NOT NULL CHECK (mode IN ('spawn', 'plan')),
    options     TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE subtasks (
    task_id          TEXT NOT NULL REFERENCES tasks(id),
    id               TEXT NOT NULL,
    position         INTEGER NOT NULL,
    round            INTEGER NOT NULL DEFAULT 1,
    title            TEXT NOT NULL,
    text             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    priority         TEXT NOT NULL,
    weight_bp        INTEGER NOT NULL,
    estimated_tokens INTEGER NOT NULL,
    share            INTEGER NOT NULL,
    depends_on       TEXT NOT NULL DEFAULT '[]',
    session_id       TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'success', 'failed', 'timeout', 'cancelled')),
    output           TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (task_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX subtasks_session ON subtasks(session_id);

-- Every call made for a sub-task, in order: what key, what came back.
CREATE TABLE attempts (
    task_id       TEXT NOT NULL,
    subtask_id    TEXT NOT NULL,
    n             INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    request_id    TEXT,
    tokens        INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    started_at    TEXT NOT NULL,
    ended_at      TEXT NOT NULL,
    PRIMARY KEY (task_id, subtask_id, n)
) WITHOUT ROWID
