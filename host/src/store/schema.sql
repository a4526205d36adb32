-- dynhost run store, schema version 14 (3 added `runs.owner`: `pid:start`
-- of the process working on a running run, so a dead one shows as interrupted;
-- 4 added `runs.resumed_at` and `runs.active_secs`, the run's running time
-- summed over resumes, and `steps.tolerated`, set on failed or skipped steps
-- a tolerant collect ran without; 5 added `runs.config`; 6 added
-- `steps.metadata`, `steps.no_value` and `items.metadata`; 7 added `runs.plan`;
-- 8 added `outputs`; 9 added `steps.position`, `step_counts` and `events`
-- for the web viewer; 10 added `steps.services`; 11 added `steps.memoized`
-- and indexes memo keys of those steps only; 12 added `op_inputs` and
-- `steps.input_heads`, and writes `input_hash` and `memo_key` as 32-byte
-- blobs, hex text before; 13 added `step_packs`, 14 `item_packs`). Keys are JSON arrays of mapping keys
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
    plan        TEXT,                   -- JSON: the locked plan (components by digest)
    counts_unsettled INTEGER NOT NULL DEFAULT 0 -- 1: resumed by a build before schema 15; see step_counts
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
    inputs            TEXT,             -- JSON: size and value of each input (with name, source and kind before schema 12)
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
    position          INTEGER,          -- the step's item among its emitter's, from 0
    services          TEXT,             -- JSON: HTTP requests/bytes and time waited for limits, when any
    memoized          INTEGER NOT NULL DEFAULT 1, -- the op had `cache = true` (rows before schema 11: 1)
    input_heads       INTEGER,          -- `op_inputs.id`: names and sources of `inputs` (schema 12 on)
    PRIMARY KEY (run_id, op, keys)
) WITHOUT ROWID;
-- What `cache = true` looks up. Only memoized steps are indexed: an index
-- entry per step, at a random place in the B-tree, cost a trivial fan-out
-- about half of all the recorder's work. Resume reads `memo_key` by step.
CREATE INDEX IF NOT EXISTS steps_memo ON steps (memo_key) WHERE memoized = 1 AND memo_key IS NOT NULL;

-- Schema 12: each op's inputs (a JSON array of name, source and kind), once
-- per run and op (a new row if a resumed job changed them). A step's
-- `inputs` holds only its own sizes and values, joined to these by
-- `steps.input_heads`: the same 70 bytes in each of a million rows were a
-- tenth of the recorder's work.
CREATE TABLE IF NOT EXISTS op_inputs (
    id     INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    op     TEXT NOT NULL,
    heads  TEXT NOT NULL,
    UNIQUE (run_id, op, heads)
);

-- Schema 13: plain successes of a new run, many to a row (postcard-encoded
-- columns of each, see `store/sqlite/pack.rs`), until the first read of
-- the run writes them as `steps` rows and drops the pack. A `steps` row cost
-- SQLite ~2.3 µs to insert, most of what recording a trivial step cost;
-- readers that must not wait for that (a resume's start) read packs as they
-- are. Rowid order is write order: appending costs no B-tree search.
CREATE TABLE IF NOT EXISTS step_packs (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL,
    op          TEXT NOT NULL,
    finished_at REAL NOT NULL,
    steps       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS step_packs_run ON step_packs (run_id);

-- Schema 14: a new run's emitted items, many to a row, as `step_packs` for
-- steps: a consecutive run of one step's items from `first_seq` on
-- (postcard-encoded output, key, value or its hash, metadata of each),
-- until the first read of the run writes them as `items` rows. An `items`
-- row (the run id, op and keys repeated in each, a B-tree insert) was a
-- third of recording a trivial fan-out. Readers a run needs while it runs
-- or resumes read them as they are. A new attempt of the step drops them
-- as it drops its rows: hence the index by step.
CREATE TABLE IF NOT EXISTS item_packs (
    id        INTEGER PRIMARY KEY,
    run_id    TEXT NOT NULL,
    op        TEXT NOT NULL,
    keys      TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    items     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS item_packs_step ON item_packs (run_id, op, keys);

-- Earlier outcomes of steps recorded again (a resume rerunning a failed
-- step): the `steps` row each replaced. With `steps` this is every recorded
-- outcome. An audit log, read rarely and whole: no index to keep up. (Up to
-- schema 11 every executed step also wrote its row here as it was recorded,
-- a tenth of the recorder's work; those rows are still here.)
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
-- Schema 9: what the web viewer reads without scanning a million rows.
-- The viewer pages an op's failed or skipped steps in emission order (few
-- rows; only they pay for the index). All steps of an op page through the
-- emitter's `items`, whose key is the emission order.
CREATE INDEX IF NOT EXISTS steps_unsuccessful ON steps (run_id, op, status, position)
    WHERE status <> 'succeeded';
-- Steps per run, op, status and tolerance, so the run list and a run's page
-- count without scanning steps. The recorder adds each commit's steps in
-- one upsert per op and status; the triggers below keep the counts exact
-- when a row is replaced (a resume rerunning a failed step) or tolerated.
CREATE TABLE IF NOT EXISTS step_counts (
    run_id    TEXT NOT NULL,
    op        TEXT NOT NULL,
    status    TEXT NOT NULL,
    tolerated INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (run_id, op, status, tolerated)
) WITHOUT ROWID;
-- Append-only: what happened, in order, a row per run start or end and per
-- commit of steps (`n` of them). The viewer follows runs by the highest
-- `seq` it has seen (a cursor), so a page updates while a run runs.
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    at     REAL NOT NULL,
    kind   TEXT NOT NULL,               -- run_started | steps | tolerated | run_finished
    n      INTEGER NOT NULL DEFAULT 0,  -- steps in a `steps` or `tolerated` event
    status TEXT                         -- the run's status, for run events
);
-- Fires for rows INSERT OR REPLACE removes too: the store turns on
-- `recursive_triggers`, which SQLite requires for that.
-- Counts are sums, so the order of these adjustments and the recorder's
-- per-commit additions does not matter (a count may dip below zero
-- within a commit).
CREATE TRIGGER IF NOT EXISTS steps_uncounted AFTER DELETE ON steps BEGIN
    INSERT INTO step_counts (run_id, op, status, tolerated, n)
        VALUES (old.run_id, old.op, old.status, old.tolerated, -1)
        ON CONFLICT (run_id, op, status, tolerated) DO UPDATE SET n = n - 1;
END;
CREATE TRIGGER IF NOT EXISTS steps_recounted AFTER UPDATE OF tolerated ON steps
    WHEN old.tolerated <> new.tolerated BEGIN
    INSERT INTO step_counts (run_id, op, status, tolerated, n)
        VALUES (old.run_id, old.op, old.status, old.tolerated, -1)
        ON CONFLICT (run_id, op, status, tolerated) DO UPDATE SET n = n - 1;
    INSERT INTO step_counts (run_id, op, status, tolerated, n)
        VALUES (new.run_id, new.op, new.status, new.tolerated, 1)
        ON CONFLICT (run_id, op, status, tolerated) DO UPDATE SET n = n + 1;
END;
