//! The executor: the only module with concurrency.
//!
//! One coordinator (the calling thread) owns the [`Scheduler`]; a fixed pool
//! of worker threads runs steps with synchronous wasmtime calls, which issue 4
//! measured as the cheapest way to keep every core busy (the async path costs
//! ~10 µs per call with nothing to wait for). Workers send emitted items back
//! as they happen, so mapped steps start while their emitter still runs.
//! Jobs go out over a channel bounded by the number of workers; events come
//! back unbounded so a worker never blocks on the coordinator.

mod collect;
mod record;
mod scheduler;

pub use scheduler::StepId;

use crate::key::{MappingKey, StepName};
use crate::plan::Plan;
use crate::report::{FinalOutput, OpSummary, RunReport, StepFailure};
use crate::runtime::{
    EmitSink, FailureKind, OpComponent, OpFailure, Runtime, StepCall, StepReport, StepStats,
};
use crate::store::{PriorStep, RunStore, StoreError};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use record::{Prior, Recorder};
use rustc_hash::FxHashMap;
use rustc_hash::FxHashMap as HashMap;
use scheduler::{Scheduler, Status, step_label};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's id, passed to every op.
    pub run_id: String,
    /// Steps running at once.
    pub max_concurrent: usize,
}

/// Something that happened during a run, for progress display and `--json`.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A step was handed to a worker.
    StepStarted {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
        /// 1 for the first attempt, 2 for the first retry, ...
        attempt: u32,
    },
    /// A step failed and will run again after `delay`.
    StepRetrying {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
        /// The failed attempt, with captured output.
        report: &'a StepReport,
        /// Which attempt failed.
        attempt: u32,
        /// How long until the next attempt.
        delay: Duration,
    },
    /// A step ran to the end, successfully or not.
    StepFinished {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
        /// What it did, with captured output.
        report: &'a StepReport,
    },
    /// A stored success with the same inputs was reused instead of running.
    StepReused {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
    },
    /// A step will not run because an input failed.
    StepSkipped {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
        /// Which input and why.
        reason: &'a str,
    },
}

impl RunEvent<'_> {
    /// The op the event is about.
    pub fn op(&self) -> &str {
        match self {
            RunEvent::StepStarted { op, .. }
            | RunEvent::StepRetrying { op, .. }
            | RunEvent::StepFinished { op, .. }
            | RunEvent::StepReused { op, .. }
            | RunEvent::StepSkipped { op, .. } => op,
        }
    }
}

enum Event {
    Emit {
        step: StepId,
        output: String,
        key: MappingKey,
        value: Vec<u8>,
    },
    /// Finished steps; `batch_done` frees the worker for another job.
    Done {
        steps: Vec<(StepId, Box<StepReport>)>,
        batch_done: bool,
    },
}

/// Steps for one worker to run one after another. Batching amortises the
/// cross-thread hand-off (two futex wake-ups per message), which otherwise
/// costs more than instantiating and running a small op.
struct Job {
    steps: Vec<(StepId, StepCall)>,
}

/// The most steps one job carries: enough to amortise the hand-off, few
/// enough that results still stream back promptly.
const MAX_BATCH: usize = 64;

/// Ready steps per worker above which steps are batched.
const BATCH_THRESHOLD: usize = 16;

/// A worker reports finished steps at least this often within a batch, so
/// slow steps do not hold back their siblings' results.
const FLUSH_INTERVAL: Duration = Duration::from_millis(2);

struct ChannelSink {
    step: StepId,
    events: Sender<Event>,
}

impl EmitSink for ChannelSink {
    fn emit(&mut self, output: &str, key: MappingKey, value: Vec<u8>) {
        let event = Event::Emit {
            step: self.step.clone(),
            output: output.to_owned(),
            key,
            value,
        };
        // The coordinator outlives every worker, so the channel is open.
        let _ = self.events.send(event);
    }
}

