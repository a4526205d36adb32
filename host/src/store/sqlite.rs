//! [`RunStore`] on an embedded SQLite file (rusqlite, bundled SQLite, WAL), so
//! no server is needed. Writers group many finished steps into one
//! transaction; each step is still whole or absent after a crash.

use super::{
    Digest, PriorStep, RunRecord, RunStatus, RunStore, RunSummary, StepRow, StoreError, StoredItem,
    StoredOutput, Write,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The schema this build writes. Older versions are upgraded in place; a
/// newer one is refused (it was written by a newer dynhost).
const SCHEMA_VERSION: u32 = 15;

/// `MIGRATIONS[i]` upgrades a store of version `i + 1` to `i + 2`; the last
/// one reaches [`SCHEMA_VERSION`].
const MIGRATIONS: [&str; SCHEMA_VERSION as usize - 1] = [
    // 2: values of up to 64 bytes inline.
    "ALTER TABLE steps ADD COLUMN output BLOB; ALTER TABLE items ADD COLUMN value BLOB;",
    // 3: which process owns a running run.
    "ALTER TABLE runs ADD COLUMN owner TEXT;",
    // 4: a run's running time across resumes; tolerated steps.
    "ALTER TABLE runs ADD COLUMN resumed_at REAL; ALTER TABLE runs ADD COLUMN active_secs REAL;
     ALTER TABLE steps ADD COLUMN tolerated INTEGER NOT NULL DEFAULT 0;",
    // 5: the config each op ran with.
    "ALTER TABLE runs ADD COLUMN config TEXT;",
    // 6: metadata on results and items; results that are "no value".
    "ALTER TABLE steps ADD COLUMN metadata TEXT;
     ALTER TABLE steps ADD COLUMN no_value INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE items ADD COLUMN metadata TEXT;",
    // 7: the locked plan each run ran.
    "ALTER TABLE runs ADD COLUMN plan TEXT;",
    // 8: named plain outputs.
    "CREATE TABLE IF NOT EXISTS outputs (
        run_id TEXT NOT NULL, op TEXT NOT NULL, keys TEXT NOT NULL, name TEXT NOT NULL,
        value_hash TEXT NOT NULL, value BLOB, metadata TEXT,
        PRIMARY KEY (run_id, op, keys, name)
     ) WITHOUT ROWID;",
    // 9: the viewer's tables (steps.position, step_counts, events, the
    // triggers and index from schema.sql), with counts of what is stored.
    "ALTER TABLE steps ADD COLUMN position INTEGER;
     CREATE TABLE IF NOT EXISTS step_counts (
        run_id TEXT NOT NULL, op TEXT NOT NULL, status TEXT NOT NULL,
        tolerated INTEGER NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (run_id, op, status, tolerated)
     ) WITHOUT ROWID;
     INSERT INTO step_counts (run_id, op, status, tolerated, n)
        SELECT run_id, op, status, tolerated, count(*) FROM steps GROUP BY run_id, op, status, tolerated;",
    // 10: HTTP requests and waits for limits, per step (issue 16).
    "ALTER TABLE steps ADD COLUMN services TEXT;",
    // 11: only steps of `cache = true` ops are in the memo index. Rows
    // written before read as memoized (they were all indexed), so `cache =
    // true` still finds them; schema.sql then creates the narrower index.
    "ALTER TABLE steps ADD COLUMN memoized INTEGER NOT NULL DEFAULT 1;
     DROP INDEX IF EXISTS steps_memo;",
    // 12: each op's input names and sources once per run (`op_inputs`,
    // from schema.sql); a step's `inputs` keeps only its own values.
    // Hashes are written as 32-byte blobs from here on (a TEXT column
    // keeps a blob as it is; rows written before keep their hex text).
    "ALTER TABLE steps ADD COLUMN input_heads INTEGER;",
    // 13: `step_packs` (from schema.sql). A store of this version is refused
    // by older builds, which would not see packed steps.
    "",
    // 14: `item_packs` (from schema.sql), refused by older builds likewise.
    "",
    // 15: a resumed run's counts are exact as they are written (a rerun
    // step's pack is written out first). A run resumed by an older build
    // may count a rerun step twice until its packs are written out:
    // `counts_unsettled` has the first read of its counts do that.
    "ALTER TABLE runs ADD COLUMN counts_unsettled INTEGER NOT NULL DEFAULT 0;
     UPDATE runs SET counts_unsettled = 1 WHERE resumed_at > started_at;",
];

/// Values up to this size are stored in their row rather than in `blobs`: a
/// reference (a 64-character hash, a blob row and its index entry) would cost
/// more than the value, and a million-key run writes two values per key.
pub(crate) const INLINE_MAX: usize = 64;

/// Packed steps turned into rows per transaction ([`SqliteStore::unpack`],
/// and each commit of a resumed run): 64 packs of 128 steps, tens of ms.
const PACKS_PER_COMMIT: usize = 64;

/// How long to wait for another process's write lock before reporting it.
const BUSY_TIMEOUT: Duration = Duration::from_secs(3);

