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
        self.unpack(run_id)?;
        let query = || -> rusqlite::Result<Vec<StepValue>> {
            let mut stmt = self.conn.prepare(
                "SELECT s.keys, s.status, coalesce(s.output, b.bytes), s.failure_kind, s.failure_message
                 FROM steps s LEFT JOIN blobs b ON b.hash = s.output_hash
                 WHERE s.run_id = ?1 AND s.op = ?2 ORDER BY s.keys",
            )?;
            stmt.query_map(params![run_id, op], |r| {
                let kind: Option<String> = r.get(3)?;
                let message: Option<String> = r.get(4)?;
                Ok(StepValue {
                    keys: parse_keys(&r.get::<_, String>(0)?),
                    status: r.get(1)?,
                    output: r.get::<_, Option<Vec<u8>>>(2)?.map(Arc::from),
                    failure: kind.map(|k| format!("{k}: {}", message.unwrap_or_default())),
                })
            })?
            .collect()
        };
        let mut steps = query().map_err(|e| self.error(&e))?;
        if steps.iter().any(|s| !s.keys.is_empty()) {
            let positions = self.item_positions(run_id)?;
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
            // Stable, over rows sorted by keys: keys no emitter recorded
            // (the same order, last) stay by key. (Keys of one op are
            // equally deep and hold no `"`, so the stored JSON sorts as
            // the keys do.)
            steps.sort_by_cached_key(|s| order(&s.keys));
        }
        Ok(steps)
    }

    /// Where each emitted key stands among its emitter's items: the
    /// emitting step's keys as stored → key → position.
    fn item_positions(&self, run_id: &str) -> Result<Positions, StoreError> {
        let query = || -> rusqlite::Result<Positions> {
            // In the table's order, keeping each key's first position: a
            // `GROUP BY keys, key` had SQLite sort every item first.
            let mut stmt = self
                .conn
                .prepare("SELECT keys, key, seq FROM items WHERE run_id = ?1")?;
            let mut rows = stmt.query([run_id])?;
            let mut positions = Positions::default();
            while let Some(row) = rows.next()? {
                let parent = row.get_ref(0)?.as_str()?;
                let of_parent = match positions.get_mut(parent) {
                    Some(found) => found,
                    None => positions.entry(parent.to_owned()).or_default(),
                };
                let seq: i64 = row.get(2)?;
                let key = row.get_ref(1)?.as_str()?;
                match of_parent.get_mut(key) {
                    Some(first) => *first = (*first).min(seq),
                    None => {
                        of_parent.insert(key.to_owned(), seq);
                    }
                }
            }
            Ok(positions)
        };
        query().map_err(|e| self.error(&e))
    }

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
