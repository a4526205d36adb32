//! Writing one commit of finished steps and streamed items.
//!
//! A million-key run writes a million step rows and a million item rows, so
//! the per-row work here is what recording costs (issue 15, goal 4). Each
//! statement is prepared once per commit, not looked up by its SQL text per
//! row (hashing that text was a tenth of the writer's time); items go
//! [`ITEMS_PER_INSERT`] rows per statement and plain steps
//! [`STEPS_PER_INSERT`]; a new run's first attempt of a step skips the
//! delete of items it cannot have; and only a replaced row is copied to
//! `attempts` (a row per step there was another tenth).

use super::INLINE_MAX;
use super::pack::{self, Bytes, PACK_ITEMS, PACK_STEPS, PackedItem, Plain};
use crate::store::{StepRecord, StepStatus, StoredItem, StoredOutput, hash_bytes};
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use rustc_hash::FxHashMap;
use std::sync::{Arc, OnceLock};

/// Items per multi-row insert: each execution of a statement has a fixed
/// cost (binding the run, op and keys, stepping, resetting) that 16 rows
/// share; more rows gained nothing measurable.
pub(super) const ITEMS_PER_INSERT: usize = 16;

/// Columns of an `items` row bound per item (after `run_id, op, keys`).
const ITEM_COLUMNS: usize = 6;

/// The columns of a `steps` row and their parameters, as [`Writer::row`] binds them.
macro_rules! step_columns {
    () => {
        "(run_id, op, keys, status, attempts, wall_secs, failure_kind, failure_message,
    peak_memory_bytes, emitted_items, emitted_bytes, fuel_used, input_hash, output_hash, memo_key,
    stdout, stderr, log, finished_at, inputs, output, metadata, no_value, position, services, memoized,
    input_heads)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
    ?21, ?22, ?23, ?24, ?25, ?26, ?27)"
    };
}
const INSERT_STEP: &str = concat!("INSERT INTO steps ", step_columns!());
const REPLACE_STEP: &str = concat!("INSERT OR REPLACE INTO steps ", step_columns!());

/// Plain steps per multi-row insert (see [`ITEMS_PER_INSERT`]).
const STEPS_PER_INSERT: usize = 8;

/// Columns of a plain step's row bound per step ([`bind_plain`]).
const PLAIN_COLUMNS: usize = 17;

/// Whether a step leaves the rarer columns empty (failure, fuel, metadata,
/// HTTP, captured output, a value in `blobs`): a million-key map is mostly
/// such steps, and binding the ten columns they leave empty was a tenth of
/// each insert.
fn is_plain(s: &StepRecord) -> bool {
    s.output.as_deref().is_none_or(|o| o.len() <= INLINE_MAX)
        && s.failure_kind.is_none()
        && s.failure_message.is_none()
        && s.fuel_used.is_none()
        && s.metadata.is_none()
        && !s.no_value
        && s.services.is_none()
        && s.stdout.is_empty()
        && s.stderr.is_empty()
        && s.log.is_empty()
}

/// The insert of `rows` plain steps (1 or [`STEPS_PER_INSERT`]); the
/// columns they leave empty take their defaults, the captured output is
/// empty. Built once.
pub(super) fn plain_steps_sql(rows: usize) -> &'static str {
    static SQL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    SQL[usize::from(rows > 1)].get_or_init(|| {
        format!(
            "INSERT INTO steps (run_id, op, keys, status, attempts, wall_secs,
             peak_memory_bytes, emitted_items, emitted_bytes, input_hash, memo_key,
             finished_at, inputs, output, position, memoized, input_heads,
             stdout, stderr, log) VALUES {}",
            value_rows(rows, "", 1, PLAIN_COLUMNS, ", '', '', ''")
        )
    })
}

/// [`plain_steps_sql`] for one step that replaces the row of its step.
pub(super) fn replace_plain_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| plain_steps_sql(1).replacen("INSERT", "INSERT OR REPLACE", 1))
}

