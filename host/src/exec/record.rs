//! What the executor keeps and reuses: finished steps go to the run store on a
//! writer thread that never falls more than a moment behind (see
//! [`Recorder`]), and stored successes are reused on resume when their inputs
//! are the same.

use super::scheduler::{Emitted, StepId};
use super::values::Values;
use crate::key::{KeyPath, MappingKey};
use crate::plan::{Plan, PlannedOp};
use crate::runtime::{InputData, StepReport};
use crate::store::{
    Digest, InputSummary, ItemsRecord, PriorStep, RunStore, StepRecord, StepStatus, StoreError,
    StoredItem, StoredOutput, Write,
};
use crossbeam_channel::{Sender, unbounded};
use rustc_hash::FxHashMap;
use sha2::{Digest as _, Sha256};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The store handed back after the last write, with the first write error
/// and what the writer did.
pub(crate) type Flushed = (Box<dyn RunStore>, Option<StoreError>, RecorderStats);

/// What recording a run cost: writes, commits and the writer thread's CPU
/// time, so the store's share of a run can be told from the workers' (a
/// whole-process CPU ratio moves with the machine's noise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Writes queued: finished steps, batches of items, tolerated marks.
    pub writes: u64,
    /// Transactions they went in.
    pub commits: u64,
    /// The writer thread's CPU time (user and system), where the OS tells it.
    pub cpu: Option<Duration>,
}

/// The calling thread's CPU time so far, from `/proc/thread-self/schedstat`
/// (nanoseconds on the CPU); `None` where there is no such file.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// How far the store may fall behind the run, in time: a step reported
/// finished is committed within about twice this (its wait in the queue plus
/// the commit it lands in, after at most [`SEND_WAIT`] in the coordinator's
/// batch), so a SIGKILL or power cut loses at most that much finished work,
/// which a resume then runs again.
pub(crate) const MAX_LAG: Duration = Duration::from_millis(150);

/// How long the writer lets a group of writes grow after the first: a
/// million-step run then commits at most ~50 times a second rather than
/// ~650, each commit's fixed work (the WAL header, the counts, and SQLite's
/// end-of-transaction scan of its whole page cache, which every commit
/// after a B-tree split pays) is paid less often, and the coordinator's
/// sends seldom wake the writer. Small against [`MAX_LAG`]; 5 ms cost the
/// writer ~0.2 µs more per key. Not more: at 60 ms a group nears
/// [`MAX_IN_FLIGHT`] at a million-key run's pace, the coordinator waits for
/// room, and the store bench's wall ratio went from ~1.15 to 1.35–1.42.
const GATHER: Duration = Duration::from_millis(20);

/// Writes in flight while the store's speed is not known yet.
const FIRST_IN_FLIGHT: usize = 256;

/// The least ever allowed in flight, however slow each write is (a value of
/// hundreds of MiB): the coordinator is never held to one write at a time.
const MIN_IN_FLIGHT: usize = 8;

/// Most writes in flight however fast the store is: bounds the memory held
/// by finished steps waiting for the disk.
const MAX_IN_FLIGHT: usize = 8192;

/// Writes the coordinator sends to the writer at once. Sending each alone
/// (a lock for the pace and a channel message per finished step) was a
/// fifth of what recording cost the coordinator of a million-key run.
const SEND_BATCH: usize = 64;

/// How long a write may wait on the coordinator to fill its batch: small
/// against [`MAX_LAG`], which bounds the time it then takes to commit.
const SEND_WAIT: Duration = Duration::from_millis(2);

