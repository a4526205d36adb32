//! Reading the store a page at a time, for the web viewer (`dynhost ui`):
//! every query here touches a bounded number of rows (an index range, the
//! `step_counts` table), so a run with a million keys opens as fast as one
//! with ten. Writing stays in `sqlite.rs`; this module never writes.

use super::{SqliteStore, keys_json, step_columns, step_row, step_row_at};
use crate::store::{StepRow, StoreError};
use rusqlite::{OptionalExtension, params};

/// How many steps of a run, op, status and tolerance there are.
#[derive(Debug, Clone)]
pub struct StepCount {
    /// The op.
    pub op: String,
    /// `succeeded`, `failed` or `skipped`.
    pub status: String,
    /// A tolerant collect ran without these (failed or skipped) steps.
    pub tolerated: bool,
    /// How many.
    pub n: u64,
}

/// Which steps of an op a page shows.
#[derive(Debug, Clone, Default)]
pub struct StepFilter {
    /// Only steps with this status (`succeeded`, `failed`, `skipped`).
    pub status: Option<String>,
    /// Only steps whose (first) key starts with this text.
    pub key: Option<String>,
    /// Where the page starts: the `next` of the page before.
    pub after: Option<(i64, String)>,
    /// For an op inside a map: the op and dynamic output it is mapped over
    /// (the last level of its scope), whose items give the emission order.
    pub emitter: Option<(String, String)>,
}

/// One page of an op's steps.
#[derive(Debug, Clone)]
pub struct StepPage {
    /// The steps, in emission order, without captured output.
    pub steps: Vec<StepRow>,
    /// Where the next page starts, if there is one.
    pub next: Option<(i64, String)>,
}