/// `rows` rows of a multi-row `VALUES`: each `(lead ?i … tail)` with its
/// own `columns` parameters, numbered from `first`.
fn value_rows(rows: usize, lead: &str, first: usize, columns: usize, tail: &str) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| {
            let at = first + row * columns;
            let params: Vec<String> = (at..at + columns).map(|i| format!("?{i}")).collect();
            format!("({lead}{}{tail})", params.join(", "))
        })
        .collect();
    rows.join(", ")
}

/// The varying columns of a plain step ([`is_plain`]) whose keys are stored as `keys`.
fn plain<'a>(s: &'a StepRecord, keys: &'a str, heads: Option<i64>) -> Plain<'a> {
    Plain {
        keys,
        attempts: s.attempts,
        wall_secs: s.wall_secs,
        peak_memory_bytes: s.peak_memory_bytes,
        emitted_items: s.emitted_items,
        emitted_bytes: s.emitted_bytes,
        input_hash: s.input_hash.map(|d| d.0),
        memo_key: s.memo_key.map(|d| d.0),
        inputs: s.inputs.as_ref().map(|i| i.values.as_str()),
        output: s.output.as_deref().map(Bytes),
        position: s.position,
        input_heads: heads,
        memoized: s.memoized,
    }
}

/// Binds a plain step of `op` as the row whose parameters follow `at`
/// (packed steps are bound the same way when they are unpacked).
pub(super) fn bind_plain(
    stmt: &mut CachedStatement<'_>,
    at: usize,
    run_id: &str,
    now: f64,
    (op, status, s): (&str, &str, &Plain<'_>),
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(at + 1, run_id)?;
    stmt.raw_bind_parameter(at + 2, op)?;
    stmt.raw_bind_parameter(at + 3, s.keys)?;
    stmt.raw_bind_parameter(at + 4, status)?;
    stmt.raw_bind_parameter(at + 5, s.attempts)?;
    stmt.raw_bind_parameter(at + 6, s.wall_secs)?;
    stmt.raw_bind_parameter(at + 7, s.peak_memory_bytes as i64)?;
    stmt.raw_bind_parameter(at + 8, s.emitted_items as i64)?;
    stmt.raw_bind_parameter(at + 9, s.emitted_bytes as i64)?;
    stmt.raw_bind_parameter(at + 10, s.input_hash.as_ref().map(<[u8; 32]>::as_slice))?;
    stmt.raw_bind_parameter(at + 11, s.memo_key.as_ref().map(<[u8; 32]>::as_slice))?;
    stmt.raw_bind_parameter(at + 12, now)?;
    stmt.raw_bind_parameter(at + 13, s.inputs)?;
    stmt.raw_bind_parameter(at + 14, s.output.map(|b| b.0))?;
    stmt.raw_bind_parameter(at + 15, s.position)?;
    stmt.raw_bind_parameter(at + 16, s.memoized)?;
    stmt.raw_bind_parameter(at + 17, s.input_heads)
}

/// One commit's writes for one run, with the statements every row needs
/// prepared on first use and held until the commit.
pub(super) struct Writer<'c, 'w> {
    conn: &'c Connection,
    run_id: &'c str,
    now: f64,
    /// The run was created by this store handle: no earlier process wrote
    /// any of its rows.
    fresh_run: bool,
    insert_step: Option<CachedStatement<'c>>,
    plain_step: Option<CachedStatement<'c>>,
    plain_steps: Option<CachedStatement<'c>>,
    /// Plain steps not inserted yet, inserted [`STEPS_PER_INSERT`] at a time.
    pending: Vec<Waiting<'w>>,
    /// The `op_inputs` ids looked up in this commit, by op and heads.
    heads: Vec<(&'w str, Arc<str>, i64)>,
    /// Plain successes of a run this handle created, by op, written
    /// [`PACK_STEPS`] to a `step_packs` row ([`pack`]).
    packs: Vec<(&'w str, Vec<Waiting<'w>>)>,
    pack_insert: Option<CachedStatement<'c>>,
    item: Option<CachedStatement<'c>>,
    items: Option<CachedStatement<'c>>,
    blob: Option<CachedStatement<'c>>,
    /// Items of a run this handle created, by emitting step (keys as
    /// stored, then op), written up to [`PACK_ITEMS`] to an `item_packs`
    /// row ([`pack`]).
    item_packs: FxHashMap<String, Vec<(&'w str, ItemPack<'w>)>>,
    item_pack_insert: Option<CachedStatement<'c>>,
}

/// A step's items waiting to be written as one `item_packs` row.
struct ItemPack<'w> {
    /// The position of the first.
    first_seq: u64,
    items: Vec<&'w StoredItem>,
}

/// A plain step waiting to be written, with its keys as stored and its
/// `op_inputs` id.
type Waiting<'w> = (&'w StepRecord, String, Option<i64>);