/// Writes items and finished steps to the store from its own thread, so the
/// coordinator waits for the disk only when the store falls behind.
///
/// Everything queued goes in one transaction (group commit), each step whole.
/// The queue is bounded by time, not by length: the writer measures how many
/// writes it commits per second and the coordinator waits whenever more are
/// in flight than it commits in [`MAX_LAG`]. A store slower than the workers
/// therefore slows the run down instead of piling up uncommitted work; with a
/// fixed length (8192 writes) a kill used to lose thousands of finished steps
/// when values were large.
pub(crate) struct Recorder {
    tx: Option<Sender<Vec<Write>>>,
    /// Writes not sent yet: the coordinator sends them [`SEND_BATCH`] at a
    /// time (one admission and one channel message each, not one per
    /// write), and whatever is here before it waits for workers
    /// ([`Recorder::flush`]) or once it is [`SEND_WAIT`] old
    /// ([`Recorder::tick`]).
    pending: RefCell<Vec<Write>>,
    /// When the oldest pending write was queued.
    pending_since: Cell<Option<Instant>>,
    pace: Arc<Pace>,
    /// Set by [`Recorder::finish`]: the writer stops gathering.
    finishing: Arc<AtomicBool>,
    thread: Option<JoinHandle<Flushed>>,
}

/// Writes sent but not yet committed, and how many may be.
struct Pace {
    state: Mutex<PaceState>,
    committed: Condvar,
}

struct PaceState {
    in_flight: usize,
    allowed: usize,
    /// The store's measured speed, writes per second (moving average).
    rate: f64,
}

impl Pace {
    fn new() -> Self {
        Self {
            state: Mutex::new(PaceState {
                in_flight: 0,
                allowed: FIRST_IN_FLIGHT,
                rate: 0.0,
            }),
            committed: Condvar::new(),
        }
    }

    /// Waits until `count` more writes may be in flight (or none is: a
    /// batch larger than allowed goes alone), and counts them.
    fn admit(&self, count: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.in_flight > 0 && state.in_flight + count > state.allowed {
            state = self
                .committed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        state.in_flight += count;
    }

    /// `count` writes were committed (or dropped after a write error) in `took`.
    fn done(&self, count: usize, took: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_flight = state.in_flight.saturating_sub(count);
        let rate = count as f64 / took.as_secs_f64().max(1e-6);
        state.rate = if state.rate == 0.0 {
            rate
        } else {
            0.7 * state.rate + 0.3 * rate
        };
        // Writes the store commits in MAX_LAG at its measured speed.
        let allowed = (state.rate * MAX_LAG.as_secs_f64()) as usize;
        state.allowed = allowed.clamp(MIN_IN_FLIGHT, MAX_IN_FLIGHT);
        self.committed.notify_all();
    }

    /// The writer is gone: nobody will wait for it again.
    fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.allowed = usize::MAX;
        self.committed.notify_all();
    }
}

