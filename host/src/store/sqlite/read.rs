//! Reading values back for `dynhost show`: an op's values in emission order,
//! one step's output, and a stored value by its hash.

use super::{SqliteStore, keys_json, parse_keys};
use crate::store::StoreError;
use rusqlite::{OptionalExtension, params};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Emitted keys' positions: the emitting step's keys as stored → key →
/// position among its items (a million keys: hashed without SipHash).
type Positions = FxHashMap<String, FxHashMap<String, i64>>;

/// An op's steps, each with its keys as stored (the JSON text sorts as the
/// keys do).
type StoredSteps = Vec<(String, StepValue)>;

/// One step of an op, with its value if it succeeded.
#[derive(Debug, Clone)]
pub struct StepValue {
    /// The step's keys.
    pub keys: Vec<String>,
    /// `succeeded`, `failed` or `skipped`.
    pub status: String,
    /// The returned value of a succeeded step.
    pub output: Option<Arc<[u8]>>,
    /// `kind: message` of a failed or skipped step.
    pub failure: Option<String>,
}

impl SqliteStore {
    /// Every step of `op` in `run_id`, in emission order: level by level, in
    /// the order the emitters emitted the keys (as a collect sees them), not
    /// sorted by key bytes. Keys no emitter recorded come last, by key.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn op_values(&self, run_id: &str, op: &str) -> Result<Vec<StepValue>, StoreError> {
        // Read as stored, packed or not: writing a million packed steps out
        // first cost seconds more than reading them. One read transaction,
        // so a step another reader writes out meanwhile is seen once.
        let read = || -> rusqlite::Result<Option<(StoredSteps, Positions)>> {
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Deferred,
            )?;
            let steps = op_steps(&tx, run_id, op)?;
            let positions = match steps.iter().flatten().any(|(keys, _)| keys != "[]") {
                true => item_positions(&tx, run_id)?,
                false => Positions::default(),
            };
            tx.commit()?;
            Ok(steps.map(|steps| (steps, positions)))
        };
        let (mut steps, positions) = self.read_packed(run_id, read)?;
        // By keys, then stable by emission order: keys no emitter recorded
        // (the same order, last) stay by key. (Keys of one op are equally
        // deep and hold no `"`, so the stored JSON sorts as the keys do.)
        steps.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut steps: Vec<StepValue> = steps.into_iter().map(|(_, step)| step).collect();
        if steps.iter().any(|s| !s.keys.is_empty()) {
            let top = positions.get("[]");
            let order = |keys: &[String]| -> smallvec::SmallVec<[i64; 2]> {
                (0..keys.len())
                    .map(|level| {
                        let of_parent = match level {
                            0 => top,
                            _ => positions.get(&keys_json(&keys[..level])),
                        };
                        of_parent
                            .and_then(|p| p.get(keys[level].as_str()))
                            .copied()
                            .unwrap_or(i64::MAX)
                    })
                    .collect()
            };
            steps.sort_by_cached_key(|s| order(&s.keys));
        }
        Ok(steps)
    }
}