/// `slot`'s statement, prepared from `sql` the first time.
fn prepared<'s, 'c>(
    conn: &'c Connection,
    slot: &'s mut Option<CachedStatement<'c>>,
    sql: &str,
) -> rusqlite::Result<&'s mut CachedStatement<'c>> {
    if slot.is_none() {
        *slot = Some(conn.prepare_cached(sql)?);
    }
    Ok(slot.as_mut().expect("just prepared"))
}

impl<'c, 'w> Writer<'c, 'w> {
    /// `conn` is inside the commit's transaction.
    pub fn new(conn: &'c Connection, run_id: &'c str, now: f64, fresh_run: bool) -> Self {
        Self {
            conn,
            run_id,
            now,
            fresh_run,
            insert_step: None,
            plain_step: None,
            plain_steps: None,
            pending: Vec::with_capacity(STEPS_PER_INSERT),
            heads: Vec::new(),
            packs: Vec::new(),
            pack_insert: None,
            item: None,
            items: None,
            blob: None,
            item_packs: FxHashMap::default(),
            item_pack_insert: None,
        }
    }

    /// Writes a finished step whole: its row, its items (unless streamed)
    /// and its named outputs; a row it replaces goes to `attempts`. A plain
    /// step that needs nothing else written waits to be inserted with
    /// others ([`Self::finish`] inserts the last of them).
    pub fn step(&mut self, s: &'w StepRecord) -> rusqlite::Result<()> {
        let keys = super::keys_json(&s.keys);
        // Streamed items were written as they came, the first of them
        // replacing any earlier attempt's; an attempt that streamed none
        // must still drop those, unless there can be none: the first
        // attempt of a step in a run this handle created (only an earlier
        // attempt, or an earlier process's, could have left items).
        let clear_items =
            s.items_streamed && s.emitted_items == 0 && !(self.fresh_run && s.attempts <= 1);
        // Only ops with named outputs (and failed steps, whose earlier
        // attempt may have set some) touch the table.
        let outputs = !s.outputs.is_empty() || s.status == StepStatus::Failed;
        let heads = self.heads_id(s)?;
        if is_plain(s) && s.items_streamed && !clear_items && !outputs {
            if self.fresh_run && s.attempts <= 1 && s.status == StepStatus::Succeeded && !s.memoized
            {
                return self.pack(s, keys, heads);
            }
            self.pending.push((s, keys, heads));
            if self.pending.len() == STEPS_PER_INSERT {
                self.insert_pending()?;
            }
            return Ok(());
        }
        self.insert_pending()?;
        self.row(s, &keys, heads)?;
        if !s.items_streamed {
            self.items(&s.op, keys.clone(), 0, &s.items)?;
        } else if clear_items {
            self.clear_items(&s.op, &keys)?;
        }
        if outputs {
            self.outputs(&s.op, &keys, &s.outputs)?;
        }
        Ok(())
    }

    /// Marks a failed or skipped step that a tolerant collect ran without.
    pub fn tolerated(&mut self, op: &str, keys: &[String]) -> rusqlite::Result<()> {
        self.insert_pending()?;
        self.conn
            .prepare_cached(
                "UPDATE steps SET tolerated = 1 WHERE run_id = ?1 AND op = ?2 AND keys = ?3",
            )?
            .execute(params![self.run_id, op, super::keys_json(keys)])
            .map(|_| ())
    }