/// A run store in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Runs this handle created (not resumed): no other process has
    /// written their rows, which spares the writer some deletes.
    fresh_runs: Vec<String>,
    /// Copies the WAL into the database beside this handle's commits, from
    /// the first commit of recorded writes on ([`checkpoint`]).
    checkpointer: Option<checkpoint::Checkpointer>,
    /// Whether starting it was tried (a handle that only reads never is).
    checkpointer_tried: bool,
    /// WAL pages at which a commit asks for a checkpoint.
    checkpoint_pages: i32,
    /// For each run this handle records into again (a resume) while it
    /// has packs: which pack holds each packed step
    /// ([`pack::step_pack_index`]), built at its first commit.
    packed_steps: HashMap<String, HashMap<u64, i64>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and checks its schema.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a file that is not a dynhost store,
    /// [`StoreError::Locked`] if another process holds it too long.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let unwritable = |reason: String| StoreError::Unwritable {
            path: path.to_owned(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| unwritable(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
                unwritable(why_unwritable(path))
            }
            _ => classify(path, &e),
        })?;
        let store = Self {
            conn,
            path: path.to_owned(),
            fresh_runs: Vec::new(),
            checkpointer: None,
            checkpointer_tried: false,
            checkpoint_pages: checkpoint::CHECKPOINT_PAGES,
            packed_steps: HashMap::default(),
        };
        store.init()?;
        Ok(store)
    }

    /// Checks what the file holds before changing anything: a database of
    /// another program, or of a newer dynhost, is refused untouched.
    fn init(&self) -> Result<(), StoreError> {
        let sql = |e: rusqlite::Error| self.error(&e);
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let version = match self.schema_version().map_err(sql)? {
            Found::Empty => None,
            Found::Version(v) => Some(v),
            Found::Foreign(tables) => {
                return Err(StoreError::Foreign {
                    path: self.path.clone(),
                    tables,
                });
            }
        };
        if let Some(v) = version
            && v > SCHEMA_VERSION
        {
            return Err(StoreError::Newer {
                path: self.path.clone(),
                version: v,
                supported: SCHEMA_VERSION,
            });
        }
        self.configure_waiting().map_err(sql)?;
        self.migrate(version)
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen) => StoreError::Unwritable {
                    path: self.path.clone(),
                    reason: why_unwritable(&self.path),
                },
                _ => self.error(&e),
            })
    }

    /// What the file holds, read without writing to it.
    fn schema_version(&self) -> rusqlite::Result<Found> {
        let tables: Vec<String> = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if tables.is_empty() {
            return Ok(Found::Empty);
        }
        let version: Option<String> = if tables.iter().any(|t| t == "meta") {
            self.conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .unwrap_or(None)
        } else {
            None
        };
        Ok(match version.and_then(|v| v.parse().ok()) {
            Some(v) => Found::Version(v),
            None => Found::Foreign(tables),
        })
    }

    /// [`Self::configure`], retried while another process holds the file:
    /// switching a new store to WAL fails at once (the busy timeout does
    /// not apply) when a second run creates the same store at that moment.
    fn configure_waiting(&self) -> rusqlite::Result<()> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match self.configure() {
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => return result,
            }
        }
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        // With WAL, NORMAL still keeps every committed transaction whole after
        // a crash of this process; only an OS crash may lose the last commits.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A million-step run inserts into B-trees far larger than SQLite's
        // default 2 MiB page cache; with 32 MiB the writer stops re-reading
        // the same interior pages from the OS on every insert.
        self.conn.pragma_update(None, "cache_size", -32768)?;
        // Checkpoint every 64 MiB of WAL instead of 4 MiB: the hot B-tree
        // pages a long run rewrites in every transaction are then copied
        // into the database once per checkpoint, not once per few commits.
        // A handle that records runs hands its checkpoints to a thread of
        // their own on its first commit ([`checkpoint`]).
        self.conn
            .pragma_update(None, "wal_autocheckpoint", checkpoint::CHECKPOINT_PAGES)?;
        // Delete triggers (the step counts) fire for rows that INSERT OR
        // REPLACE removes only with this on.
        self.conn.pragma_update(None, "recursive_triggers", "ON")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")
    }

    /// Creates the tables of a new store, or upgrades an older one in place.
    fn migrate(&self, version: Option<u32>) -> rusqlite::Result<()> {
        let Some(mut version) = version else {
            // One immediate transaction: two processes creating the same
            // store at once queue on the write lock (the busy timeout
            // applies) instead of one failing on a lock upgrade.
            self.conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {} INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;",
                include_str!("schema.sql")
            ))?;
            return Ok(());
        };
        // Each step upgrades one version in one transaction, stamping the
        // new version, so an interrupted upgrade resumes where it stopped.
        while let Some(step) = version
            .checked_sub(1)
            .and_then(|i| MIGRATIONS.get(i as usize))
        {
            version += 1;
            self.conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {step} UPDATE meta SET value = '{version}' WHERE key = 'schema_version'; COMMIT;"
            ))?;
        }
        // Tables, indexes and triggers added since are all `IF NOT
        // EXISTS`: the whole schema again completes any upgraded store.
        self.conn.execute_batch(include_str!("schema.sql"))?;
        Ok(())
    }

    /// Appends a run-level event (the viewer's cursor moves).
    fn run_event(&self, run_id: &str, kind: &str, status: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (run_id, at, kind, status) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![run_id, now_secs(), kind, status])
            .map(|_| ())
    }

    /// Writes `run_id`'s packed steps and items (see `store/sqlite/pack.rs`)
    /// as `steps` and `items` rows, so a query sees every step of the run.
    /// Each reader of all of a run's rows calls this first (readers of one
    /// step, the counts or the failures need not); it costs one index probe
    /// once a run has no packs.
    ///
    /// A few packs per transaction: the viewer reads runs while they run,
    /// and the run's recorder must not wait long for the write lock (it
    /// gives up after its busy timeout, 3 s); each pack still becomes its rows
    /// at once. Only packs there when this starts: a read of a running run
    /// never chases its recorder.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file (for example when another
    /// process holds the write lock too long).
    pub fn unpack(&self, run_id: &str) -> Result<(), StoreError> {
        self.unpack_until(run_id, None).map(|_| ())
    }

    /// [`Self::unpack`], stopping between transactions once `deadline`
    /// has passed; returns whether it finished. The viewer writes out a
    /// large run a slice per request this way, so a first look at a
    /// million-step run answers (with its progress) instead of holding the
    /// store, and every other page, for seconds.
    ///
    /// # Errors
    /// As [`Self::unpack`].
    pub fn unpack_until(
        &self,
        run_id: &str,
        deadline: Option<std::time::Instant>,
    ) -> Result<bool, StoreError> {
        type Last = fn(&Connection, &str) -> rusqlite::Result<Option<i64>>;
        type Unpack = fn(&Connection, &str, (usize, i64)) -> rusqlite::Result<usize>;
        let kinds: [(Last, Unpack, usize); 2] = [
            (pack::last_pack, pack::unpack, PACKS_PER_COMMIT),
            (
                pack::last_item_pack,
                pack::unpack_items,
                pack::ITEM_PACKS_PER_COMMIT,
            ),
        ];
        for (last, unpack, per_commit) in kinds {
            let Some(last) = last(&self.conn, run_id).map_err(|e| self.error(&e))? else {
                continue;
            };
            let write = || -> rusqlite::Result<usize> {
                let tx = rusqlite::Transaction::new_unchecked(
                    &self.conn,
                    rusqlite::TransactionBehavior::Immediate,
                )?;
                let unpacked = unpack(&tx, run_id, (per_commit, last))?;
                tx.commit()?;
                Ok(unpacked)
            };
            while write().map_err(|e| self.error(&e))? == per_commit {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// What of `run_id` is still packed (not written out as rows): at most
    /// this many (steps, items). Two counts over index ranges: a pack's
    /// length is inside its bytes, so this counts each as full.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn packed_at_most(&self, run_id: &str) -> Result<(u64, u64), StoreError> {
        let count = |sql: &str| -> rusqlite::Result<u64> {
            self.conn
                .prepare_cached(sql)?
                .query_row([run_id], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        };
        let steps = count("SELECT count(*) FROM step_packs WHERE run_id = ?1");
        let items = count("SELECT count(*) FROM item_packs WHERE run_id = ?1");
        steps
            .and_then(|s| Ok((s, items?)))
            .map(|(s, i)| (s * pack::PACK_STEPS as u64, i * pack::PACK_ITEMS as u64))
            .map_err(|e| self.error(&e))
    }

    /// [`Self::unpack`] for one step of a run: its pack, if the step has no
    /// row yet, and the packs of the items it emitted. A reader of one step
    /// (`show RUN 'op[key]'`, `logs`, the viewer's step page) so writes a
    /// pack's worth of rows, not a million-step run's (seconds).
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn unpack_step(&self, run_id: &str, op: &str, keys: &str) -> Result<(), StoreError> {
        let write = || -> rusqlite::Result<()> {
            let at = params![run_id, op, keys];
            // A row is the step's newest outcome: packs are written only by
            // a run's first attempt, rows after them.
            let has_row = self
                .conn
                .prepare_cached("SELECT 1 FROM steps WHERE run_id = ?1 AND op = ?2 AND keys = ?3")?
                .exists(at)?;
            let pack = match has_row {
                true => None,
                false => pack::pack_of_step(&self.conn, run_id, (op, keys))?,
            };
            let items = self
                .conn
                .prepare_cached(
                    "SELECT 1 FROM item_packs WHERE run_id = ?1 AND op = ?2 AND keys = ?3",
                )?
                .exists(at)?;
            if pack.is_none() && !items {
                return Ok(());
            }
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            if let Some(id) = pack {
                pack::unpack_pack(&tx, run_id, id)?;
            }
            pack::unpack_step_items(&tx, run_id, (op, keys))?;
            tx.commit()
        };
        write().map_err(|e| self.error(&e))
    }

    /// [`Self::unpack`] for every run: what a tool reading the file with SQL
    /// (not through this type) calls first.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn unpack_all(&self) -> Result<(), StoreError> {
        let runs = || -> rusqlite::Result<Vec<String>> {
            self.conn
                .prepare("SELECT run_id FROM step_packs UNION SELECT run_id FROM item_packs")?
                .query_map([], |r| r.get(0))?
                .collect()
        };
        for run in runs().map_err(|e| self.error(&e))? {
            self.unpack(&run)?;
        }
        Ok(())
    }

    /// What `read` reads of `run_id`'s rows and packs as they are, or, if
    /// it finds a step both packed and a row (`None`: what a resume by a
    /// build before schema 15 could leave), what it reads once the run is
    /// written out, which keeps the later outcome of each such step.
    fn read_packed<T>(
        &self,
        run_id: &str,
        read: impl Fn() -> rusqlite::Result<Option<T>>,
    ) -> Result<T, StoreError> {
        if let Some(found) = read().map_err(|e| self.error(&e))? {
            return Ok(found);
        }
        self.unpack(run_id)?;
        read()
            .map_err(|e| self.error(&e))?
            .ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                reason: format!(
                    "run `{run_id}` still has steps recorded twice after writing out its packs"
                ),
            })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: &rusqlite::Error) -> StoreError {
        classify(&self.path, e)
    }

    fn prior_from_row(
        &self,
        run_id: &str,
        op: String,
        keys: String,
        (input_hash, memo_key): (Option<Digest>, Option<Digest>),
        (output, no_value, metadata): (Vec<u8>, bool, Option<String>),
    ) -> rusqlite::Result<PriorStep> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.output, i.key, coalesce(i.value, b.bytes), i.metadata, i.seq FROM items i LEFT JOIN blobs b ON b.hash = i.value_hash
             WHERE i.run_id = ?1 AND i.op = ?2 AND i.keys = ?3 ORDER BY i.output, i.seq",
        )?;
        let mut items = stmt
            .query_map(params![run_id, op, keys], |r| {
                Ok((
                    r.get::<_, i64>(4)?,
                    StoredItem {
                        output: r.get(0)?,
                        key: r.get(1)?,
                        value: Arc::from(r.get::<_, Vec<u8>>(2)?),
                        metadata: r.get::<_, Option<String>>(3)?.map(Arc::from),
                    },
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // Items still packed (nothing has read their run since), some of
        // a step's perhaps (a resume unpacks a few packs per commit).
        let packed = pack::packed_items(&self.conn, run_id, Some((&op, &keys)))?;
        if !packed.is_empty() {
            items.extend(packed.into_iter().flat_map(|(.., found)| found));
            items.sort_by(|(a_seq, a), (b_seq, b)| (&a.output, a_seq).cmp(&(&b.output, b_seq)));
        }
        let items = items.into_iter().map(|(_, item)| item).collect();
        let outputs = self.stored_outputs(run_id, &op, &keys)?;
        Ok(PriorStep {
            op,
            keys: parse_keys(&keys),
            input_hash,
            memo_key,
            output: Arc::from(output),
            no_value,
            metadata: metadata.map(String::into_boxed_str),
            outputs,
            items,
        })
    }

    /// The named plain outputs stored for a step (keys as stored).
    pub(crate) fn stored_outputs(
        &self,
        run_id: &str,
        op: &str,
        keys: &str,
    ) -> rusqlite::Result<Vec<StoredOutput>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.name, coalesce(o.value, b.bytes), o.metadata FROM outputs o LEFT JOIN blobs b ON b.hash = o.value_hash
             WHERE o.run_id = ?1 AND o.op = ?2 AND o.keys = ?3 ORDER BY o.name",
        )?;
        stmt.query_map(params![run_id, op, keys], |r| {
            Ok(StoredOutput {
                name: r.get(0)?,
                value: r.get::<_, Option<Vec<u8>>>(1)?.map(Arc::from),
                metadata: r.get::<_, Option<String>>(2)?.map(String::into_boxed_str),
            })
        })?
        .collect()
    }
}