/// Closes the pace when the writer thread ends, even by a panic, so the
/// coordinator never waits for a writer that is gone.
struct CloseOnExit(Arc<Pace>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Recorder {
    pub fn start(store: Box<dyn RunStore>, run_id: String) -> Self {
        Self::gathering(store, run_id, GATHER)
    }

    /// [`Recorder::start`] with the time a group grows before its commit.
    fn gathering(mut store: Box<dyn RunStore>, run_id: String, gather: Duration) -> Self {
        let (tx, rx) = unbounded::<Vec<Write>>();
        let pace = Arc::new(Pace::new());
        let writer_pace = pace.clone();
        let finishing = Arc::new(AtomicBool::new(false));
        let writer_finishing = finishing.clone();
        let thread = std::thread::Builder::new()
            .name("dynhost-store".into())
            .spawn(move || {
                let _closed = CloseOnExit(writer_pace.clone());
                let mut error = None;
                let mut stats = RecorderStats::default();
                while let Ok(first) = rx.recv() {
                    // Let the group grow: at most one commit per GATHER,
                    // and meanwhile the coordinator's sends need not wake
                    // this thread. The end of the run does (`finish`): a
                    // short run does not wait out the gather.
                    let until = Instant::now() + gather;
                    while !writer_finishing.load(Ordering::Acquire) {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::park_timeout(left);
                    }
                    let mut group = first;
                    for batch in rx.try_iter() {
                        group.extend(batch);
                        if group.len() >= MAX_IN_FLIGHT {
                            break;
                        }
                    }
                    let start = Instant::now();
                    if error.is_none()
                        && let Err(e) = store.record(&run_id, &group)
                    {
                        error = Some(e);
                    }
                    writer_pace.done(group.len(), start.elapsed());
                    stats.writes += group.len() as u64;
                    stats.commits += 1;
                }
                stats.cpu = thread_cpu();
                (store, error, stats)
            })
            .ok();
        Self {
            tx: Some(tx),
            pending: RefCell::new(Vec::with_capacity(SEND_BATCH)),
            pending_since: Cell::new(None),
            pace,
            finishing,
            thread,
        }
    }

    pub fn record(&self, record: Box<StepRecord>) {
        self.write(Write::Step(record));
    }

    /// Marks failed or skipped steps that a tolerant collect ran without.
    pub fn record_tolerated(&self, steps: Vec<(String, Vec<String>)>) {
        self.write(Write::Tolerated(steps));
    }

    /// Queues items a running step emitted.
    pub fn record_items(&self, items: ItemsRecord) {
        self.write(Write::Items(items));
    }

    fn write(&self, write: Write) {
        if self.tx.is_none() || self.thread.is_none() {
            return;
        }
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            self.pending_since.set(Some(Instant::now()));
        }
        pending.push(write);
        let full = pending.len() >= SEND_BATCH;
        drop(pending);
        if full {
            self.flush();
        }
    }

    /// Sends the pending writes to the writer (waiting for room if the
    /// store is behind). Call before waiting for anything else.
    pub fn flush(&self) {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut *pending, Vec::with_capacity(SEND_BATCH));
        drop(pending);
        self.pending_since.set(None);
        if let Some(tx) = &self.tx {
            self.pace.admit(batch.len());
            let _ = tx.send(batch);
        }
    }

    /// Sends the pending writes if the oldest has waited [`SEND_WAIT`]:
    /// call as often as convenient while busy.
    pub fn tick(&self) {
        if self
            .pending_since
            .get()
            .is_some_and(|since| since.elapsed() >= SEND_WAIT)
        {
            self.flush();
        }
    }

    /// Flushes everything queued and hands the store back.
    pub fn finish(mut self) -> Option<Flushed> {
        self.flush();
        drop(self.tx.take());
        self.finishing.store(true, Ordering::Release);
        let thread = self.thread.take()?;
        thread.thread().unpark();
        thread.join().ok()
    }
}

/// A stored success, resolved against this run's plan.
pub(crate) struct Prior {
    pub input_hash: Option<Digest>,
    pub memo_key: Option<Digest>,
    pub output: Arc<[u8]>,
    pub no_value: bool,
    pub metadata: Option<Box<str>>,
    pub outputs: Vec<StoredOutput>,
    /// Items whose keys are still valid, with those keys parsed.
    pub items: Vec<(MappingKey, StoredItem)>,
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
            .filter_map(|item| MappingKey::parse(&item.key).ok().map(|k| (k, item)))
            .collect();
        map.insert(
            StepId::new(op, keys),
            Prior {
                input_hash: step.input_hash,
                memo_key: step.memo_key,
                output: step.output,
                no_value: step.no_value,
                metadata: step.metadata,
                outputs: step.outputs,
                items,
            },
        );
    }
    map
}