    /// Writes the plain steps and packed items still waiting; call before
    /// the commit.
    pub fn finish(&mut self) -> rusqlite::Result<()> {
        for at in 0..self.packs.len() {
            self.write_pack(at)?;
        }
        let steps: Vec<(String, &'w str)> = self
            .item_packs
            .iter()
            .flat_map(|(keys, ops)| ops.iter().map(|(op, _)| (keys.clone(), *op)))
            .collect();
        for (keys, op) in steps {
            self.write_item_pack(op, &keys)?;
        }
        self.insert_pending()
    }

    /// Adds a packable step to its op's pack, writing the pack when full.
    fn pack(
        &mut self,
        s: &'w StepRecord,
        keys: String,
        heads: Option<i64>,
    ) -> rusqlite::Result<()> {
        let at = match self.packs.iter().position(|(op, _)| *op == &*s.op) {
            Some(at) => at,
            None => {
                self.packs.push((&s.op, Vec::with_capacity(PACK_STEPS)));
                self.packs.len() - 1
            }
        };
        self.packs[at].1.push((s, keys, heads));
        if self.packs[at].1.len() == PACK_STEPS {
            self.write_pack(at)?;
        }
        Ok(())
    }

    /// Writes the `at`th op's waiting packable steps as one `step_packs` row.
    fn write_pack(&mut self, at: usize) -> rusqlite::Result<()> {
        let (op, steps) = &self.packs[at];
        if steps.is_empty() {
            return Ok(());
        }
        let plain: Vec<Plain<'_>> = steps
            .iter()
            .map(|(s, keys, heads)| plain(s, keys, *heads))
            .collect();
        let blob = pack::encode(&plain);
        let op = *op;
        prepared(
            self.conn,
            &mut self.pack_insert,
            "INSERT INTO step_packs (run_id, op, finished_at, steps) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![self.run_id, op, self.now, blob])?;
        self.packs[at].1.clear();
        Ok(())
    }

    /// Inserts the waiting plain steps: a full group in one statement, else
    /// (or if one of them is there already) one by one.
    fn insert_pending(&mut self) -> rusqlite::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending);
        if pending.len() == STEPS_PER_INSERT {
            let stmt = prepared(
                self.conn,
                &mut self.plain_steps,
                plain_steps_sql(STEPS_PER_INSERT),
            )?;
            for (row, (s, keys, heads)) in pending.iter().enumerate() {
                let status = s.status.as_str();
                let step = plain(s, keys, *heads);
                bind_plain(
                    stmt,
                    row * PLAIN_COLUMNS,
                    self.run_id,
                    self.now,
                    (&s.op, status, &step),
                )?;
            }
            match stmt.raw_execute() {
                Ok(_) => {
                    pending.clear();
                    self.pending = pending;
                    return Ok(());
                }
                // SQLite undid the whole statement: insert them one by one,
                // replacing the one that is there.
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(e),
            }
        }
        for (s, keys, heads) in &pending {
            self.row(s, keys, *heads)?;
        }
        pending.clear();
        self.pending = pending;
        Ok(())
    }

    /// Inserts a step's row, or replaces it (keeping the old one in
    /// `attempts`) if the step was recorded before.
    fn row(&mut self, s: &StepRecord, keys: &str, heads: Option<i64>) -> rusqlite::Result<()> {
        let (output_hash, output) = match s.output.as_deref() {
            Some(bytes) => match self.put_value(bytes)? {
                Stored::Inline(bytes) => (None, Some(bytes)),
                Stored::Blob(hash) => (Some(hash), None),
            },
            None => (None, None),
        };
        let (run_id, now) = (self.run_id, self.now);
        let row = params![
            run_id,
            s.op,
            keys,
            s.status.as_str(),
            s.attempts,
            s.wall_secs,
            s.failure_kind,
            s.failure_message,
            s.peak_memory_bytes as i64,
            s.emitted_items as i64,
            s.emitted_bytes as i64,
            s.fuel_used.map(|f| f as i64),
            s.input_hash,
            output_hash,
            s.memo_key,
            s.stdout,
            s.stderr,
            s.log,
            now,
            s.inputs.as_ref().map(|i| i.values.as_str()),
            output,
            s.metadata.as_deref(),
            s.no_value,
            s.position,
            s.services,
            s.memoized,
            heads,
        ];
        // A plain insert first: a step recorded for the first time (every
        // step of a new run) then costs one B-tree descent. `OR REPLACE`
        // searches for the old row before inserting whenever delete
        // triggers exist (ours keep `step_counts`), ~15% of each insert;
        // only a step recorded again (resume, retry) needs it.
        let inserted = if is_plain(s) {
            let stmt = prepared(self.conn, &mut self.plain_step, plain_steps_sql(1))?;
            let step = plain(s, keys, heads);
            bind_plain(stmt, 0, run_id, now, (&s.op, s.status.as_str(), &step))?;
            stmt.raw_execute()
        } else {
            prepared(self.conn, &mut self.insert_step, INSERT_STEP)?.execute(row)
        };
        match inserted {
            Err(e) if is_duplicate(&e) => {
                // The row replaced is an earlier attempt's outcome (a
                // resume rerunning it): it goes to `attempts`.
                self.conn
                    .prepare_cached(
                        "INSERT INTO attempts (run_id, op, keys, status, finished_at)
                         SELECT run_id, op, keys, status, finished_at FROM steps
                         WHERE run_id = ?1 AND op = ?2 AND keys = ?3",
                    )?
                    .execute(params![run_id, s.op, keys])?;
                self.conn.prepare_cached(REPLACE_STEP)?.execute(row)?;
                Ok(())
            }
            result => result.map(|_| ()),
        }
    }