/// A stored success as [`RunStore::successes`] reads it: op, keys, input
/// hash and memo key, value, "no value" and metadata.
type SuccessRow = (
    String,
    String,
    (Option<Digest>, Option<Digest>),
    (Vec<u8>, bool, Option<String>),
);

/// The columns [`step_row`] reads, from `steps s LEFT JOIN blobs b`;
/// without the captured output (empty strings) unless `logs`, for pages
/// of many steps.
fn step_columns(logs: bool) -> String {
    let captured = if logs {
        "s.stdout, s.stderr, s.log"
    } else {
        "'', '', ''"
    };
    format!(
        "s.op, s.keys, s.status, s.attempts, s.wall_secs, s.failure_kind, s.failure_message,
         s.peak_memory_bytes, s.emitted_items, s.emitted_bytes, s.fuel_used,
         length(coalesce(s.output, b.bytes)), {captured}, s.inputs, s.tolerated, s.metadata, s.no_value, s.services,
         (SELECT h.heads FROM op_inputs h WHERE h.id = s.input_heads)"
    )
}

/// A [`StepRow`] from the columns of [`step_columns`].
fn step_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRow> {
    step_row_at(r, 0)
}

/// [`step_row`] for a query whose [`step_columns`] start at column `at`.
fn step_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<StepRow> {
    let r = Shifted { row: r, at };
    Ok(StepRow {
        op: r.get(0)?,
        keys: parse_keys(&r.get::<String>(1)?),
        status: r.get(2)?,
        attempts: r.get(3)?,
        wall_secs: r.get(4)?,
        failure_kind: r.get(5)?,
        failure_message: r.get(6)?,
        peak_memory_bytes: r.get::<i64>(7)? as u64,
        emitted_items: r.get::<i64>(8)? as u64,
        emitted_bytes: r.get::<i64>(9)? as u64,
        fuel_used: r.get::<Option<i64>>(10)?.map(|f| f as u64),
        output_bytes: r.get::<Option<i64>>(11)?.map(|n| n as u64),
        stdout: r.get(12)?,
        stderr: r.get(13)?,
        log: r.get(14)?,
        inputs: inputs_json(r.get(15)?, r.get::<Option<String>>(20)?.as_deref()),
        tolerated: r.get::<i64>(16)? != 0,
        metadata: r.get(17)?,
        no_value: r.get(18)?,
        services: r.get(19)?,
    })
}