/// What a run reads from and writes to the run store.
#[derive(Default)]
pub struct Storage {
    /// Where finished steps are recorded; `None` keeps nothing.
    pub store: Option<Box<dyn RunStore>>,
    /// Stored successes to reuse when a step's inputs are unchanged (resume).
    pub prior: Vec<PriorStep>,
    /// Whether reused steps are written again: yes for a new run built from an
    /// old one (`--only`), no when resuming the same run.
    pub record_reused: bool,
    /// A read handle on the store, for ops with `cache = true`.
    pub lookup: Option<Box<dyn RunStore>>,
}

/// A finished run, with the store handed back.
pub struct RunResult {
    /// What happened.
    pub report: RunReport,
    /// The store, to mark the run finished.
    pub store: Option<Box<dyn RunStore>>,
    /// The first error writing to the store, if any (the run itself went on).
    pub store_error: Option<StoreError>,
}

/// Runs every step of `plan`. `components[i]` is the compiled op `plan.ops[i]`.
/// Failed steps are data in the report; this never fails as a whole.
pub fn run(
    plan: &Plan,
    runtime: &Runtime,
    components: &[OpComponent],
    options: &RunOptions,
    storage: Storage,
    observer: &mut dyn FnMut(RunEvent<'_>),
) -> RunResult {
    let started = Instant::now();
    let workers = options.max_concurrent.max(1);
    let mut coordinator = Coordinator::new(plan, options, storage);
    coordinator.component_hashes = components.iter().map(|c| c.hash.clone()).collect();
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = bounded::<Job>(workers);
        let (event_tx, event_rx) = unbounded::<Event>();
        for _ in 0..workers {
            let jobs = job_rx.clone();
            let events = event_tx.clone();
            // Wasm runs on the worker's native stack, so it needs the wasm
            // stack limit plus room for wasmtime and the host functions.
            let native_stack = usize::try_from(plan.stack_bytes())
                .unwrap_or(usize::MAX)
                .saturating_add(2 << 20);
            let spawned = std::thread::Builder::new()
                .name("dynhost-worker".into())
                .stack_size(native_stack)
                .spawn_scoped(scope, move || {
                    work(plan, runtime, components, &jobs, &events)
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a worker thread: {e}");
            }
        }
        drop(job_rx);
        drop(event_tx);
        coordinator.drive(workers, &job_tx, &event_rx, observer);
    });
    coordinator.scheduler.skip_stranded();
    coordinator.report_skipped(observer);
    let report = build_report(plan, &coordinator, options, started);
    let (store, store_error) = match coordinator.recorder.take().and_then(Recorder::finish) {
        Some((store, error)) => (Some(store), error),
        None => (None, None),
    };
    RunResult {
        report,
        store,
        store_error,
    }
}

/// A worker thread: runs jobs until the coordinator closes the channel.
fn work(
    plan: &Plan,
    runtime: &Runtime,
    components: &[OpComponent],
    jobs: &Receiver<Job>,
    events: &Sender<Event>,
) {
    for job in jobs {
        let mut done = Vec::with_capacity(job.steps.len());
        let mut flushed = Instant::now();
        for (step, call) in job.steps {
            let op = &plan.ops[step.op];
            let sink = Box::new(ChannelSink {
                step: step.clone(),
                events: events.clone(),
            });
            let component = &components[step.op];
            let report = std::panic::catch_unwind(AssertUnwindSafe(|| {
                runtime.run_step(component, &op.policy, &call, sink)
            }))
            .unwrap_or_else(|panic| host_panic(&panic));
            done.push((step, Box::new(report)));
            if flushed.elapsed() >= FLUSH_INTERVAL {
                let _ = events.send(Event::Done {
                    steps: std::mem::take(&mut done),
                    batch_done: false,
                });
                flushed = Instant::now();
            }
        }
        let _ = events.send(Event::Done {
            steps: done,
            batch_done: true,
        });
    }
}

