//! What the executor keeps and reuses: finished steps go to the run store on a
//! writer thread (group commit: whatever is queued goes in one transaction,
//! each step whole), and stored successes are reused on resume when their
//! inputs are the same.

use super::scheduler::{Emitted, StepId};
use super::values::Values;
use crate::key::{KeyPath, MappingKey};
use crate::plan::{Plan, PlannedOp};
use crate::runtime::{InputData, StepReport};
use crate::store::{ItemsRecord, PriorStep, RunStore, StepRecord, StepStatus, StoreError, Write};
use crossbeam_channel::{Sender, bounded};
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The store handed back after the last write, with the first write error.
pub(crate) type Flushed = (Box<dyn RunStore>, Option<StoreError>);

/// Most writes in one transaction.
const MAX_GROUP: usize = 4096;

/// Writes queued for the writer thread before the coordinator waits. The
/// queue is bounded so that a store slower than the workers slows the run
/// down instead of holding every finished step in memory.
const QUEUE: usize = 2 * MAX_GROUP;

/// Writes items and finished steps to the store from its own thread, so the
/// coordinator waits for the disk only when the queue is full.
pub(crate) struct Recorder {
    tx: Option<Sender<Write>>,
    thread: Option<JoinHandle<Flushed>>,
}

impl Recorder {
    pub fn start(mut store: Box<dyn RunStore>, run_id: String) -> Self {
        let (tx, rx) = bounded::<Write>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("dynhost-store".into())
            .spawn(move || {
                let mut error = None;
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(record) => group.push(record),
                            Err(_) => break,
                        }
                    }
                    if error.is_none()
                        && let Err(e) = store.record(&run_id, &group)
                    {
                        error = Some(e);
                    }
                }
                (store, error)
            })
            .ok();
        Self {
            tx: Some(tx),
            thread,
        }
    }

    pub fn record(&self, record: StepRecord) {
        self.write(Write::Step(Box::new(record)));
    }

    /// Queues items a running step emitted.
    pub fn record_items(&self, items: ItemsRecord) {
        self.write(Write::Items(items));
    }

    fn write(&self, write: Write) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(write);
        }
    }

    /// Flushes everything queued and hands the store back.
    pub fn finish(mut self) -> Option<Flushed> {
        drop(self.tx.take());
        self.thread.take().and_then(|t| t.join().ok())
    }
}

/// A stored success, resolved against this run's plan.
pub(crate) struct Prior {
    pub input_hash: Option<String>,
    pub output: Arc<[u8]>,
    pub items: Vec<(String, MappingKey, Arc<[u8]>)>,
}

/// Indexes stored successes by step; steps of ops the job no longer has, or
/// with keys that are no longer valid, are left out.
pub(crate) fn prior_map(plan: &Plan, prior: Vec<PriorStep>) -> FxHashMap<StepId, Prior> {
    let mut map = FxHashMap::default();
    for step in prior {
        let Some(op) = plan.op_id(&step.op) else {
            continue;
        };
        let Ok(keys) = step
            .keys
            .iter()
            .map(|k| MappingKey::parse(k))
            .collect::<Result<KeyPath, _>>()
        else {
            continue;
        };
        let items = step
            .items
            .into_iter()
            .filter_map(|(output, key, value)| {
                MappingKey::parse(&key).ok().map(|k| (output, k, value))
            })
            .collect();
        map.insert(
            StepId { op, keys },
            Prior {
                input_hash: step.input_hash,
                output: step.output,
                items,
            },
        );
    }
    map
}

/// SHA-256 over a step's inputs (`op`'s, in plan order): names, values,
/// collected keys and failures.
pub(crate) fn hash_inputs(op: &PlannedOp, inputs: &[InputData]) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (input, data) in op.inputs.iter().zip(inputs) {
        field(input.name.as_bytes());
        match data {
            InputData::Single(bytes) => field(bytes),
            InputData::Collected { items, failed } => {
                for (keys, value) in items {
                    for key in keys {
                        field(key.as_str().as_bytes());
                    }
                    field(value);
                }
                for (keys, failure) in failed {
                    for key in keys {
                        field(key.as_str().as_bytes());
                    }
                    field(failure.kind.as_str().as_bytes());
                }
            }
        }
    }
    crate::runtime::cache::hex(&h.finalize())
}