/// Every step of `op` in `run_id`, rows and packed, with its keys as
/// stored; `None` if a step is both (see [`SqliteStore::op_values`]).
fn op_steps(
    conn: &rusqlite::Connection,
    run_id: &str,
    op: &str,
) -> rusqlite::Result<Option<StoredSteps>> {
    let mut stmt = conn.prepare(
        "SELECT s.keys, s.status, coalesce(s.output, b.bytes), s.failure_kind, s.failure_message
         FROM steps s LEFT JOIN blobs b ON b.hash = s.output_hash
         WHERE s.run_id = ?1 AND s.op = ?2",
    )?;
    let mut steps: StoredSteps = stmt
        .query_map(params![run_id, op], |r| {
            let keys: String = r.get(0)?;
            let kind: Option<String> = r.get(3)?;
            let message: Option<String> = r.get(4)?;
            let step = StepValue {
                keys: parse_keys(&keys),
                status: r.get(1)?,
                output: r.get::<_, Option<Vec<u8>>>(2)?.map(Arc::from),
                failure: kind.map(|k| format!("{k}: {}", message.unwrap_or_default())),
            };
            Ok((keys, step))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let rows: rustc_hash::FxHashSet<String> = steps.iter().map(|(k, _)| k.clone()).collect();
    let mut twice = false;
    super::pack::each_packed_step_of(conn, run_id, op, |step| {
        twice |= rows.contains(step.keys);
        steps.push((
            step.keys.to_owned(),
            StepValue {
                keys: parse_keys(step.keys),
                status: "succeeded".to_owned(),
                output: step.output.map(|bytes| Arc::from(bytes.0)),
                failure: None,
            },
        ));
    })?;
    Ok((!twice).then_some(steps))
}

/// Where each emitted key of `run_id` stands among its emitter's items
/// (rows and packed): the emitting step's keys as stored → key → its
/// first position. Read in the table's order: a `GROUP BY keys, key` had
/// SQLite sort every item first.
fn item_positions(conn: &rusqlite::Connection, run_id: &str) -> rusqlite::Result<Positions> {
    let mut positions = Positions::default();
    let mut add = |parent: &str, key: &str, seq: i64| {
        let of_parent = match positions.get_mut(parent) {
            Some(found) => found,
            None => positions.entry(parent.to_owned()).or_default(),
        };
        match of_parent.get_mut(key) {
            Some(first) => *first = (*first).min(seq),
            None => {
                of_parent.insert(key.to_owned(), seq);
            }
        }
    };
    let mut stmt = conn.prepare("SELECT keys, key, seq FROM items WHERE run_id = ?1")?;
    let mut rows = stmt.query([run_id])?;
    while let Some(row) = rows.next()? {
        add(
            row.get_ref(0)?.as_str()?,
            row.get_ref(1)?.as_str()?,
            row.get(2)?,
        );
    }
    super::pack::each_packed_item(conn, run_id, add)?;
    Ok(positions)
}

impl SqliteStore {
    /// A value stored by its SHA-256 (any value over the inline size that a
    /// run emitted or returned).
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn value_by_hash(&self, hash: &str) -> Result<Option<Arc<[u8]>>, StoreError> {
        self.conn
            .query_row("SELECT bytes FROM blobs WHERE hash = ?1", [hash], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()
            .map(|bytes| bytes.map(Arc::from))
            .map_err(|e| self.error(&e))
    }
}

impl SqliteStore {
    /// The locked plan a run last ran (JSON), if it was recorded.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn locked_plan(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT plan FROM runs WHERE id = ?1", [run_id], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.error(&e))
    }

    /// The items a step emitted with metadata, in emission order per
    /// output: (output, key, metadata as a JSON array).
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn item_metadata(
        &self,
        run_id: &str,
        op: &str,
        keys: &[String],
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        self.unpack_step(run_id, op, &keys_json(keys))?;
        let query = || -> rusqlite::Result<Vec<(String, String, String)>> {
            let mut stmt = self.conn.prepare(
                "SELECT output, key, metadata FROM items
                 WHERE run_id = ?1 AND op = ?2 AND keys = ?3 AND metadata IS NOT NULL
                 ORDER BY output, seq",
            )?;
            stmt.query_map(params![run_id, op, keys_json(keys)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect()
        };
        query().map_err(|e| self.error(&e))
    }

    /// A step's named plain outputs that were set or carry metadata.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn step_outputs(
        &self,
        run_id: &str,
        op: &str,
        keys: &[String],
    ) -> Result<Vec<crate::store::StoredOutput>, StoreError> {
        self.stored_outputs(run_id, op, &keys_json(keys))
            .map_err(|e| self.error(&e))
    }

    /// The value a step returned, if it succeeded with one.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn step_output(
        &self,
        run_id: &str,
        op: &str,
        keys: &[String],
    ) -> Result<Option<Arc<[u8]>>, StoreError> {
        self.unpack_step(run_id, op, &keys_json(keys))?;
        self.conn
            .query_row(
                "SELECT coalesce(s.output, b.bytes) FROM steps s LEFT JOIN blobs b ON b.hash = s.output_hash
                 WHERE s.run_id = ?1 AND s.op = ?2 AND s.keys = ?3",
                params![run_id, op, keys_json(keys)],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map(|bytes| bytes.flatten().map(Arc::from))
            .map_err(|e| self.error(&e))
    }
}
