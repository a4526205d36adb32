//! Packed plain steps (schema 13) and items (schema 14): a new run's plain
//! successes go into `step_packs`, many to a row, its emitted items into
//! `item_packs`, and they become `steps` and `items` rows when something
//! first reads them.
//!
//! Why: a `steps` row costs SQLite itself ~2.3 µs to insert, whatever we
//! bind (measured with the `sqlite3` shell alone), which kept recording a
//! million-key fan-out at 1.22× its unrecorded wall time (issue 15, goal 4).
//! One row per [`PACK_STEPS`] steps costs a fraction of that per step. The
//! rows are written once either way; packing moves that cost out of the run
//! to the first read that needs every row (`show RUN OP`, the viewer's op
//! pages), which reads them all anyway. A read of one step writes out only
//! its pack ([`pack_of_step`]); the counts, the failures and every step's
//! keys are read without writing any. What a run needs while it runs or
//! resumes reads packs directly ([`SqliteStore::successes`](super::SqliteStore)),
//! so a resume starts as fast as before.
//!
//! Only steps whose row nothing else touches are packed: succeeded, first
//! attempt, in a run this handle created (no earlier row can exist), not
//! `cache = true` (the memo index must see them), with nothing in the rarer
//! columns ([`super::write`]'s plain steps). Counts (`step_counts`) and
//! events are written for them as for any step.

use super::SuccessRow;
use super::write::ITEMS_PER_INSERT;
use crate::store::Digest;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Plain steps per `step_packs` row: 128 steps of a trivial map are ~12 KiB,
/// and per-row costs are then under a tenth of the rest.
pub(super) const PACK_STEPS: usize = 128;

/// The columns of a plain step's row that vary (the rest are defaults, and
/// `status` is `succeeded` in a pack). Encoded with postcard (already in
/// the build through wasmtime): compact, no schema to keep in SQL.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Plain<'a> {
    pub keys: &'a str,
    pub attempts: u32,
    pub wall_secs: f64,
    pub peak_memory_bytes: u64,
    pub emitted_items: u64,
    pub emitted_bytes: u64,
    pub input_hash: Option<[u8; 32]>,
    pub memo_key: Option<[u8; 32]>,
    pub inputs: Option<&'a str>,
    #[serde(borrow)]
    pub output: Option<Bytes<'a>>,
    pub position: Option<u32>,
    pub input_heads: Option<i64>,
    pub memoized: bool,
}

/// Bytes encoded as one byte string (serde's `[u8]` is a sequence).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de [u8]>::deserialize(d).map(Bytes)
    }
}