/// An op's name and config, shared by all its steps' calls.
struct SharedOp {
    name: Arc<str>,
    config: Arc<str>,
}

/// The longest wait between retries, however many there were.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(3600);

/// Owns the scheduler and everything else the coordinating thread tracks.
struct Coordinator<'p> {
    plan: &'p Plan,
    run_id: Arc<str>,
    /// Per op, the strings every step's call carries, shared instead of copied.
    shared: Vec<SharedOp>,
    scheduler: Scheduler<'p>,
    /// Accounting summed per op as steps finish (not kept per step: a
    /// million keys would hold a million records).
    totals: Vec<OpSummary>,
    /// Retries scheduled per step; absent for the (usual) first attempt, so
    /// a million-key map keeps no per-step entry here.
    retries_done: HashMap<StepId, u32>,
    /// Steps waiting out a retry backoff. They hold no worker slot meanwhile
    /// (Dagster deadlocks here, dagster#30712).
    backoffs: BinaryHeap<Reverse<(Instant, StepId)>>,
    retried: Vec<u64>,
    in_flight: usize,
    recorder: Option<Recorder>,
    prior: FxHashMap<StepId, Prior>,
    record_reused: bool,
    input_hashes: FxHashMap<StepId, String>,
    reused: Vec<u64>,
    lookup: Option<Box<dyn RunStore>>,
    component_hashes: Vec<String>,
    memo_keys: FxHashMap<StepId, String>,
    input_summaries: FxHashMap<StepId, String>,
}

impl<'p> Coordinator<'p> {
    fn new(plan: &'p Plan, options: &RunOptions, storage: Storage) -> Self {
        Self {
            plan,
            run_id: Arc::from(options.run_id.as_str()),
            shared: plan
                .ops
                .iter()
                .map(|op| SharedOp {
                    name: Arc::from(op.name.as_str()),
                    config: Arc::from(op.config_json.as_str()),
                })
                .collect(),
            scheduler: Scheduler::new(plan),
            totals: plan.ops.iter().map(|op| OpSummary::new(&op.name)).collect(),
            retries_done: HashMap::default(),
            backoffs: BinaryHeap::new(),
            retried: vec![0; plan.ops.len()],
            in_flight: 0,
            recorder: storage
                .store
                .map(|store| Recorder::start(store, options.run_id.clone())),
            prior: record::prior_map(plan, storage.prior),
            record_reused: storage.record_reused,
            input_hashes: FxHashMap::default(),
            reused: vec![0; plan.ops.len()],
            lookup: storage.lookup,
            component_hashes: Vec::new(),
            memo_keys: FxHashMap::default(),
            input_summaries: FxHashMap::default(),
        }
    }