/// A step's input summary as `show` and the viewer read it: per input its
/// name, source and kind (the op's `heads`, stored once per run since
/// schema 12) with this step's size and value. Rows written before carry
/// it all in `inputs`; a summary that does not parse is shown as stored.
pub(super) fn inputs_json(values: Option<String>, heads: Option<&str>) -> Option<String> {
    use serde_json::Value;
    let values = values?;
    let Some(heads) = heads else {
        return Some(values);
    };
    let parse = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(list)) => Some(list),
        _ => None,
    };
    let (Some(mut merged), Some(own)) = (parse(heads), parse(&values)) else {
        return Some(values);
    };
    for (head, own) in merged.iter_mut().zip(own) {
        let (Value::Object(head), Value::Object(own)) = (head, own) else {
            continue;
        };
        // A small value's size is its hex's half.
        if let Some(hex) = own.get("hex").and_then(Value::as_str) {
            head.insert("bytes".into(), Value::from(hex.len() / 2));
        }
        head.extend(own);
    }
    Some(Value::Array(merged).to_string())
}

/// A digest column (input hash, memo key): 32 bytes, or the hex text of
/// stores before schema 12; anything else reads as none (it never matches,
/// so the step runs again).
fn digest(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<Digest>> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(column)? {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Digest::from_column(bytes),
        _ => None,
    })
}