impl SqliteStore {
    /// Steps per op, status and tolerance of one run, from `step_counts`.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    ///
    /// Counts are kept as steps are recorded, packed or not, so this reads
    /// no pack (except once for a run an older build resumed).
    pub fn step_counts(&self, run_id: &str) -> Result<Vec<StepCount>, StoreError> {
        // A run resumed by a build before schema 15 may count a step it
        // ran again twice until its pack is written out; once settled, its
        // counts are exact as written (see `SqliteStore::record`).
        let unsettled = || -> rusqlite::Result<bool> {
            self.conn
                .prepare_cached("SELECT 1 FROM runs WHERE id = ?1 AND counts_unsettled = 1")?
                .exists([run_id])
        };
        if unsettled().map_err(|e| self.error(&e))? {
            self.unpack(run_id)?;
            self.conn
                .execute(
                    "UPDATE runs SET counts_unsettled = 0 WHERE id = ?1",
                    [run_id],
                )
                .map_err(|e| self.error(&e))?;
        }
        let query = || -> rusqlite::Result<Vec<StepCount>> {
            self.conn
                .prepare_cached(
                    "SELECT op, status, tolerated, n FROM step_counts WHERE run_id = ?1 AND n > 0",
                )?
                .query_map([run_id], |r| {
                    Ok(StepCount {
                        op: r.get(0)?,
                        status: r.get(1)?,
                        tolerated: r.get::<_, i64>(2)? != 0,
                        n: r.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect()
        };
        query().map_err(|e| self.error(&e))
    }

    /// Up to `limit` steps of `op` in `run_id` that pass `filter`, in
    /// emission order (for an op in a map, with `filter.emitter` set; else
    /// by position, then keys), reading one index range whatever the page.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn step_page(
        &self,
        run_id: &str,
        op: &str,
        filter: &StepFilter,
        limit: usize,
    ) -> Result<StepPage, StoreError> {
        // Packs hold only successes: a page of failed or skipped steps
        // needs none of them written out.
        if !matches!(filter.status.as_deref(), Some("failed" | "skipped")) {
            self.unpack(run_id)?;
        }
        // Four shapes, each reading one bounded index range (no index is
        // kept on `steps` for this: the emission order is the `items` table's
        // own key, so recording a step costs nothing more):
        // - by key prefix: a range of the primary key (run, op, keys);
        // - failed or skipped only: the partial index of such steps;
        // - an op mapped over an emitter: the emitter's items in their
        //   order, each joined to its step by primary key;
        // - otherwise (an op outside any map): by keys.
        let mapped = filter.emitter.is_some()
            && filter.key.is_none()
            && !matches!(filter.status.as_deref(), Some("failed" | "skipped"));
        if let (true, Some((emitter, output))) = (mapped, &filter.emitter) {
            return self.mapped_page(run_id, op, emitter, output, filter, limit);
        }
        let columns = step_columns(false);
        let sql = {
            let (access, extra) = match (&filter.key, filter.status.as_deref()) {
                (Some(_), _) => ("", "AND s.keys >= ?4 AND s.keys < ?8"),
                (None, Some("failed" | "skipped")) => (
                    "INDEXED BY steps_unsuccessful",
                    "AND s.status <> 'succeeded' AND ?4 IS NULL AND ?8 IS NULL",
                ),
                (None, _) => ("", "AND ?4 IS NULL AND ?8 IS NULL"),
            };
            format!(
                "SELECT coalesce(s.position, -1), s.keys, {columns}
                 FROM steps s {access} LEFT JOIN blobs b ON b.hash = s.output_hash
                 WHERE s.run_id = ?1 AND s.op = ?2 {extra}
                   AND (?3 IS NULL OR s.status = ?3)
                   AND (?6 IS NULL OR (coalesce(s.position, -1), s.keys) > (?5, ?6))
                 ORDER BY s.position, s.keys LIMIT ?7"
            )
        };
        // ?4 and ?8: a key prefix as a range of stored keys (`["k12` ..
        // `["k12` + the largest char), so it is a seek, not a scan.
        let (p4, p8) = match &filter.key {
            Some(prefix) => {
                let quoted = serde_json::to_string(prefix).unwrap_or_default();
                let low = format!("[{}", quoted.trim_end_matches('"'));
                let high = format!("{low}{}", char::MAX);
                (Some(low), Some(high))
            }
            None => (None, None),
        };
        let (after_position, after_keys) = match &filter.after {
            Some((p, k)) => (Some(*p), Some(k.clone())),
            None => (None, None),
        };
        let query = || -> rusqlite::Result<Vec<(i64, String, StepRow)>> {
            self.conn
                .prepare_cached(&sql)?
                .query_map(
                    params![
                        run_id,
                        op,
                        filter.status,
                        p4,
                        after_position,
                        after_keys,
                        (limit + 1) as i64,
                        p8
                    ],
                    |r| {
                        let position: i64 = r.get(0)?;
                        let keys: String = r.get(1)?;
                        let row = step_row_at(r, 2)?;
                        Ok((position, keys, row))
                    },
                )?
                .collect()
        };
        let rows = query().map_err(|e| self.error(&e))?;
        Ok(page(rows, limit))
    }

    /// [`SqliteStore::step_page`] for an op mapped over `emitter`'s
    /// `output`: the emitter's items in their order (per emitting step, by
    /// `seq`: the primary key of `items`), each joined to its step. The
    /// cursor is (seq, the emitting step's keys); each emitting step is one
    /// index seek, so a page costs the same at the end of a million keys as
    /// at the start.
    fn mapped_page(
        &self,
        run_id: &str,
        op: &str,
        emitter: &str,
        output: &str,
        filter: &StepFilter,
        limit: usize,
    ) -> Result<StepPage, StoreError> {
        let sql = format!(
            "SELECT i.seq, i.keys, {}
             FROM items i
             JOIN steps s ON s.run_id = i.run_id AND s.op = ?2
                  AND s.keys = json_insert(i.keys, '$[#]', i.key)
             LEFT JOIN blobs b ON b.hash = s.output_hash
             WHERE i.run_id = ?1 AND i.op = ?3 AND i.keys = ?4 AND i.output = ?5 AND i.seq > ?6
               AND (?7 IS NULL OR s.status = ?7)
             ORDER BY i.seq LIMIT ?8",
            step_columns(false)
        );
        let (mut seq, mut group) = filter.after.clone().unwrap_or((-1, String::new()));
        let mut rows: Vec<(i64, String, StepRow)> = Vec::new();
        let read = || -> rusqlite::Result<Vec<(i64, String, StepRow)>> {
            loop {
                let want = (limit + 1 - rows.len()) as i64;
                let mut stmt = self.conn.prepare_cached(&sql)?;
                let found = stmt.query_map(
                    params![run_id, op, emitter, group, output, seq, filter.status, want],
                    |r| Ok((r.get(0)?, r.get(1)?, step_row_at(r, 2)?)),
                )?;
                for row in found {
                    rows.push(row?);
                }
                if rows.len() > limit {
                    return Ok(rows);
                }
                // The next emitting step (nested maps have one per outer key).
                let next: Option<String> = self
                    .conn
                    .prepare_cached(
                        "SELECT min(keys) FROM items WHERE run_id = ?1 AND op = ?2 AND keys > ?3",
                    )?
                    .query_row(params![run_id, emitter, group], |r| r.get(0))?;
                match next {
                    Some(next) => {
                        group = next;
                        seq = -1;
                    }
                    None => return Ok(rows),
                }
            }
        };
        let rows = read().map_err(|e| self.error(&e))?;
        Ok(page(rows, limit))
    }

    /// The failed and skipped steps of `run_id` (without captured output),
    /// by op and keys: one range of their partial index. Packs hold only
    /// successes, so this writes no pack out: `show RUN` of a finished
    /// million-step run reads its failures at once.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn unsuccessful_steps(&self, run_id: &str) -> Result<Vec<StepRow>, StoreError> {
        let query = || -> rusqlite::Result<Vec<StepRow>> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {} FROM steps s INDEXED BY steps_unsuccessful
                     LEFT JOIN blobs b ON b.hash = s.output_hash
                     WHERE s.run_id = ?1 AND s.status <> 'succeeded' ORDER BY s.op, s.keys",
                    step_columns(false)
                ))?
                .query_map([run_id], step_row)?
                .collect()
        };
        query().map_err(|e| self.error(&e))
    }

    /// Every step of `run_id` as (op, keys), packed or not, by op and
    /// keys, writing no pack out: what `run --only/--step` checks a
    /// selection against (a million-step run: a fraction of a second, not
    /// the seconds of writing it out).
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn step_keys(&self, run_id: &str) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let query = || -> rusqlite::Result<Vec<(String, String)>> {
            let mut keys: Vec<(String, String)> = self
                .conn
                .prepare_cached("SELECT op, keys FROM steps WHERE run_id = ?1")?
                .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            keys.extend(super::pack::packed_keys(&self.conn, run_id)?);
            Ok(keys)
        };
        let stored = query().map_err(|e| self.error(&e))?;
        let mut keys: Vec<(String, Vec<String>)> = stored
            .into_iter()
            .map(|(op, keys)| (op, super::parse_keys(&keys)))
            .collect();
        // A step run again before its pack was written out is in both.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// One step whole (with captured output), if it is stored.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn step(
        &self,
        run_id: &str,
        op: &str,
        keys: &[String],
    ) -> Result<Option<StepRow>, StoreError> {
        self.unpack_step(run_id, op, &keys_json(keys))?;
        let query = || -> rusqlite::Result<Option<StepRow>> {
            self.conn
                .prepare_cached(&format!(
                    "SELECT {} FROM steps s LEFT JOIN blobs b ON b.hash = s.output_hash
                     WHERE s.run_id = ?1 AND s.op = ?2 AND s.keys = ?3",
                    step_columns(true)
                ))?
                .query_row(params![run_id, op, keys_json(keys)], step_row)
                .optional()
        };
        query().map_err(|e| self.error(&e))
    }

    /// The run's locked plan (JSON), if it was stored.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn run_plan(&self, run_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let query = || -> rusqlite::Result<Option<(Option<String>, String)>> {
            self.conn
                .prepare_cached("SELECT plan, job_hash FROM runs WHERE id = ?1")?
                .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        };
        let found = query().map_err(|e| self.error(&e))?;
        Ok(found.and_then(|(plan, hash)| plan.map(|p| (p, hash))))
    }

    /// The newest event's sequence number (0 for none): a page that saw a
    /// smaller one is out of date.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    pub fn cursor(&self) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.error(&e))
    }
}

/// A page of up to `limit` rows from `limit + 1` read (cursor, keys, row):
/// the extra row, if any, says there is a next page, starting after the last.
fn page(mut rows: Vec<(i64, String, StepRow)>, limit: usize) -> StepPage {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(p, k, _)| (*p, k.clone()))
    } else {
        None
    };
    StepPage {
        steps: rows.into_iter().map(|(_, _, row)| row).collect(),
        next,
    }
}
