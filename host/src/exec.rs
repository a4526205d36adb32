//! The executor: the only module with concurrency.
//!
//! One coordinator (the calling thread) owns the `Scheduler` (`exec/scheduler.rs`); a fixed pool
//! of worker threads, one per core, takes steps from a shared queue and runs
//! each as an async wasmtime call on the worker's own current-thread runtime
//! (so a time limit can end a step blocked in WASI). Workers send emitted
//! items and finished steps back as they happen, so mapped steps start while
//! their emitter still runs and a stuck step holds up nobody else.

mod collect;
mod coordinator;
mod files;
mod gates;
mod inbox;
mod record;
mod reuse;
mod scheduler;
mod summary;
pub(crate) mod transport;
mod values;
pub(crate) mod wire;
pub(crate) mod worker;

pub use scheduler::StepId;

use crate::key::StepName;
use crate::plan::Plan;
use crate::report::RunReport;
use crate::runtime::{OpComponent, Runtime, StepReport};
use crate::store::{PriorStep, RunStore, StoreError};
use coordinator::Coordinator;
use record::Recorder;
pub use record::RecorderStats;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use worker::{Doorbell, Outbox, StepQueue, WorkerContext, work};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's id, passed to every op.
    pub run_id: String,
    /// Steps running at once.
    pub max_concurrent: usize,
    /// Bytes of step values (returned and emitted) kept in memory; the rest
    /// go to a spill file on disk and are read back when a step needs them.
    pub memory_budget_bytes: u64,
    /// Set to stop the run: no step starts after it, queued steps are
    /// dropped, and running ones end as `interrupted` (the same flag as
    /// [`Runtime::interrupter`], which stops them).
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Where runs sharing a store keep `[resources]` state, so their limits
    /// hold across runs (`None`: within this run only).
    pub shared_limits: Option<std::path::PathBuf>,
}

/// The default of [`RunOptions::memory_budget_bytes`]: enough that most jobs
/// never touch the disk, small next to the 1 GiB a million-key run may use.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 << 20;

/// Something that happened during a run, for progress display and `--json`.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A step was handed to the workers. In a large fan-out it may wait in
    /// their queue behind one batch per worker before it runs.
    StepStarted {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
        /// 1 for the first attempt, 2 for the first retry, ...
        attempt: u32,
    },
    /// A ready step waits for its op's `max_concurrent` or a resource's
    /// slot or rate token; it holds no worker meanwhile.
    StepWaiting {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
        /// The limit, e.g. "resource `api` (max_concurrent 3)".
        on: &'a str,
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
    /// A failed or skipped step that a tolerant collect runs without: it no
    /// longer counts as failed (or skipped) but as tolerated.
    StepTolerated {
        /// `op[key]`.
        step: StepName<'a>,
        /// The op.
        op: &'a str,
        /// Whether the step was skipped (else it failed).
        was_skipped: bool,
    },
    /// A running step emitted an item with metadata (WIT 0.2.0 `emit`).
    /// Items without metadata make no event: a fan-out's items are many.
    ItemMetadata {
        /// The emitting step, `op[key]`.
        step: StepName<'a>,
        /// The emitting op.
        op: &'a str,
        /// The dynamic output.
        output: &'a str,
        /// The item's mapping key.
        key: &'a str,
        /// The metadata, a JSON array of `{label, kind, value}`.
        metadata: &'a str,
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
            | RunEvent::StepWaiting { op, .. }
            | RunEvent::StepRetrying { op, .. }
            | RunEvent::StepFinished { op, .. }
            | RunEvent::StepReused { op, .. }
            | RunEvent::StepTolerated { op, .. }
            | RunEvent::ItemMetadata { op, .. }
            | RunEvent::StepSkipped { op, .. } => op,
        }
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
    /// What recording cost, when the run was recorded.
    pub recorder: Option<RecorderStats>,
}

/// Closes the step queue and the outboxes when dropped (no worker then waits
/// for a step, or for room in its outbox, that will never come).
struct CloseOnDrop<'a>(&'a StepQueue, &'a [Arc<Outbox>]);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.close();
        for outbox in self.1 {
            outbox.close();
        }
    }
}