impl rusqlite::ToSql for Digest {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Blob(&self.0),
        ))
    }
}

/// A row read from column `at` on: `get(0)` is column `at`.
struct Shifted<'a, 'b> {
    row: &'a rusqlite::Row<'b>,
    at: usize,
}

impl Shifted<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, i: usize) -> rusqlite::Result<T> {
        self.row.get(self.at + i)
    }
}

fn keys_json<K: serde::Serialize>(keys: &[K]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_keys(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Maps SQLite's error codes to the errors users can act on.
/// What the file holds.
enum Found {
    /// No tables: a new (or empty) file.
    Empty,
    /// A dynhost store of this schema version.
    Version(u32),
    /// Tables of another program.
    Foreign(Vec<String>),
}

/// Why SQLite could not open or write `path`, in a user's words.
fn why_unwritable(path: &Path) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    match tempfile::tempfile_in(dir) {
        Err(e) => format!("cannot write in `{}`: {e}", dir.display()),
        Ok(_) => format!("cannot open `{}` for writing", path.display()),
    }
}

fn classify(path: &Path, e: &rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path,
            reason: e.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        _ if matches!(e, rusqlite::Error::InvalidParameterName(_)) => StoreError::Corrupt {
            path,
            reason: e.to_string(),
        },
        _ => StoreError::Io {
            path,
            reason: e.to_string(),
        },
    }
}