    /// The `op_inputs` row of `s`'s op and input heads: looked up (or
    /// added) once per op in a commit.
    fn heads_id(&mut self, s: &'w StepRecord) -> rusqlite::Result<Option<i64>> {
        let Some(heads) = s.inputs.as_ref().map(|i| &i.heads) else {
            return Ok(None);
        };
        let known = self
            .heads
            .iter()
            .find(|(op, h, _)| *op == &*s.op && (Arc::ptr_eq(h, heads) || **h == **heads));
        if let Some((_, _, id)) = known {
            return Ok(Some(*id));
        }
        let args = params![self.run_id, s.op, &**heads];
        let found: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT id FROM op_inputs WHERE run_id = ?1 AND op = ?2 AND heads = ?3",
            )?
            .query_row(args, |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => self
                .conn
                .prepare_cached(
                    "INSERT INTO op_inputs (run_id, op, heads) VALUES (?1, ?2, ?3) RETURNING id",
                )?
                .query_row(args, |r| r.get(0))?,
        };
        self.heads.push((&s.op, heads.clone(), id));
        Ok(Some(id))
    }

    /// Drops a step's items: rows, packs and those waiting to be packed.
    fn clear_items(&mut self, op: &str, keys: &str) -> rusqlite::Result<()> {
        if let Some(ops) = self.item_packs.get_mut(keys) {
            ops.retain(|(o, _)| *o != op);
        }
        let args = params![self.run_id, op, keys];
        self.conn
            .prepare_cached("DELETE FROM items WHERE run_id = ?1 AND op = ?2 AND keys = ?3")?
            .execute(args)?;
        self.conn
            .prepare_cached("DELETE FROM item_packs WHERE run_id = ?1 AND op = ?2 AND keys = ?3")?
            .execute(args)
            .map(|_| ())
    }

    /// Writes items from position `first_seq` on; position 0 first drops the
    /// step's earlier items (a rerun replaces them). A run this handle
    /// created packs them ([`pack`]); others write rows.
    pub fn items(
        &mut self,
        op: &'w str,
        keys: String,
        first_seq: u64,
        items: &'w [StoredItem],
    ) -> rusqlite::Result<()> {
        if first_seq == 0 {
            self.clear_items(op, &keys)?;
        }
        if self.fresh_run {
            return self.pack_items(op, keys, first_seq, items);
        }
        let keys = keys.as_str();
        let mut seq = first_seq;
        let mut rest = items;
        while !rest.is_empty() {
            let rows = if rest.len() >= ITEMS_PER_INSERT {
                ITEMS_PER_INSERT
            } else {
                1
            };
            let (chunk, after) = rest.split_at(rows);
            // Blob values first: `put_value` runs its own statement.
            let mut stored = [const { None }; ITEMS_PER_INSERT];
            for (slot, item) in stored.iter_mut().zip(chunk) {
                *slot = Some(self.put_value(&item.value)?);
            }
            let (slot, sql) = if rows == 1 {
                (&mut self.item, items_sql(1))
            } else {
                (&mut self.items, items_sql(ITEMS_PER_INSERT))
            };
            let stmt = prepared(self.conn, slot, sql)?;
            stmt.raw_bind_parameter(1, self.run_id)?;
            stmt.raw_bind_parameter(2, op)?;
            stmt.raw_bind_parameter(3, keys)?;
            for (row, (item, value)) in chunk.iter().zip(&stored).enumerate() {
                let at = 4 + row * ITEM_COLUMNS;
                let (hash, inline) = match value {
                    Some(Stored::Inline(bytes)) => ("", Some(*bytes)),
                    Some(Stored::Blob(hash)) => (hash.as_str(), None),
                    None => ("", None),
                };
                stmt.raw_bind_parameter(at, &*item.output)?;
                stmt.raw_bind_parameter(at + 1, seq as i64)?;
                stmt.raw_bind_parameter(at + 2, item.key.as_str())?;
                stmt.raw_bind_parameter(at + 3, hash)?;
                stmt.raw_bind_parameter(at + 4, inline)?;
                stmt.raw_bind_parameter(at + 5, item.metadata.as_deref())?;
                seq += 1;
            }
            stmt.raw_execute()?;
            rest = after;
        }
        Ok(())
    }

    /// Adds items to their step's pack, which continues from the last
    /// commit's items or starts afresh; a full pack is written.
    fn pack_items(
        &mut self,
        op: &'w str,
        keys: String,
        first_seq: u64,
        items: &'w [StoredItem],
    ) -> rusqlite::Result<()> {
        if !self.item_packs.contains_key(&keys) {
            self.item_packs.insert(keys.clone(), Vec::new());
        }
        let ops = self.item_packs.get_mut(&keys).expect("just inserted");
        let at = match ops.iter().position(|(o, _)| *o == op) {
            Some(at) => at,
            None => {
                ops.push((
                    op,
                    ItemPack {
                        first_seq,
                        items: Vec::with_capacity(items.len().min(PACK_ITEMS)),
                    },
                ));
                ops.len() - 1
            }
        };
        let pack = &ops[at].1;
        if pack.first_seq + pack.items.len() as u64 != first_seq {
            // Not where the waiting items end (never, as the coordinator
            // sends them): what waits goes first, in its own pack.
            self.write_item_pack(op, &keys)?;
            self.waiting_pack(op, &keys).first_seq = first_seq;
        }
        // A pack's worth at a time: one lookup per pack, not per item.
        let mut rest = items;
        while !rest.is_empty() {
            let pack = self.waiting_pack(op, &keys);
            let (now, after) = rest.split_at(rest.len().min(PACK_ITEMS - pack.items.len()));
            pack.items.extend(now);
            if pack.items.len() == PACK_ITEMS {
                self.write_item_pack(op, &keys)?;
            }
            rest = after;
        }
        Ok(())
    }

    /// The pack of `op`'s step `keys` that waits ([`Self::pack_items`] made it).
    fn waiting_pack(&mut self, op: &str, keys: &str) -> &mut ItemPack<'w> {
        let ops = self.item_packs.get_mut(keys).expect("made by pack_items");
        let at = ops
            .iter()
            .position(|(o, _)| *o == op)
            .expect("made by pack_items");
        &mut ops[at].1
    }

    /// Writes the waiting items of `op`'s step `keys` as one `item_packs`
    /// row; the pack then waits for the items after them.
    fn write_item_pack(&mut self, op: &'w str, keys: &str) -> rusqlite::Result<()> {
        let pack = self.waiting_pack(op, keys);
        if pack.items.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut pack.items);
        let first_seq = pack.first_seq;
        // Values over the inline size go to `blobs` first.
        let mut stored = Vec::with_capacity(items.len());
        for item in &items {
            stored.push(self.put_value(&item.value)?);
        }
        let packed: Vec<PackedItem<'_>> = items
            .iter()
            .zip(&stored)
            .map(|(item, value)| {
                let (value_hash, value) = match value {
                    Stored::Inline(bytes) => ("", Some(Bytes(bytes))),
                    Stored::Blob(hash) => (hash.as_str(), None),
                };
                PackedItem {
                    output: &item.output,
                    key: &item.key,
                    value_hash,
                    value,
                    metadata: item.metadata.as_deref(),
                }
            })
            .collect();
        let blob = pack::encode_items(&packed);
        prepared(
            self.conn,
            &mut self.item_pack_insert,
            "INSERT INTO item_packs (run_id, op, keys, first_seq, items) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![self.run_id, op, keys, first_seq as i64, blob])?;
        let written = items.len() as u64;
        let pack = self.waiting_pack(op, keys);
        pack.first_seq = first_seq + written;
        // The vector's room serves the next pack.
        pack.items = items;
        pack.items.clear();
        Ok(())
    }

    /// Replaces a step's named plain outputs: a row for each that was set or
    /// carries metadata.
    fn outputs(&mut self, op: &str, keys: &str, outputs: &[StoredOutput]) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM outputs WHERE run_id = ?1 AND op = ?2 AND keys = ?3")?
            .execute(params![self.run_id, op, keys])?;
        for output in outputs {
            if output.value.is_none() && output.metadata.is_none() {
                continue;
            }
            let (hash, inline) = match output.value.as_deref() {
                Some(bytes) => match self.put_value(bytes)? {
                    Stored::Inline(bytes) => (String::new(), Some(bytes)),
                    Stored::Blob(hash) => (hash, None),
                },
                None => (String::new(), None),
            };
            self.conn.prepare_cached("INSERT INTO outputs (run_id, op, keys, name, value_hash, value, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(
                params![self.run_id, op, keys, output.name, hash, inline, output.metadata.as_deref()],
            )?;
        }
        Ok(())
    }

    /// Where a value goes: small ones into their row, others once into
    /// `blobs` by their hash.
    fn put_value<'v>(&mut self, bytes: &'v [u8]) -> rusqlite::Result<Stored<'v>> {
        if bytes.len() <= INLINE_MAX {
            return Ok(Stored::Inline(bytes));
        }
        let hash = hash_bytes(bytes);
        prepared(
            self.conn,
            &mut self.blob,
            "INSERT OR IGNORE INTO blobs (hash, bytes) VALUES (?1, ?2)",
        )?
        .execute(params![hash, bytes])?;
        Ok(Stored::Blob(hash))
    }
}