/// A JSON summary of a step's inputs, for `dynhost show`.
pub(crate) fn describe_inputs(op: &PlannedOp, inputs: &[InputData]) -> String {
    let list: Vec<serde_json::Value> = op
        .inputs
        .iter()
        .zip(inputs)
        .map(|(input, data)| {
            let name = input.name.as_str();
            match data {
            InputData::Single(bytes) => serde_json::json!({
                "name": name, "kind": "single", "bytes": bytes.len(), "sha256": crate::store::hash_bytes(bytes),
            }),
            InputData::Collected { items, failed } => serde_json::json!({
                "name": name, "kind": "collected", "items": items.len(), "failed": failed.len(),
            }),
        }})
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// The memoization key of a step: component, config and inputs.
pub(crate) fn memo_key(component_hash: &str, config_json: &str, input_hash: &str) -> String {
    let mut h = Sha256::new();
    for part in [component_hash, config_json, input_hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    crate::runtime::cache::hex(&h.finalize())
}

/// What to store for a step: its outcome, accounting, output and items.
pub(crate) struct Finished<'a> {
    pub plan: &'a Plan,
    pub step: &'a StepId,
    pub attempts: u32,
    pub input_hash: Option<String>,
    pub memo_key: Option<String>,
    pub inputs: Option<String>,
    pub emitted: Option<&'a Emitted>,
    pub values: &'a Values,
}

impl Finished<'_> {
    /// The record without outcome details; with the step's items from
    /// memory unless `streamed` (a step that ran sent them as it emitted).
    fn base(&self, status: StepStatus, streamed: bool) -> StepRecord {
        let items: Vec<_> = self
            .emitted
            .filter(|_| !streamed)
            .into_iter()
            .flat_map(|e| e.iter())
            .flat_map(|(output, items)| {
                items.order.iter().filter_map(move |(k, v)| {
                    match self.values.get(v) {
                        Ok(bytes) => Some((output.clone(), k.to_string(), bytes)),
                        Err(e) => {
                            // The disk failed under the run: the step is
                            // recorded without this item, so a resume reruns
                            // the steps mapped over it rather than trusting it.
                            tracing::error!("cannot read a spilled item back to record it: {e}");
                            None
                        }
                    }
                })
            })
            .collect();
        StepRecord {
            op: self.plan.ops[self.step.op].name.clone(),
            keys: self.step.keys.iter().map(ToString::to_string).collect(),
            status,
            attempts: self.attempts,
            wall_secs: 0.0,
            failure_kind: None,
            failure_message: None,
            peak_memory_bytes: 0,
            emitted_items: 0,
            emitted_bytes: 0,
            fuel_used: None,
            input_hash: self.input_hash.clone(),
            memo_key: self.memo_key.clone(),
            output: None,
            items,
            items_streamed: streamed,
            stdout: String::new(),
            stderr: String::new(),
            log: String::new(),
            inputs: self.inputs.clone(),
            executed: false,
        }
    }

    /// A step that ran.
    pub fn ran(&self, report: &StepReport) -> StepRecord {
        let status = if report.outcome.is_ok() {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        };
        let mut record = self.base(status, true);
        record.wall_secs = report.stats.wall.as_secs_f64();
        record.peak_memory_bytes = report.stats.peak_memory_bytes;
        record.emitted_items = report.stats.emitted_items;
        record.emitted_bytes = report.stats.emitted_bytes;
        record.fuel_used = report.stats.fuel_used;
        match &report.outcome {
            Ok(value) => record.output = Some(Arc::from(value.as_slice())),
            Err(f) => {
                record.failure_kind = Some(f.kind.as_str().to_owned());
                record.failure_message = Some(f.message.clone());
            }
        }
        record.stdout = report.stdout.clone();
        record.stderr = report.stderr.clone();
        record.log = report.log.clone();
        record.executed = true;
        record
    }

    /// A step reused from a stored success.
    pub fn reused(&self, output: &Arc<[u8]>) -> StepRecord {
        let mut record = self.base(StepStatus::Succeeded, false);
        record.output = Some(output.clone());
        record
    }

    /// A step that never ran.
    pub fn skipped(&self, reason: &str) -> StepRecord {
        let mut record = self.base(StepStatus::Skipped, false);
        record.failure_kind = Some("skipped".to_owned());
        record.failure_message = Some(reason.to_owned());
        record
    }
}