impl RunStore for SqliteStore {
    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        let existed = self
            .conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [&run.id], |_| Ok(()))
            .optional()
            .map_err(|e| self.error(&e))?
            .is_some();
        if !existed {
            self.fresh_runs.push(run.id.clone());
        }
        self.conn
            .execute(
                "INSERT INTO runs (id, job, job_file, job_hash, started_at, status, owner, resumed_at, active_secs, config, plan)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?5, 0, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET job_hash = excluded.job_hash, status = 'running', finished_at = NULL,
                   owner = excluded.owner, resumed_at = excluded.started_at, config = excluded.config, plan = excluded.plan",
                params![run.id, run.job, run.job_file, run.job_hash, now_secs(), super::this_process(), run.config, run.plan],
            )
            .and_then(|_| self.run_event(&run.id, "run_started", "running"))
            .map_err(|e| self.error(&e))
    }

    fn record(&mut self, run_id: &str, writes: &[Write]) -> Result<(), StoreError> {
        if !self.checkpointer_tried {
            self.checkpointer_tried = true;
            self.checkpointer =
                checkpoint::Checkpointer::start(&mut self.conn, &self.path, self.checkpoint_pages);
        }
        let path = self.path.clone();
        // Immediate: the write lock is taken (or waited for) at BEGIN. A
        // deferred transaction that reads before it writes fails at once,
        // without waiting, when another run of the store committed between
        // (two runs of one store record side by side).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(&path, &e))?;
        let now = now_secs();
        // New rows per op and status, added to `step_counts` once per commit
        // (a trigger per row cost the recorder ~40% on a trivial fan-out).
        let mut counted: Vec<(&str, &'static str, i64)> = Vec::new();
        let mut tolerated = 0;
        for write in writes {
            match write {
                Write::Step(step) => {
                    let status = step.status.as_str();
                    match counted
                        .iter_mut()
                        .find(|(op, s, _)| *op == &*step.op && *s == status)
                    {
                        Some((_, _, n)) => *n += 1,
                        None => counted.push((&step.op, status, 1)),
                    }
                }
                Write::Tolerated(steps) => tolerated += steps.len(),
                Write::Items(_) => {}
            }
        }
        let fresh = self.fresh_runs.iter().any(|r| r == run_id);
        // A run recorded into again (a resume) gets its packed steps as rows,
        // a few packs per commit: all at once would hold a resumed
        // million-step run's first commit (and so its coordinator) for
        // seconds. A step run again has its pack written out first, so its
        // new row replaces the old one as any row does: the counts stay
        // exact, and a reader need not write the run out to trust them.
        if !fresh {
            let mut write_out = || -> rusqlite::Result<()> {
                let index = match self.packed_steps.entry(run_id.to_owned()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(pack::step_pack_index(&tx, run_id)?)
                    }
                };
                let mut rerun: Vec<i64> = writes
                    .iter()
                    .filter_map(|write| match write {
                        Write::Step(s) if !index.is_empty() => index
                            .get(&pack::step_hash(&s.op, &keys_json(&s.keys)))
                            .copied(),
                        _ => None,
                    })
                    .collect();
                rerun.sort_unstable();
                rerun.dedup();
                for id in rerun {
                    pack::unpack_pack(&tx, run_id, id)?;
                }
                if pack::unpack(&tx, run_id, (PACKS_PER_COMMIT, i64::MAX))? < PACKS_PER_COMMIT {
                    // None left (a reader may have written some out).
                    *index = HashMap::default();
                }
                pack::unpack_items(&tx, run_id, (pack::ITEM_PACKS_PER_COMMIT, i64::MAX)).map(|_| ())
            };
            write_out().map_err(|e| classify(&path, &e))?;
        }
        let mut writer = write::Writer::new(&tx, run_id, now, fresh);
        for write in writes {
            match write {
                Write::Step(step) => writer.step(step),
                Write::Items(items) => writer.items(
                    &items.op,
                    keys_json(&items.keys),
                    items.first_seq,
                    &items.items,
                ),
                Write::Tolerated(steps) => steps
                    .iter()
                    .try_for_each(|(op, keys)| writer.tolerated(op, keys)),
            }
            .map_err(|e| classify(&path, &e))?;
        }
        writer.finish().map_err(|e| classify(&path, &e))?;
        drop(writer);
        let steps: i64 = counted.iter().map(|(_, _, n)| n).sum();
        let count = || -> rusqlite::Result<()> {
            for (op, status, n) in &counted {
                tx.prepare_cached(
                    "INSERT INTO step_counts (run_id, op, status, tolerated, n) VALUES (?1, ?2, ?3, 0, ?4)
                     ON CONFLICT (run_id, op, status, tolerated) DO UPDATE SET n = n + excluded.n",
                )?
                .execute(params![run_id, op, status, n])?;
            }
            for (kind, n) in [("steps", steps), ("tolerated", tolerated as i64)] {
                if n > 0 {
                    tx.prepare_cached(
                        "INSERT INTO events (run_id, at, kind, n) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![run_id, now, kind, n])?;
                }
            }
            Ok(())
        };
        count().map_err(|e| classify(&path, &e))?;
        tx.commit().map_err(|e| classify(&path, &e))
    }

    fn finish_run(&mut self, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
        self.packed_steps.remove(run_id);
        let status = status.as_str();
        self.conn
            .execute(
                "UPDATE runs SET status = ?1, finished_at = ?2,
                   active_secs = coalesce(active_secs, 0) + ?2 - coalesce(resumed_at, started_at)
                 WHERE id = ?3",
                params![status, now_secs(), run_id],
            )
            .and_then(|_| self.run_event(run_id, "run_finished", status))
            .map_err(|e| self.error(&e))
    }

    fn run(&self, run_id: &str) -> Result<RunSummary, StoreError> {
        super::find_run(self.runs()?, run_id, &self.path)
    }

    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let query = || -> rusqlite::Result<Vec<RunSummary>> {
            let mut stmt = self.conn.prepare(
                "SELECT r.id, r.job, r.job_file, r.status, r.started_at, r.finished_at, r.owner,
                   (SELECT coalesce(sum(n), 0) FROM step_counts c WHERE c.run_id = r.id AND c.status = 'succeeded'),
                   (SELECT coalesce(sum(n), 0) FROM step_counts c WHERE c.run_id = r.id AND c.status = 'failed' AND c.tolerated = 0),
                   (SELECT coalesce(sum(n), 0) FROM step_counts c WHERE c.run_id = r.id AND c.status = 'skipped' AND c.tolerated = 0),
                   (SELECT coalesce(sum(n), 0) FROM step_counts c WHERE c.run_id = r.id AND c.tolerated = 1),
                   r.active_secs, r.config
                 FROM runs r ORDER BY r.started_at DESC, r.id DESC",
            )?;
            stmt.query_map([], |r| {
                let mut status: String = r.get(3)?;
                let owner: Option<String> = r.get(6)?;
                let owner_pid = match status.as_str() {
                    "running" => owner.as_deref().and_then(super::live_owner),
                    _ => None,
                };
                // A run left `running` by a process that is gone (killed,
                // power lost) was interrupted; nothing is written here.
                if status == "running" && owner_pid.is_none() {
                    status = RunStatus::Interrupted.as_str().to_owned();
                }
                Ok(RunSummary {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    job_file: r.get(2)?,
                    status,
                    owner_pid,
                    started_at: r.get(4)?,
                    finished_at: r.get(5)?,
                    succeeded: r.get::<_, i64>(7)? as u64,
                    failed: r.get::<_, i64>(8)? as u64,
                    skipped: r.get::<_, i64>(9)? as u64,
                    tolerated: r.get::<_, i64>(10)? as u64,
                    active_secs: r.get(11)?,
                    config: r.get(12)?,
                })
            })?
            .collect()
        };
        query().map_err(|e| self.error(&e))
    }

    fn steps(&self, run_id: &str) -> Result<Vec<StepRow>, StoreError> {
        // Rows and packed steps as they are (writing a million packed steps
        // out cost seconds more than reading them), in one read
        // transaction so a step another reader writes out meanwhile is
        // read once.
        let query = || -> rusqlite::Result<Option<Vec<StepRow>>> {
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Deferred,
            )?;
            // Packed first: their hashes tell whether a row is also packed.
            let (mut steps, packed) = pack::packed_rows(&tx, run_id)?;
            let mut twice = false;
            let mut stmt = tx.prepare(&format!(
                "SELECT s.keys, {} FROM steps s LEFT JOIN blobs b ON b.hash = s.output_hash
                 WHERE s.run_id = ?1",
                step_columns(true)
            ))?;
            let mut rows = stmt.query([run_id])?;
            while let Some(r) = rows.next()? {
                let row = step_row_at(r, 1)?;
                twice |= !packed.is_empty()
                    && packed.contains(&pack::step_hash(&row.op, r.get_ref(0)?.as_str()?));
                steps.push(row);
            }
            drop(rows);
            drop(stmt);
            tx.commit()?;
            if twice {
                return Ok(None);
            }
            // As `ORDER BY op, keys`: keys of one op are equally deep and
            // hold no `"`, so they sort as their stored JSON does.
            steps.sort_unstable_by(|a, b| (&a.op, &a.keys).cmp(&(&b.op, &b.keys)));
            Ok(Some(steps))
        };
        self.read_packed(run_id, query)
    }

    fn successes(&self, run_id: &str) -> Result<Vec<PriorStep>, StoreError> {
        let query = || -> rusqlite::Result<Vec<PriorStep>> {
            let mut stmt = self.conn.prepare(
                "SELECT s.op, s.keys, s.input_hash, s.memo_key, coalesce(s.output, b.bytes), s.no_value, s.metadata
                 FROM steps s LEFT JOIN blobs b ON b.hash = s.output_hash
                 WHERE s.run_id = ?1 AND s.status = 'succeeded' AND coalesce(s.output, b.bytes) IS NOT NULL",
            )?;
            let rows = stmt
                .query_map([run_id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        (digest(r, 2)?, digest(r, 3)?),
                        (r.get::<_, Vec<u8>>(4)?, r.get(5)?, r.get(6)?),
                    ))
                })?
                .collect::<rusqlite::Result<Vec<SuccessRow>>>()?;
            // Packed steps are read as they are (unpacking 100,000 would
            // delay the resume's first step by a quarter of a second). A
            // step with a row too was recorded again after it was packed (a
            // resume stopped before unpacking it): the row is its outcome.
            let mut packed = pack::successes(&self.conn, run_id)?;
            if !packed.is_empty() {
                let recorded: std::collections::HashSet<(String, String)> = self
                    .conn
                    .prepare("SELECT op, keys FROM steps WHERE run_id = ?1")?
                    .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                packed.retain(|(op, keys, ..)| !recorded.contains(&(op.clone(), keys.clone())));
            }
            let rows = packed.into_iter().chain(rows).collect::<Vec<SuccessRow>>();
            // Every item and named output of the run in one pass each
            // (not two queries per step: a 100,000-step resume spent
            // seconds in them before its first step ran).
            let mut items: HashMap<(String, String), Vec<(i64, StoredItem)>> = HashMap::default();
            let mut stmt = self.conn.prepare(
                "SELECT i.op, i.keys, i.output, i.key, coalesce(i.value, b.bytes), i.metadata, i.seq
                 FROM items i LEFT JOIN blobs b ON b.hash = i.value_hash
                 WHERE i.run_id = ?1 ORDER BY i.op, i.keys, i.output, i.seq",
            )?;
            let mut found = stmt.query([run_id])?;
            while let Some(r) = found.next()? {
                items.entry((r.get(0)?, r.get(1)?)).or_default().push((
                    r.get(6)?,
                    StoredItem {
                        output: r.get(2)?,
                        key: r.get(3)?,
                        value: Arc::from(r.get::<_, Vec<u8>>(4)?),
                        metadata: r.get::<_, Option<String>>(5)?.map(Arc::from),
                    },
                ));
            }
            // Packed items, read as they are (as packed steps above); a
            // step's may be partly rows (a resume unpacks a few packs per
            // commit), so its items are put back in order.
            let packed = pack::packed_items(&self.conn, run_id, None)?;
            if !packed.is_empty() {
                for (op, keys, found) in packed {
                    items.entry((op, keys)).or_default().extend(found);
                }
                for step in items.values_mut() {
                    step.sort_by(|(a_seq, a), (b_seq, b)| {
                        (&a.output, a_seq).cmp(&(&b.output, b_seq))
                    });
                }
            }
            let mut outputs: HashMap<(String, String), Vec<StoredOutput>> = HashMap::default();
            let mut stmt = self.conn.prepare(
                "SELECT o.op, o.keys, o.name, coalesce(o.value, b.bytes), o.metadata
                 FROM outputs o LEFT JOIN blobs b ON b.hash = o.value_hash
                 WHERE o.run_id = ?1 ORDER BY o.op, o.keys, o.name",
            )?;
            let mut found = stmt.query([run_id])?;
            while let Some(r) = found.next()? {
                outputs
                    .entry((r.get(0)?, r.get(1)?))
                    .or_default()
                    .push(StoredOutput {
                        name: r.get(2)?,
                        value: r.get::<_, Option<Vec<u8>>>(3)?.map(Arc::from),
                        metadata: r.get::<_, Option<String>>(4)?.map(String::into_boxed_str),
                    });
            }
            Ok(rows
                .into_iter()
                .map(
                    |(op, keys, (input_hash, memo_key), (output, no_value, metadata))| {
                        let at = (op, keys);
                        let step_items = items
                            .remove(&at)
                            .map(|i| i.into_iter().map(|(_, item)| item).collect())
                            .unwrap_or_default();
                        let step_outputs = outputs.remove(&at).unwrap_or_default();
                        let (op, keys) = at;
                        PriorStep {
                            keys: parse_keys(&keys),
                            op,
                            input_hash,
                            memo_key,
                            output: Arc::from(output),
                            no_value,
                            metadata: metadata.map(String::into_boxed_str),
                            outputs: step_outputs,
                            items: step_items,
                        }
                    },
                )
                .collect())
        };
        query().map_err(|e| self.error(&e))
    }

    fn memoized(&self, memo_key: &Digest) -> Result<Option<PriorStep>, StoreError> {
        let query = || -> rusqlite::Result<Option<PriorStep>> {
            // Stored as 32 bytes since schema 12, as hex text before.
            let row = self
                .conn
                .query_row(
                    "SELECT s.run_id, s.op, s.keys, s.input_hash, coalesce(s.output, b.bytes), s.no_value, s.metadata
                     FROM steps s LEFT JOIN blobs b ON b.hash = s.output_hash
                     WHERE s.memo_key IN (?1, ?2) AND s.memoized = 1 AND s.status = 'succeeded' AND coalesce(s.output, b.bytes) IS NOT NULL LIMIT 1",
                    params![memo_key, memo_key.hex()],
                    |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, digest(r, 3)?, (r.get::<_, Vec<u8>>(4)?, r.get(5)?, r.get(6)?))),
                )
                .optional()?;
            row.map(|(run, op, keys, input, out)| {
                self.prior_from_row(&run, op, keys, (input, Some(*memo_key)), out)
            })
            .transpose()
        };
        query().map_err(|e| self.error(&e))
    }
}

pub(crate) mod browse;
mod checkpoint;
mod pack;
pub(crate) mod read;
mod write;

#[cfg(test)]
pub(crate) mod tests;
