-- dynhost run store, schema version 8 (3 added `runs.owner`: `pid:start`
-- of the process working on a running run, so a dead one shows as interrupted;
-- 4 added `runs.resumed_at` and `runs.active_secs`, the run's running time
-- summed over resumes, and `steps.tolerated`, set on failed or skipped steps
-- a tolerant collect ran without; 5 added `runs.config`; 6 added
-- `steps.metadata`, `steps.no_value` and `items.metadata`; 7 added `runs.plan`;
-- 8 added `outputs`). Keys are JSON arrays of mapping keys
-- (outermost first, `[]` outside any map). Values of up to 64 bytes are kept
-- inline (`steps.output`, `items.value`; the hash column is then NULL or '');
-- larger ones live once in `blobs`, addressed by their SHA-256. Version 1
-- stores are upgraded in place by adding the two inline columns. `steps` and `items` are WITHOUT ROWID: their
-- rows live in the primary-key B-tree itself, so recording a step or an item
-- is one B-tree insert instead of two (stores made before this still work:
-- the columns are the same).
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    job         TEXT NOT NULL,
    job_file    TEXT NOT NULL,
    job_hash    TEXT NOT NULL,
    started_at  REAL NOT NULL,
    finished_at REAL,
    status      TEXT NOT NULL,          -- running | succeeded | failed | interrupted
    owner       TEXT,
    resumed_at  REAL,
    active_secs REAL,
    config      TEXT,                   -- JSON: the config each op ran with, by op
    plan        TEXT                    -- JSON: the locked plan (components by digest)
);
CREATE TABLE IF NOT EXISTS steps (
    run_id            TEXT NOT NULL,
    op                TEXT NOT NULL,
    keys              TEXT NOT NULL,
    status            TEXT NOT NULL,    -- succeeded | failed | skipped
    attempts          INTEGER NOT NULL,
    wall_secs         REAL NOT NULL,
    failure_kind      TEXT,
    failure_message   TEXT,
    peak_memory_bytes INTEGER NOT NULL,
    emitted_items     INTEGER NOT NULL,
    emitted_bytes     INTEGER NOT NULL,
    fuel_used         INTEGER,
    input_hash        TEXT,
    inputs            TEXT,             -- JSON: name, kind and size of each input
    output_hash       TEXT,             -- SHA-256 of a value in `blobs`, or NULL
    output            BLOB,             -- the value itself, when small
    memo_key          TEXT,
    stdout            TEXT NOT NULL,
    stderr            TEXT NOT NULL,
    log               TEXT NOT NULL,
    finished_at       REAL NOT NULL,
    tolerated         INTEGER NOT NULL DEFAULT 0,
    metadata          TEXT,             -- JSON array: metadata on the result
    no_value          INTEGER NOT NULL DEFAULT 0, -- returned "no value" (optional result)
    PRIMARY KEY (run_id, op, keys)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS steps_memo ON steps (memo_key) WHERE memo_key IS NOT NULL;
-- Every finished attempt, including failed ones that were retried or resumed.
-- An audit log, read rarely and whole: no index to keep up per step.
CREATE TABLE IF NOT EXISTS attempts (
    run_id      TEXT NOT NULL,
    op          TEXT NOT NULL,
    keys        TEXT NOT NULL,
    status      TEXT NOT NULL,
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    run_id     TEXT NOT NULL,
    op         TEXT NOT NULL,
    keys       TEXT NOT NULL,
    output     TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    key        TEXT NOT NULL,
    value_hash TEXT NOT NULL,           -- SHA-256 of a value in `blobs`, or ''
    value      BLOB,                    -- the value itself, when small
    metadata   TEXT,                    -- JSON array: the item's metadata
    PRIMARY KEY (run_id, op, keys, output, seq)
) WITHOUT ROWID;
-- Named plain outputs of succeeded steps (a row per output set or carrying
-- metadata; an output with no row was not set).
CREATE TABLE IF NOT EXISTS outputs (
    run_id     TEXT NOT NULL,
    op         TEXT NOT NULL,
    keys       TEXT NOT NULL,
    name       TEXT NOT NULL,
    value_hash TEXT NOT NULL,           -- SHA-256 of a value in `blobs`, or ''
    value      BLOB,                    -- the value itself, when small
    metadata   TEXT,                    -- JSON array
    PRIMARY KEY (run_id, op, keys, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    hash  TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);