/// One pack's row.
pub(super) fn encode(steps: &[Plain<'_>]) -> Vec<u8> {
    // A plain step with one key and small values takes ~150 bytes.
    let out = Out(Vec::with_capacity(steps.len() * 160 + 8));
    postcard::serialize_with_flavor(steps, out).expect("encoding into a Vec cannot fail")
}

/// A `Vec` that takes postcard's short pieces (varints, floats, the
/// hashes' bytes) without a `memcpy` call each: `to_allocvec` spent half
/// of encoding a pack in those calls, a dozen per step.
struct Out(Vec<u8>);

impl postcard::ser_flavors::Flavor for Out {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if bytes.len() > 16 {
            self.0.extend_from_slice(bytes);
        } else {
            self.0.reserve(bytes.len());
            for &byte in bytes {
                self.0.push(byte);
            }
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Self::Output> {
        Ok(self.0)
    }
}

/// The steps of a pack row, or why it does not decode (a corrupt store).
#[cfg(test)]
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<Plain<'_>>, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Writes the steps of `run_id`'s first `packs` packs up to
/// id `up_to` as their `steps` rows and drops those packs; returns how many
/// packs there were. Call inside a write transaction.
///
/// A step of a resumed run may be recorded again before its pack is
/// unpacked; its row is then newer than the pack and stays.
///
/// A step recorded twice (a fresh run does not do that today; kept safe
/// anyway) keeps its later outcome, as if both had been rows: the other
/// goes to `attempts` and leaves the counts. Packs are unpacked in the
/// order they were written, and a pack wins a tie with a row.
pub(super) fn unpack(
    conn: &Connection,
    run_id: &str,
    (packs, up_to): (usize, i64),
) -> rusqlite::Result<usize> {
    let mut select = conn.prepare_cached(
        "SELECT id, op, finished_at, steps FROM step_packs WHERE run_id = ?1 AND id <= ?2
         ORDER BY id LIMIT ?3",
    )?;
    let rows = select.query(params![run_id, up_to, packs as i64])?;
    unpack_rows(conn, run_id, rows)
}

/// [`unpack`] for the one pack `id` (a reader that wants one step of it).
pub(super) fn unpack_pack(conn: &Connection, run_id: &str, id: i64) -> rusqlite::Result<usize> {
    let mut select = conn.prepare_cached(
        "SELECT id, op, finished_at, steps FROM step_packs WHERE run_id = ?1 AND id = ?2",
    )?;
    let rows = select.query(params![run_id, id])?;
    unpack_rows(conn, run_id, rows)
}

/// The id of the pack of `run_id` that holds `op`'s step with `keys` (as
/// stored), if a pack does. Packs have no index by key (that would cost
/// the run what packing saves), so this decodes the op's packs in turn
/// and skips those whose bytes do not hold the keys' text.
pub(super) fn pack_of_step(
    conn: &Connection,
    run_id: &str,
    (op, keys): (&str, &str),
) -> rusqlite::Result<Option<i64>> {
    let mut select =
        conn.prepare_cached("SELECT id, steps FROM step_packs WHERE run_id = ?1 AND op = ?2")?;
    let mut rows = select.query(params![run_id, op])?;
    let finder = memchr::memmem::Finder::new(keys.as_bytes());
    while let Some(row) = rows.next()? {
        if finder.find(row.get_ref(1)?.as_blob()?).is_none() {
            continue;
        }
        let steps = decoded::<Plain<'_>>(row, 1, ("step", run_id))?;
        if steps.iter().any(|step| step.keys == keys) {
            return row.get(0).map(Some);
        }
    }
    Ok(None)
}

/// (op, keys as stored) of every packed step of `run_id`.
pub(super) fn packed_keys(
    conn: &Connection,
    run_id: &str,
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    each_packed_step(conn, run_id, |_, op, step| {
        found.push((op.to_owned(), step.keys.to_owned()));
    })?;
    Ok(found)
}

/// Which pack holds each packed step of `run_id`: [`step_hash`] of its op
/// and keys (as stored) → the pack's id. A resumed run's recorder keeps
/// this so a step it runs again has its pack written out first (see
/// `SqliteStore::record`); a hash shared by two steps only writes out one
/// pack more than needed.
pub(super) fn step_pack_index(
    conn: &Connection,
    run_id: &str,
) -> rusqlite::Result<rustc_hash::FxHashMap<u64, i64>> {
    let mut index = rustc_hash::FxHashMap::default();
    each_packed_step(conn, run_id, |id, op, step| {
        index.insert(step_hash(op, step.keys), id);
    })?;
    Ok(index)
}

/// The hash [`step_pack_index`] files a step under.
pub(super) fn step_hash(op: &str, keys: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    (op, keys).hash(&mut hasher);
    hasher.finish()
}

/// The packed steps of `run_id` as [`StepRow`](crate::store::StepRow)s:
/// exactly what their rows read back as once written out (status
/// `succeeded`, nothing captured, the input summary joined to its op's
/// heads); and the [`step_hash`] of each.
pub(super) fn packed_rows(
    conn: &Connection,
    run_id: &str,
) -> rusqlite::Result<(Vec<crate::store::StepRow>, rustc_hash::FxHashSet<u64>)> {
    let mut heads: rustc_hash::FxHashMap<i64, Option<String>> = Default::default();
    let mut lookup = conn.prepare_cached("SELECT heads FROM op_inputs WHERE id = ?1")?;
    let mut found = Vec::new();
    let mut hashes = rustc_hash::FxHashSet::default();
    let mut failed = None;
    each_packed_step(conn, run_id, |_, op, step| {
        let heads = match step.input_heads {
            Some(id) => match heads.get(&id) {
                Some(h) => h.as_deref(),
                None => {
                    let h = lookup
                        .query_row([id], |r| r.get::<_, Option<String>>(0))
                        .optional()
                        .map(Option::flatten);
                    match h {
                        Ok(h) => heads.entry(id).or_insert(h).as_deref(),
                        Err(e) => {
                            failed.get_or_insert(e);
                            return;
                        }
                    }
                }
            },
            None => None,
        };
        hashes.insert(step_hash(op, step.keys));
        found.push(crate::store::StepRow {
            op: op.to_owned(),
            keys: super::parse_keys(step.keys),
            status: "succeeded".to_owned(),
            tolerated: false,
            attempts: step.attempts,
            wall_secs: step.wall_secs,
            failure_kind: None,
            failure_message: None,
            peak_memory_bytes: step.peak_memory_bytes,
            emitted_items: step.emitted_items,
            emitted_bytes: step.emitted_bytes,
            fuel_used: None,
            output_bytes: step.output.map(|o| o.0.len() as u64),
            stdout: String::new(),
            stderr: String::new(),
            log: String::new(),
            inputs: super::inputs_json(step.inputs.map(str::to_owned), heads),
            metadata: None,
            no_value: false,
            services: None,
        });
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok((found, hashes)),
    }
}

/// Calls `visit` with each packed step of `op` in `run_id`; other ops'
/// packs are skipped by SQL, not decoded.
pub(super) fn each_packed_step_of(
    conn: &Connection,
    run_id: &str,
    op: &str,
    mut visit: impl FnMut(Plain<'_>),
) -> rusqlite::Result<()> {
    let mut packs =
        conn.prepare_cached("SELECT id, op, steps FROM step_packs WHERE run_id = ?1 AND op = ?2")?;
    visit_packed_steps(packs.query(params![run_id, op])?, run_id, |_, _, step| {
        visit(step)
    })
}

/// Calls `visit` with (emitting step's keys as stored, key, position) for
/// each packed item of `run_id`.
pub(super) fn each_packed_item(
    conn: &Connection,
    run_id: &str,
    mut visit: impl FnMut(&str, &str, i64),
) -> rusqlite::Result<()> {
    let mut packs =
        conn.prepare_cached("SELECT id, keys, first_seq, items FROM item_packs WHERE run_id = ?1")?;
    let mut rows = packs.query([run_id])?;
    while let Some(row) = rows.next()? {
        let keys = row.get_ref(1)?.as_str()?;
        let first_seq: i64 = row.get(2)?;
        for (at, item) in decoded::<PackedItem<'_>>(row, 3, ("item", run_id))?
            .into_iter()
            .enumerate()
        {
            visit(keys, item.key, first_seq + at as i64);
        }
    }
    Ok(())
}

/// Calls `visit` with (pack id, op, step) for each packed step of
/// `run_id`, in the order the packs were written.
fn each_packed_step(
    conn: &Connection,
    run_id: &str,
    visit: impl FnMut(i64, &str, Plain<'_>),
) -> rusqlite::Result<()> {
    let mut packs =
        conn.prepare_cached("SELECT id, op, steps FROM step_packs WHERE run_id = ?1 ORDER BY id")?;
    visit_packed_steps(packs.query([run_id])?, run_id, visit)
}

/// Calls `visit` with (pack id, op, step) for each step of the packs in
/// `rows` (id, op, steps).
fn visit_packed_steps(
    mut rows: rusqlite::Rows<'_>,
    run_id: &str,
    mut visit: impl FnMut(i64, &str, Plain<'_>),
) -> rusqlite::Result<()> {
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let op = row.get_ref(1)?.as_str()?;
        for step in decoded::<Plain<'_>>(row, 2, ("step", run_id))? {
            visit(id, op, step);
        }
    }
    Ok(())
}

/// Writes the step packs of `rows` (id, op, finished_at, steps) as
/// `steps` rows and drops them.
fn unpack_rows(
    conn: &Connection,
    run_id: &str,
    mut rows: rusqlite::Rows<'_>,
) -> rusqlite::Result<usize> {
    let mut insert = conn.prepare_cached(super::write::plain_steps_sql(1))?;
    let mut unpacked = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let op: String = row.get(1)?;
        let finished_at: f64 = row.get(2)?;
        let steps = decoded::<Plain<'_>>(row, 3, ("step", run_id))?;
        for step in &steps {
            super::write::bind_plain(
                &mut insert,
                0,
                run_id,
                finished_at,
                (&op, "succeeded", step),
            )?;
            match insert.raw_execute() {
                Ok(_) => {}
                Err(e) if super::write::is_duplicate(&e) => {
                    recorded_twice(conn, run_id, (&op, step), finished_at)?;
                }
                Err(e) => return Err(e),
            }
        }
        unpacked.push(id);
    }
    drop(rows);
    // After the scan: SQLite leaves a scan of a table changed under it undefined.
    let mut delete = conn.prepare_cached("DELETE FROM step_packs WHERE id = ?1")?;
    for id in &unpacked {
        delete.execute([id])?;
    }
    Ok(unpacked.len())
}

/// A packed step that has a row already: the later of the two stays.
fn recorded_twice(
    conn: &Connection,
    run_id: &str,
    (op, step): (&str, &Plain<'_>),
    finished_at: f64,
) -> rusqlite::Result<()> {
    let at = params![run_id, op, step.keys];
    let row_finished: f64 = conn
        .prepare_cached(
            "SELECT finished_at FROM steps WHERE run_id = ?1 AND op = ?2 AND keys = ?3",
        )?
        .query_row(at, |r| r.get(0))?;
    if finished_at >= row_finished {
        // The row goes to `attempts`; the delete trigger takes it out of
        // the counts as for any replaced row.
        conn.prepare_cached(
            "INSERT INTO attempts (run_id, op, keys, status, finished_at)
             SELECT run_id, op, keys, status, finished_at FROM steps
             WHERE run_id = ?1 AND op = ?2 AND keys = ?3",
        )?
        .execute(at)?;
        let mut replace = conn.prepare_cached(super::write::replace_plain_sql())?;
        super::write::bind_plain(
            &mut replace,
            0,
            run_id,
            finished_at,
            (op, "succeeded", step),
        )?;
        return replace.raw_execute().map(|_| ());
    }
    conn.prepare_cached(
        "INSERT INTO attempts (run_id, op, keys, status, finished_at) VALUES (?1, ?2, ?3, 'succeeded', ?4)",
    )?
    .execute(params![run_id, op, step.keys, finished_at])?;
    conn.prepare_cached(
        "UPDATE step_counts SET n = n - 1
         WHERE run_id = ?1 AND op = ?2 AND status = 'succeeded' AND tolerated = 0",
    )?
    .execute(params![run_id, op])
    .map(|_| ())
}

/// The id of `run_id`'s last pack, if it has any (one index probe).
pub(super) fn last_pack(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT max(id) FROM step_packs WHERE run_id = ?1")?
        .query_row([run_id], |r| r.get(0))
}

/// The packed steps of `run_id` with a value, as
/// [`RunStore::successes`](crate::store::RunStore::successes) reads them.
pub(super) fn successes(conn: &Connection, run_id: &str) -> rusqlite::Result<Vec<SuccessRow>> {
    let mut found = Vec::new();
    each_packed_step(conn, run_id, |_, op, step| {
        if let Some(output) = step.output {
            found.push((
                op.to_owned(),
                step.keys.to_owned(),
                (step.input_hash.map(Digest), step.memo_key.map(Digest)),
                (output.0.to_vec(), false, None),
            ));
        }
    })?;
    Ok(found)
}

/// The steps or items (`kind`) of the pack in column `column` of `row`
/// (column 0 is its id), or an error naming the pack (a corrupt store).
fn decoded<'r, T: Deserialize<'r>>(
    row: &'r rusqlite::Row<'_>,
    column: usize,
    (kind, run_id): (&str, &str),
) -> rusqlite::Result<Vec<T>> {
    let id: i64 = row.get(0)?;
    postcard::from_bytes(row.get_ref(column)?.as_blob()?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Blob,
            format!("{kind} pack {id} of run `{run_id}` does not decode: {e}").into(),
        )
    })
}

/// Items per `item_packs` row at most: a trivial fan-out's emitter sends
/// ~1,000 items per commit; a pack that size is ~30 KiB.
pub(super) const PACK_ITEMS: usize = 1024;

/// Item packs turned into rows per transaction (up to [`PACK_ITEMS`] rows
/// each; tens of ms, as [`super::PACKS_PER_COMMIT`] step packs).
pub(super) const ITEM_PACKS_PER_COMMIT: usize = 8;

/// One emitted item in an `item_packs` row: its position is the pack's
/// `first_seq` plus its place in the pack.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct PackedItem<'a> {
    pub output: &'a str,
    pub key: &'a str,
    /// The SHA-256 of a value kept in `blobs`, or empty.
    pub value_hash: &'a str,
    /// The value itself, when small.
    #[serde(borrow)]
    pub value: Option<Bytes<'a>>,
    pub metadata: Option<&'a str>,
}

/// One item pack's row.
pub(super) fn encode_items(items: &[PackedItem<'_>]) -> Vec<u8> {
    // A trivial item (output name, key, small value) takes ~30 bytes.
    let out = Out(Vec::with_capacity(items.len() * 40 + 8));
    postcard::serialize_with_flavor(items, out).expect("encoding into a Vec cannot fail")
}

/// The id of the last item pack written to the store (any run): unpacking
/// stops there, so a reader never chases a running run's recorder.
pub(super) fn last_item_pack(conn: &Connection, run_id: &str) -> rusqlite::Result<Option<i64>> {
    let any: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM item_packs WHERE run_id = ?1 LIMIT 1")?
        .query_row([run_id], |r| r.get(0))
        .optional()?;
    if any.is_none() {
        return Ok(None);
    }
    conn.prepare_cached("SELECT max(id) FROM item_packs")?
        .query_row([], |r| r.get(0))
}

/// Writes `run_id`'s first `packs` item packs up to id `up_to` as `items`
/// rows and drops them; returns how many there were. Call inside a write
/// transaction. Rows and packs of one step never hold the same position
/// (a new attempt drops both before writing), so the order does not
/// matter; they go step by step, as the index has them.
pub(super) fn unpack_items(
    conn: &Connection,
    run_id: &str,
    (packs, up_to): (usize, i64),
) -> rusqlite::Result<usize> {
    let mut select = conn.prepare_cached(
        "SELECT id, op, keys, first_seq, items FROM item_packs
         WHERE run_id = ?1 AND id <= ?2 ORDER BY op, keys, id LIMIT ?3",
    )?;
    let rows = select.query(params![run_id, up_to, packs as i64])?;
    unpack_item_rows(conn, run_id, rows)
}

/// [`unpack_items`] for the items of one step (`op`, keys as stored):
/// one range of the packs' index.
pub(super) fn unpack_step_items(
    conn: &Connection,
    run_id: &str,
    (op, keys): (&str, &str),
) -> rusqlite::Result<usize> {
    let mut select = conn.prepare_cached(
        "SELECT id, op, keys, first_seq, items FROM item_packs
         WHERE run_id = ?1 AND op = ?2 AND keys = ?3",
    )?;
    let rows = select.query(params![run_id, op, keys])?;
    unpack_item_rows(conn, run_id, rows)
}

/// Writes the item packs of `rows` (id, op, keys, first_seq, items) as
/// `items` rows and drops them.
fn unpack_item_rows(
    conn: &Connection,
    run_id: &str,
    mut rows: rusqlite::Rows<'_>,
) -> rusqlite::Result<usize> {
    let mut insert = conn.prepare_cached(super::write::items_sql(1))?;
    let mut inserts = conn.prepare_cached(super::write::items_sql(ITEMS_PER_INSERT))?;
    let mut unpacked = Vec::new();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let op: String = row.get(1)?;
        let keys: String = row.get(2)?;
        let first_seq: i64 = row.get(3)?;
        let items = decoded::<PackedItem<'_>>(row, 4, ("item", run_id))?;
        // As the writer writes rows: many to a statement.
        let (full, rest) = items.split_at(items.len() / ITEMS_PER_INSERT * ITEMS_PER_INSERT);
        for (at, chunk) in full.chunks(ITEMS_PER_INSERT).enumerate() {
            let seq = first_seq + (at * ITEMS_PER_INSERT) as i64;
            super::write::bind_items(&mut inserts, run_id, (&op, &keys), seq, chunk)?;
            inserts.raw_execute()?;
        }
        for (at, item) in rest.iter().enumerate() {
            let seq = first_seq + (full.len() + at) as i64;
            let one = std::slice::from_ref(item);
            super::write::bind_items(&mut insert, run_id, (&op, &keys), seq, one)?;
            insert.raw_execute()?;
        }
        unpacked.push(id);
    }
    drop(rows);
    let mut delete = conn.prepare_cached("DELETE FROM item_packs WHERE id = ?1")?;
    for id in &unpacked {
        delete.execute([id])?;
    }
    Ok(unpacked.len())
}

/// The items of one pack: the emitting step (op, keys as stored), and
/// each item with its position.
pub(super) type ItemPackRow = (String, String, Vec<(i64, crate::store::StoredItem)>);

/// The packed items of `run_id`, or of one of its steps (`step`: op and
/// keys as stored), with values (a value in `blobs` read from there).
pub(super) fn packed_items(
    conn: &Connection,
    run_id: &str,
    step: Option<(&str, &str)>,
) -> rusqlite::Result<Vec<ItemPackRow>> {
    let (sql, op, keys) = match step {
        Some((op, keys)) => (
            "SELECT id, op, keys, first_seq, items FROM item_packs
             WHERE run_id = ?1 AND op = ?2 AND keys = ?3",
            Some(op),
            Some(keys),
        ),
        None => (
            "SELECT id, op, keys, first_seq, items FROM item_packs
             WHERE run_id = ?1 AND ?2 IS NULL AND ?3 IS NULL",
            None,
            None,
        ),
    };
    let mut select = conn.prepare_cached(sql)?;
    let mut blob = conn.prepare_cached("SELECT bytes FROM blobs WHERE hash = ?1")?;
    let mut rows = select.query(params![run_id, op, keys])?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let op: String = row.get(1)?;
        let keys: String = row.get(2)?;
        let first_seq: i64 = row.get(3)?;
        let decoded = decoded::<PackedItem<'_>>(row, 4, ("item", run_id))?;
        let mut items = Vec::with_capacity(decoded.len());
        for (at, item) in decoded.into_iter().enumerate() {
            let value: std::sync::Arc<[u8]> = match item.value {
                Some(bytes) => bytes.0.into(),
                // A value whose blob is gone fails the read, as a row's
                // does (a corrupt store; nothing is dropped silently).
                None => blob
                    .query_row([item.value_hash], |r| r.get::<_, Vec<u8>>(0))?
                    .into(),
            };
            items.push((
                first_seq + at as i64,
                crate::store::StoredItem {
                    output: std::sync::Arc::from(item.output),
                    key: item.key.to_owned(),
                    value,
                    metadata: item.metadata.map(std::sync::Arc::from),
                },
            ));
        }
        found.push((op, keys, items));
    }
    Ok(found)
}