/// SHA-256 over a step's inputs (`op`'s, in plan order): names, values,
/// collected keys and failures.
pub(crate) fn hash_inputs(op: &PlannedOp, inputs: &[InputData]) -> Digest {
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
                for (keys, value) in items.iter() {
                    for key in keys.iter() {
                        field(key.as_bytes());
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
    Digest(h.finalize().into())
}

/// Inputs up to this size are kept whole in the summary; larger ones are
/// found by their SHA-256 among the store's values (every value over this
/// size is stored once, by hash).
const INLINE_INPUT: usize = crate::store::INLINE_MAX;

/// This step's part of its input summary ([`InputSummary::values`]): per
/// input its size, and a small value whole (as hex) or a larger one by the
/// hash it is stored under, so `show` can print every input. The names and
/// sources are the op's ([`input_heads`]), stored once per run.
///
/// Written by hand into one string: this runs for every recorded step, and
/// serde (a hex string per value) showed in the coordinator's profile.
pub(crate) fn describe_inputs(inputs: &[InputData]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 + inputs.len() * 24);
    out.push('[');
    for (i, data) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // (Writing to a String cannot fail.)
        match data {
            // A small value is kept whole (its size is the hex's half); a
            // larger one by the hash it is stored under (hashing a small
            // one too cost every mapped step a SHA-256 and 80 bytes).
            InputData::Single(bytes) if bytes.len() <= INLINE_INPUT => {
                out.push_str(r#"{"hex":""#);
                crate::runtime::cache::push_hex(&mut out, bytes);
                out.push_str("\"}");
            }
            InputData::Single(bytes) => {
                let _ = write!(
                    out,
                    r#"{{"bytes":{},"sha256":"{}"}}"#,
                    bytes.len(),
                    crate::store::hash_bytes(bytes)
                );
            }
            InputData::Collected { items, failed } => {
                let _ = write!(
                    out,
                    r#"{{"items":{},"failed":{}}}"#,
                    items.len(),
                    failed.len()
                );
            }
        }
    }
    out.push(']');
    out
}

/// Per op, the names every record of its steps repeats, made once per run
/// and shared: a million-key run builds a million records, and a string
/// each was an allocation on the coordinator freed on the store's thread.
pub(crate) struct OpNames {
    pub op: Arc<str>,
    /// Its dynamic outputs, by index.
    pub outputs: Vec<Arc<str>>,
    /// Its inputs' heads ([`input_heads`]).
    pub heads: Arc<str>,
    /// The op has `cache = true`.
    pub cache: bool,
}

/// [`OpNames`] of each op of `plan`.
pub(crate) fn op_names(plan: &Plan) -> Vec<OpNames> {
    plan.ops
        .iter()
        .zip(input_heads(plan))
        .map(|(op, heads)| OpNames {
            op: Arc::from(op.name.as_str()),
            outputs: op
                .dynamic_outputs
                .iter()
                .map(|o| Arc::from(o.as_str()))
                .collect(),
            heads,
            cache: op.cache,
        })
        .collect()
}

/// Per op, its inputs' names, sources (`item of `emit.result``) and kinds
/// as a JSON array ([`InputSummary::heads`]): the same for every step of
/// the op, so built once and stored once per run.
pub(crate) fn input_heads(plan: &Plan) -> Vec<Arc<str>> {
    use crate::plan::{CollectTarget, Source};
    let name = |id: usize| plan.ops[id].name.as_str();
    plan.ops
        .iter()
        .map(|op| {
            let heads: Vec<serde_json::Value> = op
                .inputs
                .iter()
                .map(|input| {
                    let (from, kind) = match &input.source {
                        Source::Value(v) => (format!("value of `{}`", v.label(plan)), "single"),
                        Source::Item(d) => {
                            (format!("item of `{}.{}`", name(d.op), d.output), "single")
                        }
                        Source::Collect(CollectTarget::Values(v), _) => {
                            (format!("collect of `{}`", v.label(plan)), "collected")
                        }
                        Source::Collect(CollectTarget::Items(d), _) => (
                            format!("collect of `{}.{}`", name(d.op), d.output),
                            "collected",
                        ),
                    };
                    serde_json::json!({"name": input.name, "from": from, "kind": kind})
                })
                .collect();
            Arc::from(serde_json::Value::from(heads).to_string())
        })
        .collect()
}

/// The memoization key of an op's steps, up to their inputs: SHA-256 over
/// the component's hash and the config, hashed once per op (a config can be
/// large, and every recorded step needs a key).
#[derive(Clone)]
pub(crate) struct MemoPrefix(Sha256);

impl MemoPrefix {
    pub fn new(component_hash: &str, config_json: &str) -> Self {
        let mut h = Sha256::new();
        for part in [component_hash, config_json] {
            feed(&mut h, part.as_bytes());
        }
        Self(h)
    }

    /// The memoization key of a step with inputs `input_hash`: component,
    /// config and inputs.
    pub fn key(&self, input_hash: &Digest) -> Digest {
        let mut h = self.0.clone();
        // The input hash goes in as the hex text it was before schema 12,
        // so memo keys stored then still match.
        // (On the stack: this runs for every step.)
        let mut hex = [0; 64];
        for (pair, b) in hex.chunks_exact_mut(2).zip(input_hash.0) {
            pair.copy_from_slice(&crate::runtime::cache::hex_pair(b));
        }
        feed(&mut h, &hex);
        Digest(h.finalize().into())
    }
}

/// One length-prefixed part of a hash, so parts cannot run into each other.
fn feed(h: &mut Sha256, part: &[u8]) {
    h.update((part.len() as u64).to_le_bytes());
    h.update(part);
}

/// What a started step's record says about its inputs, kept from its start
/// to its record.
pub(crate) struct Hashes {
    /// SHA-256 over the inputs ([`hash_inputs`]).
    pub input: Digest,
    /// The memo key: component, config and inputs ([`MemoPrefix::key`]).
    pub memo_key: Digest,
    /// The summary `show` prints ([`describe_inputs`]), when recording.
    pub summary: Option<InputSummary>,
}

/// What to store for a step: its outcome, accounting, output and items.
pub(crate) struct Finished<'a> {
    /// The names of the step's op.
    pub names: &'a OpNames,
    pub step: &'a StepId,
    pub attempts: u32,
    /// `None` for a step that never started (skipped).
    pub hashes: Option<Hashes>,
    pub emitted: Option<&'a Emitted>,
    pub values: &'a Values,
    /// The step's item among its emitter's, for steps inside a map.
    pub position: Option<u32>,
}

