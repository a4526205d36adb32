//! Worker threads: run batches of steps with synchronous wasmtime calls and
//! send emitted items and finished steps back to the coordinator.

use super::StepId;
use crate::key::MappingKey;
use crate::plan::Plan;
use crate::runtime::{
    EmitSink, FailureKind, OpComponent, OpFailure, Runtime, StepCall, StepReport, StepStats,
};
use crossbeam_channel::{Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

pub(crate) enum Event {
    Emit {
        step: StepId,
        /// Index into the op's dynamic outputs.
        output: usize,
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
pub(crate) struct Job {
    pub steps: Vec<(StepId, StepCall)>,
}

/// The most steps one job carries: enough to amortise the hand-off, few
/// enough that results still stream back promptly.
pub(crate) const MAX_BATCH: usize = 64;

/// Ready steps per worker above which steps are batched.
pub(crate) const BATCH_THRESHOLD: usize = 16;

/// A worker reports finished steps at least this often within a batch, so
/// slow steps do not hold back their siblings' results.
const FLUSH_INTERVAL: Duration = Duration::from_millis(2);

struct ChannelSink {
    step: StepId,
    events: Sender<Event>,
}

impl EmitSink for ChannelSink {
    fn emit(&mut self, output: usize, key: MappingKey, value: Vec<u8>) {
        let event = Event::Emit {
            step: self.step.clone(),
            output,
            key,
            value,
        };
        // The coordinator outlives every worker, so the channel is open.
        let _ = self.events.send(event);
    }
}

/// A worker thread: runs jobs until the coordinator closes the channel.
pub(crate) fn work(
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
