//! Worker threads: run batches of steps with synchronous wasmtime calls and
//! hand emitted items and finished steps back to the coordinator.

use super::StepId;
use crate::key::MappingKey;
use crate::plan::Plan;
use crate::runtime::{
    EmitSink, FailureKind, InputData, OpComponent, OpFailure, Runtime, StepCall, StepReport,
    StepStats,
};
use crossbeam_channel::{Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) enum Event {
    /// Worker `worker`'s [`EmitQueue`] went from empty to holding items.
    Emitted { worker: usize },
    /// Finished steps; `batch_done` frees the worker for another job.
    Done {
        steps: Vec<(StepId, StepReport)>,
        batch_done: bool,
    },
}

/// An item a running step emitted.
pub(crate) struct Emitted {
    pub step: StepId,
    /// Index into the op's dynamic outputs.
    pub output: usize,
    pub key: MappingKey,
    pub value: Vec<u8>,
}

/// One worker's emitted items on their way to the coordinator. The worker
/// rings the coordinator ([`Event::Emitted`]) only when the queue was empty,
/// and the coordinator takes everything queued at once: a fast emitter costs
/// one channel message per batch the coordinator takes rather than one per
/// item, and no item ever waits for a batch to fill. Items of a step are
/// always taken before its [`Event::Done`], which the worker sends after them.
#[derive(Default)]
pub(crate) struct EmitQueue {
    items: Mutex<Vec<Emitted>>,
}

impl EmitQueue {
    /// Moves everything queued into `into` (which should be empty).
    pub fn take(&self, into: &mut Vec<Emitted>) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *items, into);
    }

    /// Queues `item`; returns whether the queue was empty before.
    fn push(&self, item: Emitted) -> bool {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        items.push(item);
        items.len() == 1
    }
}

/// Steps for one worker to run one after another, each with its inputs in
/// the order the plan lists them. Batching amortises the cross-thread
/// hand-off (two futex wake-ups per message), which otherwise costs more than
/// instantiating and running a small op.
pub(crate) struct Job {
    pub steps: Vec<(StepId, Inputs)>,
}

/// A step's input values: inline for the usual one or two inputs, so
/// dispatching a step allocates nothing for them.
pub(crate) type Inputs = smallvec::SmallVec<[InputData; 2]>;

/// The most steps one job carries: enough to amortise the hand-off, few
/// enough that results still stream back promptly.
pub(crate) const MAX_BATCH: usize = 64;

/// Ready steps per worker above which steps are batched.
pub(crate) const BATCH_THRESHOLD: usize = 16;

/// A worker reports finished steps at least this often within a batch, so
/// slow steps do not hold back their siblings' results.
const FLUSH_INTERVAL: Duration = Duration::from_millis(2);

/// Where one worker's steps send their items. Owned by the worker alone, so
/// cloning it per step touches no count that another thread touches.
struct Outbox {
    worker: usize,
    queue: Arc<EmitQueue>,
    events: Sender<Event>,
}

struct QueueSink {
    step: StepId,
    outbox: Arc<Outbox>,
}

impl EmitSink for QueueSink {
    fn emit(&mut self, output: usize, key: MappingKey, value: Vec<u8>) {
        let item = Emitted {
            step: self.step.clone(),
            output,
            key,
            value,
        };
        if self.outbox.queue.push(item) {
            // The coordinator outlives every worker, so the channel is open.
            let _ = self.outbox.events.send(Event::Emitted {
                worker: self.outbox.worker,
            });
        }
    }
}

/// The strings of one op's calls, copied per worker (see [`StepCall`]).
struct OpStrings {
    name: Arc<str>,
    config: String,
    input_names: Vec<String>,
}

/// What a worker thread is given.
pub(crate) struct WorkerContext<'a> {
    pub worker: usize,
    pub plan: &'a Plan,
    pub runtime: &'a Runtime,
    pub components: &'a [OpComponent],
    pub run_id: &'a str,
    pub queue: Arc<EmitQueue>,
}

/// A worker thread: runs jobs until the coordinator closes the channel.
pub(crate) fn work(cx: WorkerContext<'_>, jobs: &Receiver<Job>, events: Sender<Event>) {
    let WorkerContext {
        worker,
        plan,
        runtime,
        components,
        run_id,
        queue,
    } = cx;
    let ops: Vec<OpStrings> = plan
        .ops
        .iter()
        .map(|op| OpStrings {
            name: Arc::from(op.name.as_str()),
            config: op.config_json.clone(),
            input_names: op.inputs.iter().map(|i| i.name.clone()).collect(),
        })
        .collect();
    let outbox = Arc::new(Outbox {
        worker,
        queue,
        events: events.clone(),
    });
    for job in jobs {
        let mut done = Vec::with_capacity(job.steps.len());
        let mut flushed = Instant::now();
        for (step, inputs) in job.steps {
            let op = &plan.ops[step.op];
            let strings = &ops[step.op];
            let sink = Box::new(QueueSink {
                step: step.clone(),
                outbox: outbox.clone(),
            });
            let call = StepCall {
                run_id,
                op: &strings.name,
                keys: &step.keys,
                config_json: &strings.config,
                input_names: &strings.input_names,
            };
            let component = &components[step.op];
            let report = std::panic::catch_unwind(AssertUnwindSafe(|| {
                runtime.run_step(component, &op.policy, &call, inputs, sink)
            }))
            .unwrap_or_else(|panic| host_panic(&panic));
            done.push((step, report));
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