/// Runs every step of `plan` on this process's threads. `components[i]` is
/// the compiled op `plan.ops[i]`. Failed steps are data in the report; this
/// never fails as a whole.
pub fn run(
    plan: &Plan,
    runtime: &Runtime,
    components: &[OpComponent],
    options: &RunOptions,
    storage: Storage,
    observer: &mut dyn FnMut(RunEvent<'_>),
) -> RunResult {
    run_split(plan, runtime, components, options, storage, observer, None)
}

/// [`run`], with the steps of the ops `remote.1` marks `false` sent to the
/// transport `remote.0` instead of this process's threads.
pub(crate) fn run_split(
    plan: &Plan,
    runtime: &Runtime,
    components: &[OpComponent],
    options: &RunOptions,
    storage: Storage,
    observer: &mut dyn FnMut(RunEvent<'_>),
    remote: Option<(&mut dyn transport::Transport, Vec<bool>)>,
) -> RunResult {
    let workers = options.max_concurrent.max(1);
    let hashes: Vec<&str> = components.iter().map(|c| c.hash.as_str()).collect();
    let outboxes: Vec<Arc<Outbox>> = (0..workers).map(|_| Arc::default()).collect();
    let queue = StepQueue::default();
    std::thread::scope(|scope| {
        let doorbell = Arc::new(Doorbell::default());
        for outbox in &outboxes {
            let ring = doorbell.ringer();
            let cx = WorkerContext {
                plan,
                runtime,
                components,
                run_id: &options.run_id,
                queue: &queue,
                outbox: outbox.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name("dynhost-worker".into())
                .stack_size(runtime.native_stack_bytes())
                .spawn_scoped(scope, move || work(cx, ring));
            if let Err(e) = spawned {
                tracing::error!("cannot start a worker thread: {e}");
            }
        }
        // Closed however the run ends (even by a panic), so no worker waits
        // for a step that will never come and the scope can end.
        let _close = CloseOnDrop(&queue, &outboxes);
        let pool = transport::ThreadPool {
            workers,
            queue: &queue,
            doorbell: &doorbell,
            outboxes: &outboxes,
        };
        match remote {
            None => {
                let mut pool = pool;
                run_on(plan, &hashes, options, storage, observer, &mut pool)
            }
            Some((remote, is_local)) => {
                let mut split = transport::Split {
                    local: pool,
                    remote,
                    is_local,
                };
                run_on(plan, &hashes, options, storage, observer, &mut split)
            }
        }
    })
}

/// Runs every step of `plan` wherever `transport` runs steps (this
/// process's threads, or workers elsewhere). `component_hashes[i]` is the
/// SHA-256 of `plan.ops[i]`'s component.
pub(crate) fn run_on(
    plan: &Plan,
    component_hashes: &[&str],
    options: &RunOptions,
    storage: Storage,
    observer: &mut dyn FnMut(RunEvent<'_>),
    transport: &mut dyn transport::Transport,
) -> RunResult {
    let started = Instant::now();
    let mut coordinator = Coordinator::new(plan, component_hashes, options, storage);
    coordinator.drive(transport, observer);
    let interrupted = options
        .interrupt
        .as_ref()
        .is_some_and(|flag| flag.load(Ordering::Relaxed));
    // Steps an interruption kept from running are neither failed nor
    // skipped: they are simply not recorded, and `resume` runs them.
    if !interrupted {
        coordinator.scheduler.skip_stranded();
        coordinator.report_skipped(observer);
    }
    let mut report = summary::build_report(plan, &coordinator, options, started);
    report.interrupted = interrupted;
    if let Some(recorder) = &coordinator.recorder
        && !coordinator.scheduler.tolerated.is_empty()
    {
        recorder.record_tolerated(
            coordinator
                .scheduler
                .tolerated
                .iter()
                .map(|id| {
                    let keys = id.keys.iter().map(ToString::to_string).collect();
                    (plan.ops[id.op].name.clone(), keys)
                })
                .collect(),
        );
    }
    let (store, store_error, recorder) =
        match coordinator.recorder.take().and_then(Recorder::finish) {
            Some((store, error, stats)) => {
                tracing::debug!(
                    writes = stats.writes,
                    commits = stats.commits,
                    cpu_secs = stats.cpu.map(|d| d.as_secs_f64()),
                    "run store writer finished"
                );
                (Some(store), error, Some(stats))
            }
            None => (None, None, None),
        };
    RunResult {
        report,
        store,
        store_error,
        recorder,
    }
}

#[cfg(test)]
mod tests;