impl Finished<'_> {
    /// The record without outcome details; with the step's items from
    /// memory unless `streamed` (a step that ran sent them as it emitted).
    fn base(&mut self, status: StepStatus, streamed: bool) -> Box<StepRecord> {
        let (input_hash, memo_key, inputs) = match self.hashes.take() {
            Some(h) => (Some(h.input), Some(h.memo_key), h.summary),
            None => (None, None, None),
        };
        let values = self.values;
        let items: Vec<_> = self
            .emitted
            .filter(|_| !streamed)
            .into_iter()
            .flat_map(|e| e.iter())
            .flat_map(|(output, items)| {
                items.order.iter().filter_map(move |(k, v)| {
                    match values.get(v) {
                        Ok(value) => Some(StoredItem {
                            output: Arc::from(output.as_str()),
                            key: k.as_str().to_owned(),
                            value,
                            metadata: None,
                        }),
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
        // Boxed at once: the record is ~400 bytes, moved on to the store.
        Box::new(StepRecord {
            op: self.names.op.clone(),
            keys: self.step.keys.clone(),
            position: self.position,
            status,
            attempts: self.attempts,
            wall_secs: 0.0,
            failure_kind: None,
            failure_message: None,
            peak_memory_bytes: 0,
            emitted_items: 0,
            emitted_bytes: 0,
            fuel_used: None,
            input_hash,
            memo_key,
            memoized: self.names.cache,
            output: None,
            metadata: None,
            no_value: false,
            services: None,
            outputs: Vec::new(),
            items,
            items_streamed: streamed,
            stdout: String::new(),
            stderr: String::new(),
            log: String::new(),
            inputs,
            executed: false,
        })
    }

    /// A step that ran.
    pub fn ran(mut self, report: &StepReport) -> Box<StepRecord> {
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
        record.services = services_json(&report.stats);
        match &report.outcome {
            Ok(value) => {
                record.output = Some(Arc::from(value.as_slice()));
                record.metadata = report.metadata.clone();
                record.no_value = report.no_value;
                record.outputs = report
                    .outputs
                    .iter()
                    .map(|named| StoredOutput {
                        name: named.name.clone(),
                        value: named.value.as_deref().map(Arc::from),
                        metadata: named.metadata.clone(),
                    })
                    .collect();
            }
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

    /// A step reused from a stored success: its value, metadata and items
    /// (with theirs) as stored.
    pub fn reused(mut self, prior: &Prior) -> Box<StepRecord> {
        let mut record = self.base(StepStatus::Succeeded, true);
        record.output = Some(prior.output.clone());
        record.no_value = prior.no_value;
        record.metadata = prior.metadata.clone();
        record.outputs = prior.outputs.clone();
        record.items_streamed = false;
        record.items = prior.items.iter().map(|(_, item)| item.clone()).collect();
        record
    }

    /// A step that never ran.
    pub fn skipped(mut self, reason: &str) -> Box<StepRecord> {
        let mut record = self.base(StepStatus::Skipped, false);
        record.failure_kind = Some("skipped".to_owned());
        record.failure_message = Some(reason.to_owned());
        record
    }
}

/// The `services` column: HTTP accounting and time waited for limits, only
/// for steps that had any (a million plain steps store nothing).
fn services_json(s: &crate::runtime::StepStats) -> Option<String> {
    (s.http_requests > 0 || !s.waited.is_zero()).then(|| {
        serde_json::json!({
            "http_requests": s.http_requests,
            "http_sent_bytes": s.http_sent_bytes,
            "http_received_bytes": s.http_received_bytes,
            "waited_secs": s.waited.as_secs_f64(),
        })
        .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunRecord, RunStatus, RunSummary, StepRow};
    use std::sync::mpsc;

    /// A store that takes `per_write` for each write and reports, per write,
    /// when it was committed.
    struct SlowStore {
        per_write: Duration,
        committed: mpsc::Sender<(u64, Instant)>,
    }

    /// A recorder over a [`SlowStore`] taking `per_write` a write and
    /// gathering for `gather`, with the store's reports of its commits.
    fn slow_recorder(
        per_write: Duration,
        gather: Duration,
    ) -> (Recorder, mpsc::Receiver<(u64, Instant)>) {
        let (tx, rx) = mpsc::channel();
        let store = SlowStore {
            per_write,
            committed: tx,
        };
        (
            Recorder::gathering(Box::new(store), "run".into(), gather),
            rx,
        )
    }

    impl RunStore for SlowStore {
        fn begin_run(&mut self, _: &RunRecord) -> Result<(), StoreError> {
            Ok(())
        }
        fn record(&mut self, _: &str, writes: &[Write]) -> Result<(), StoreError> {
            std::thread::sleep(self.per_write * writes.len() as u32);
            let now = Instant::now();
            for write in writes {
                if let Write::Items(items) = write {
                    let _ = self.committed.send((items.first_seq, now));
                }
            }
            Ok(())
        }
        fn finish_run(&mut self, _: &str, _: RunStatus) -> Result<(), StoreError> {
            Ok(())
        }
        fn run(&self, run_id: &str) -> Result<RunSummary, StoreError> {
            Err(StoreError::UnknownRun {
                path: "slow".into(),
                run: run_id.to_owned(),
            })
        }
        fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
            Ok(Vec::new())
        }
        fn steps(&self, _: &str) -> Result<Vec<StepRow>, StoreError> {
            Ok(Vec::new())
        }
        fn successes(&self, _: &str) -> Result<Vec<PriorStep>, StoreError> {
            Ok(Vec::new())
        }
        fn memoized(&self, _: &Digest) -> Result<Option<PriorStep>, StoreError> {
            Ok(None)
        }
    }

    /// An op's input heads say per input its name, source and kind; a
    /// step's hand-written part its values in the same order, small ones
    /// whole and large ones by hash; both are JSON.
    #[test]
    fn input_summaries_are_json_with_each_inputs_kind_and_size() {
        use crate::runtime::InputData;
        let (_dir, plan) = crate::exec::tests::plan(
            r#"[ops.emit]
component = "op.wasm"
dynamic = true
[ops.load]
component = "op.wasm"
[ops.work]
component = "op.wasm"
inputs.v = { map = "emit" }
inputs.big = "load"
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "work" }
"#,
        );
        let heads = input_heads(&plan);
        let id = |name: &str| plan.op_id(name).unwrap();
        let parse =
            |text: &str| -> serde_json::Value { serde_json::from_str(text).expect("valid JSON") };
        let big = vec![1u8; INLINE_INPUT + 1];
        // In the plan's order of the op's inputs.
        let work_inputs = &plan.ops[id("work")].inputs;
        let work: Vec<InputData> = work_inputs
            .iter()
            .map(|input| match input.name.as_str() {
                "v" => InputData::Single(Arc::from(&[0xab, 0x01][..])),
                _ => InputData::Single(Arc::from(big.as_slice())),
            })
            .collect();
        let expected = |name: &str| match name {
            "v" => (
                serde_json::json!({"name": "v", "from": "item of `emit.result`", "kind": "single"}),
                serde_json::json!({"hex": "ab01"}),
            ),
            _ => (
                serde_json::json!({"name": "big", "from": "value of `load`", "kind": "single"}),
                serde_json::json!({"bytes": INLINE_INPUT + 1,
                                   "sha256": crate::store::hash_bytes(&big)}),
            ),
        };
        let (want_heads, want_values): (Vec<_>, Vec<_>) =
            work_inputs.iter().map(|i| expected(&i.name)).unzip();
        assert_eq!(
            parse(&heads[id("work")]),
            serde_json::Value::from(want_heads)
        );
        assert_eq!(
            parse(&describe_inputs(&work)),
            serde_json::Value::from(want_values)
        );
        let all = [InputData::Collected {
            items: Default::default(),
            failed: Vec::new(),
        }];
        assert_eq!(
            parse(&heads[id("all")]),
            serde_json::json!([{"name": "vs", "from": "collect of `work`", "kind": "collected"}])
        );
        assert_eq!(
            parse(&describe_inputs(&all)),
            serde_json::json!([{"items": 0, "failed": 0}])
        );
        assert_eq!(&*heads[id("emit")], "[]");
        assert_eq!(describe_inputs(&[]), "[]");
    }

    /// The writer says what it did: every write counted, gathered into
    /// fewer commits, and its own CPU time.
    #[test]
    fn the_writer_reports_its_writes_commits_and_cpu() {
        // A store that sleeps (50 µs a write, milliseconds a commit): the
        // kernel adds a thread's running time to `schedstat` when it leaves
        // the CPU, and a writer that `finish` wakes may otherwise never
        // have left it. (At 1 µs a write this failed once on a loaded
        // machine: a sleep whose timer has expired before the thread gets
        // to wait does not leave the CPU.)
        let (recorder, rx) = slow_recorder(Duration::from_micros(50), GATHER);
        for seq in 0..100 {
            recorder.record_items(ItemsRecord {
                op: "op".into(),
                keys: KeyPath::new(),
                first_seq: seq,
                items: Vec::new(),
            });
        }
        let (_, error, stats) = recorder.finish().expect("the writer ran");
        assert!(error.is_none());
        assert_eq!(rx.try_iter().count(), 100, "every write reached the store");
        assert_eq!(stats.writes, 100);
        assert!(
            (1..100).contains(&stats.commits),
            "writes sent at once share commits: {stats:?}"
        );
        if cfg!(target_os = "linux") {
            assert!(
                stats.cpu.is_some_and(|cpu| cpu > Duration::ZERO),
                "{stats:?}"
            );
        }
    }

    /// The end of a run does not wait out the gather: `finish` wakes the
    /// writer, which commits what is queued at once (a 5-key job took
    /// 20 ms longer otherwise). A gather of a minute makes a writer that
    /// waits it out fail this by a wide margin.
    #[test]
    fn finishing_commits_at_once_without_waiting_out_the_gather() {
        let (recorder, rx) = slow_recorder(Duration::ZERO, Duration::from_secs(60));
        recorder.record_items(ItemsRecord {
            op: "op".into(),
            keys: KeyPath::new(),
            first_seq: 0,
            items: Vec::new(),
        });
        // Let the writer take the write and start gathering.
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let (_, error, stats) = recorder.finish().expect("the writer ran");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "finish waited {:?} for the gather",
            start.elapsed()
        );
        assert!(error.is_none());
        assert_eq!(stats.writes, 1);
        assert_eq!(rx.try_iter().count(), 1, "the write reached the store");
    }

    /// The coordinator sends writes in batches: one short of a batch waits
    /// until it is [`SEND_WAIT`] old and the coordinator ticks (or flushes
    /// before waiting), then reaches the store.
    #[test]
    fn a_write_short_of_a_batch_is_sent_once_it_has_waited() {
        let (recorder, rx) = slow_recorder(Duration::ZERO, Duration::ZERO);
        let items = |first_seq| ItemsRecord {
            op: "op".into(),
            keys: KeyPath::new(),
            first_seq,
            items: Vec::new(),
        };
        recorder.record_items(items(0));
        std::thread::sleep(Duration::from_millis(100));
        assert!(rx.try_recv().is_err(), "held for its batch");
        recorder.tick();
        let committed = rx.recv_timeout(Duration::from_secs(10));
        assert!(
            committed.is_ok(),
            "sent by the tick once older than SEND_WAIT"
        );
        // A full batch goes at once, without a tick.
        for seq in 1..=SEND_BATCH as u64 {
            recorder.record_items(items(seq));
        }
        for _ in 0..SEND_BATCH {
            assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok());
        }
        let (_, error, stats) = recorder.finish().expect("the writer ran");
        assert!(error.is_none());
        assert_eq!(stats.writes, 1 + SEND_BATCH as u64);
    }

    /// A store far slower than the run falls behind by a bounded time, not
    /// by a queue length: every write is committed within a small multiple
    /// of `MAX_LAG` of being sent. (A fixed 8192-write queue at 0.5 ms per
    /// write lagged 4 s.)
    #[test]
    fn a_slow_store_lags_by_time_not_by_queue_length() {
        let (recorder, rx) = slow_recorder(Duration::from_micros(500), GATHER);
        let start = Instant::now();
        let mut sent = Vec::new();
        let mut seq = 0;
        while start.elapsed() < Duration::from_secs(3) {
            sent.push(Instant::now());
            recorder.record_items(ItemsRecord {
                op: "op".into(),
                keys: KeyPath::new(),
                first_seq: seq,
                items: Vec::new(),
            });
            seq += 1;
        }
        drop(recorder.finish());
        let lags: Vec<Duration> = rx
            .try_iter()
            .map(|(seq, at)| at - sent[seq as usize])
            .collect();
        assert_eq!(lags.len(), sent.len(), "every write was committed");
        let worst = lags.iter().max().copied().unwrap_or_default();
        assert!(
            worst < MAX_LAG * 4,
            "a write waited {worst:?} to be committed (bound {MAX_LAG:?} x 2, plus slack)"
        );
    }
}