    /// Dispatches ready steps and handles events until nothing is running,
    /// ready or waiting for a retry.
    fn drive(
        &mut self,
        workers: usize,
        jobs: &Sender<Job>,
        events: &Receiver<Event>,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        loop {
            self.report_skipped(observer);
            while self.in_flight < workers {
                let ready = self.scheduler.ready_len();
                // Batch only large fan-outs; a handful of keys go one by one so
                // each starts as soon as a worker is free.
                let size = if ready >= BATCH_THRESHOLD * workers {
                    (ready / workers).clamp(1, MAX_BATCH)
                } else {
                    1
                };
                let mut steps = Vec::with_capacity(size);
                while steps.len() < size {
                    let Some(step) = self.next_step() else { break };
                    if let Some(call) = self.start(&step, observer) {
                        steps.push((step, call));
                    }
                }
                if steps.is_empty() && self.scheduler.ready_len() > 0 {
                    continue;
                }
                if steps.is_empty() {
                    break;
                }
                if jobs.send(Job { steps }).is_err() {
                    return;
                }
                self.in_flight += 1;
            }
            let next_retry = self.backoffs.peek().map(|Reverse((due, _))| *due);
            if self.in_flight == 0 && next_retry.is_none() {
                return;
            }
            let event = match next_retry {
                Some(due) => {
                    match events.recv_timeout(due.saturating_duration_since(Instant::now())) {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match events.recv() {
                    Ok(event) => event,
                    Err(_) => return,
                },
            };
            self.handle(event, observer);
        }
    }

    /// Builds the call; reuses a stored success with the same inputs instead
    /// of running it (`None`), else counts the attempt and tells the observer.
    fn start(&mut self, step: &StepId, observer: &mut dyn FnMut(RunEvent<'_>)) -> Option<StepCall> {
        let call = self.call(step);
        if self.recorder.is_some() || !self.prior.is_empty() {
            let hash = record::hash_inputs(&call.inputs);
            if self.recorder.is_some() {
                self.input_summaries
                    .insert(step.clone(), record::describe_inputs(&call.inputs));
            }
            if self
                .prior
                .get(step)
                .is_some_and(|p| p.input_hash.as_deref() == Some(hash.as_str()))
            {
                self.reuse(step, &hash, observer);
                return None;
            }
            if self.plan.ops[step.op].cache && self.memoized(step, &hash, observer) {
                return None;
            }
            self.input_hashes.insert(step.clone(), hash);
        }
        let attempt = self.attempt(step);
        let op = &self.plan.ops[step.op].name;
        observer(RunEvent::StepStarted {
            step: StepName {
                op,
                keys: &step.keys,
            },
            op,
            attempt,
        });
        Some(call)
    }

    /// Replays a stored success: its items (which start the steps mapped over
    /// them) and its value.
    fn reuse(&mut self, step: &StepId, hash: &str, observer: &mut dyn FnMut(RunEvent<'_>)) {
        let Some(prior) = self.prior.remove(step) else {
            return;
        };
        for (output, key, value) in &prior.items {
            self.scheduler
                .on_emit(step, output, key.clone(), value.clone());
        }
        if self.record_reused
            && let Some(recorder) = &self.recorder
        {
            let finished = self.finished_record(step, Some(hash.to_owned()));
            recorder.record(finished.reused(&prior.output));
        }
        self.reused[step.op] += 1;
        let op = &self.plan.ops[step.op].name;
        observer(RunEvent::StepReused {
            step: StepName {
                op,
                keys: &step.keys,
            },
            op,
        });
        self.scheduler.on_finished(step, Ok(prior.output));
    }

    /// For a `cache = true` op: reuses a stored success of any run with the
    /// same component, config and inputs. Returns whether it did.
    fn memoized(
        &mut self,
        step: &StepId,
        input_hash: &str,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) -> bool {
        let op = &self.plan.ops[step.op];
        let component = self
            .component_hashes
            .get(step.op)
            .map_or("", String::as_str);
        let key = record::memo_key(component, &op.config_json, input_hash);
        let found = self
            .lookup
            .as_ref()
            .and_then(|store| match store.memoized(&key) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("memoization lookup failed: {e}");
                    None
                }
            });
        self.memo_keys.insert(step.clone(), key);
        let Some(found) =
            found.and_then(|p| record::prior_map(self.plan, vec![p]).into_values().next())
        else {
            return false;
        };
        self.prior.insert(step.clone(), found);
        let record_reused = std::mem::replace(&mut self.record_reused, true);
        self.reuse(step, input_hash, observer);
        self.record_reused = record_reused;
        true
    }

    fn finished_record(
        &self,
        step: &'p StepId,
        input_hash: Option<String>,
    ) -> record::Finished<'_> {
        record::Finished {
            plan: self.plan,
            step,
            attempts: self.attempt(step),
            input_hash,
            memo_key: self.memo_keys.get(step).cloned(),
            inputs: self.input_summaries.get(step).cloned(),
            emitted: self.scheduler.steps.get(step).map(|e| &e.emitted),
        }
    }

    fn report_skipped(&mut self, observer: &mut dyn FnMut(RunEvent<'_>)) {
        for (step, reason) in self.scheduler.take_skipped() {
            let op = &self.plan.ops[step.op].name;
            observer(RunEvent::StepSkipped {
                step: StepName {
                    op,
                    keys: &step.keys,
                },
                op,
                reason: &reason,
            });
            if let Some(recorder) = &self.recorder {
                recorder.record(self.finished_record(&step, None).skipped(&reason));
            }
        }
    }

    /// The number of the current (or last) attempt of `step`, from 1.
    fn attempt(&self, step: &StepId) -> u32 {
        self.retries_done.get(step).map_or(1, |n| n + 1)
    }

    /// A retry whose backoff is over, else the scheduler's next ready step.
    fn next_step(&mut self) -> Option<StepId> {
        if let Some(Reverse((due, _))) = self.backoffs.peek()
            && *due <= Instant::now()
        {
            return self.backoffs.pop().map(|Reverse((_, step))| step);
        }
        self.scheduler.next_ready()
    }

    fn call(&mut self, step: &StepId) -> StepCall {
        let shared = &self.shared[step.op];
        StepCall {
            run_id: self.run_id.clone(),
            op: shared.name.clone(),
            keys: step.keys.clone(),
            config_json: shared.config.clone(),
            inputs: self.scheduler.inputs(step),
        }
    }

    fn handle(&mut self, event: Event, observer: &mut dyn FnMut(RunEvent<'_>)) {
        match event {
            Event::Emit {
                step,
                output,
                key,
                value,
            } => {
                self.scheduler
                    .on_emit(&step, &output, key, Arc::from(value));
            }
            Event::Done { steps, batch_done } => {
                if batch_done {
                    self.in_flight -= 1;
                }
                for (step, report) in steps {
                    self.finished(step, *report, observer);
                }
            }
        }
    }

    fn finished(
        &mut self,
        step: StepId,
        report: StepReport,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        add_stats(&mut self.totals[step.op], &report.stats);
        let op = &self.plan.ops[step.op];
        let name = StepName {
            op: &op.name,
            keys: &step.keys,
        };
        if let Some(delay) = self.retry_delay(&step, &report) {
            let attempt = self.attempt(&step);
            *self.retries_done.entry(step.clone()).or_insert(0) += 1;
            observer(RunEvent::StepRetrying {
                step: name,
                op: &op.name,
                report: &report,
                attempt,
                delay,
            });
            self.retried[step.op] += 1;
            self.backoffs.push(Reverse((Instant::now() + delay, step)));
            return;
        }
        observer(RunEvent::StepFinished {
            step: name,
            op: &op.name,
            report: &report,
        });
        if let Some(recorder) = &self.recorder {
            let hash = self.input_hashes.remove(&step);
            recorder.record(self.finished_record(&step, hash).ran(&report));
            self.input_summaries.remove(&step);
        }
        self.scheduler
            .on_finished(&step, report.outcome.map(Arc::from));
    }

    /// How long to wait before retrying a failed step, if it is retried: its
    /// kind is in `retry_on`, retries remain, and it emitted nothing (emitted
    /// items have already started mapped steps, so a rerun would duplicate them).
    fn retry_delay(&self, step: &StepId, report: &StepReport) -> Option<Duration> {
        let Err(failure) = &report.outcome else {
            return None;
        };
        let policy = &self.plan.ops[step.op].retry;
        let attempt = self.attempt(step);
        let retryable = policy.retry_on.contains(&failure.kind)
            && attempt <= policy.max_retries
            && report.stats.emitted_items == 0;
        retryable.then(|| {
            let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
            policy.backoff.saturating_mul(factor).min(MAX_RETRY_BACKOFF)
        })
    }
}

fn host_panic(panic: &Box<dyn std::any::Any + Send>) -> StepReport {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    StepReport {
        outcome: Err(OpFailure::new(
            FailureKind::Host,
            format!("dynhost panicked while running the step: {message}"),
        )),
        stdout: String::new(),
        stderr: String::new(),
        log: String::new(),
        stats: StepStats::default(),
    }
}

fn build_report(
    plan: &Plan,
    coordinator: &Coordinator<'_>,
    options: &RunOptions,
    started: Instant,
) -> RunReport {
    let scheduler = &coordinator.scheduler;
    let is_read: Vec<bool> = (0..plan.ops.len())
        .map(|id| {
            plan.ops
                .iter()
                .any(|op| op.inputs.iter().any(|i| reads(&i.source, id)))
        })
        .collect();
    let mut ops: Vec<OpSummary> = plan.ops.iter().map(|op| OpSummary::new(&op.name)).collect();
    // Count every step, but name and sort only those the report lists (last
    // ops' values, failures, skips): a million-key map is mostly counted.
    let mut listed: Vec<(&StepId, &Status)> = Vec::new();
    for (id, entry) in &scheduler.steps {
        ops[id.op].steps += 1;
        match &entry.status {
            Status::Succeeded(_) if is_read[id.op] => ops[id.op].succeeded += 1,
            status => listed.push((id, status)),
        }
    }
    listed.sort_by(|a, b| a.0.cmp(b.0));
    let mut outputs = Vec::new();
    for (id, status) in listed {
        let summary = &mut ops[id.op];
        let name = step_label(plan, id);
        let tolerated = scheduler.tolerated.contains(id);
        match status {
            Status::Succeeded(value) => {
                summary.succeeded += 1;
                outputs.push(FinalOutput {
                    op: plan.ops[id.op].name.clone(),
                    step: name,
                    keys: id.keys.clone(),
                    value: value.to_vec(),
                });
            }
            Status::Failed(failure) => {
                if tolerated {
                    summary.tolerated += 1
                } else {
                    summary.failed += 1
                }
                summary.failures.push(StepFailure {
                    step: name,
                    failure: failure.clone(),
                    tolerated,
                });
            }
            Status::Skipped(reason) => {
                if tolerated {
                    summary.tolerated += 1
                } else {
                    summary.skipped += 1
                }
                summary.skips.push((name, reason.clone()));
            }
            Status::Waiting | Status::Ready | Status::Running => {}
        }
    }
    for (id, op) in ops.iter_mut().enumerate() {
        let totals = &coordinator.totals[id];
        op.retries = coordinator.retried[id];
        op.reused = coordinator.reused[id];
        op.busy = totals.busy;
        op.peak_memory_bytes = totals.peak_memory_bytes;
        op.emitted_items = totals.emitted_items;
        op.emitted_bytes = totals.emitted_bytes;
        op.fuel_used = totals.fuel_used;
    }
    let mut vanished: Vec<String> = coordinator
        .prior
        .keys()
        .filter(|step| !scheduler.steps.contains_key(*step))
        .map(|step| step_label(plan, step))
        .collect();
    vanished.sort();
    RunReport {
        run_id: options.run_id.clone(),
        job: plan.job_name.clone(),
        elapsed: started.elapsed(),
        ops,
        outputs,
        vanished,
    }
}

fn add_stats(op: &mut OpSummary, s: &StepStats) {
    op.busy += s.wall;
    op.peak_memory_bytes = op.peak_memory_bytes.max(s.peak_memory_bytes);
    op.emitted_items += s.emitted_items;
    op.emitted_bytes += s.emitted_bytes;
    if let Some(fuel) = s.fuel_used {
        *op.fuel_used.get_or_insert(0) += fuel;
    }
}

fn reads(source: &crate::plan::Source, id: usize) -> bool {
    use crate::plan::{CollectTarget, Source};
    match source {
        Source::Value(op) | Source::Collect(CollectTarget::Values(op), _) => *op == id,
        Source::Item(d) | Source::Collect(CollectTarget::Items(d), _) => d.op == id,
    }
}