/// Binds packed items of one step (op and keys as stored) from position
/// `first_seq` on as the rows of [`items_sql`]`(items.len())`, when
/// unpacking.
pub(super) fn bind_items(
    stmt: &mut CachedStatement<'_>,
    run_id: &str,
    (op, keys): (&str, &str),
    first_seq: i64,
    items: &[PackedItem<'_>],
) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(1, run_id)?;
    stmt.raw_bind_parameter(2, op)?;
    stmt.raw_bind_parameter(3, keys)?;
    for (row, item) in items.iter().enumerate() {
        let at = 4 + row * ITEM_COLUMNS;
        stmt.raw_bind_parameter(at, item.output)?;
        stmt.raw_bind_parameter(at + 1, first_seq + row as i64)?;
        stmt.raw_bind_parameter(at + 2, item.key)?;
        stmt.raw_bind_parameter(at + 3, item.value_hash)?;
        stmt.raw_bind_parameter(at + 4, item.value.map(|b| b.0))?;
        stmt.raw_bind_parameter(at + 5, item.metadata)?;
    }
    Ok(())
}

/// The insert of `rows` items (1 or [`ITEMS_PER_INSERT`]) sharing
/// `run_id, op, keys` (`?1`–`?3`), built once.
pub(super) fn items_sql(rows: usize) -> &'static str {
    static SQL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    SQL[usize::from(rows > 1)].get_or_init(|| {
        format!(
            "INSERT OR REPLACE INTO items (run_id, op, keys, output, seq, key, value_hash, value, metadata) VALUES {}",
            value_rows(rows, "?1, ?2, ?3, ", 4, ITEM_COLUMNS, "")
        )
    })
}

/// Whether `e` is an insert refused because the row's key exists.
pub(super) fn is_duplicate(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Where a value went.
enum Stored<'a> {
    /// Small: into the row itself.
    Inline(&'a [u8]),
    /// Into `blobs`, under this hash.
    Blob(String),
}
