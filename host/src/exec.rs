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
mod scheduler;

pub use scheduler::StepId;

use crate::key::MappingKey;
use crate::plan::Plan;
use crate::report::{FinalOutput, OpSummary, RunReport, StepFailure};
use crate::runtime::{
    EmitSink, FailureKind, OpComponent, OpFailure, Runtime, StepCall, StepReport, StepStats,
};
use crossbeam_channel::{Sender, bounded, unbounded};
use scheduler::{Scheduler, Status, step_label};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

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
        step: &'a str,
        /// The op.
        op: &'a str,
    },
    /// A step ran to the end, successfully or not.
    StepFinished {
        /// `op[key]`.
        step: &'a str,
        /// The op.
        op: &'a str,
        /// What it did, with captured output.
        report: &'a StepReport,
    },
    /// A step will not run because an input failed.
    StepSkipped {
        /// `op[key]`.
        step: &'a str,
        /// The op.
        op: &'a str,
        /// Which input and why.
        reason: &'a str,
    },
}

enum Event {
    Emit {
        step: StepId,
        output: String,
        key: MappingKey,
        value: Vec<u8>,
    },
    Done {
        step: StepId,
        report: Box<StepReport>,
    },
}

struct Job {
    step: StepId,
    call: StepCall,
}

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

/// Runs every step of `plan`. `components[i]` is the compiled op `plan.ops[i]`.
/// Failed steps are data in the report; this never fails as a whole.
pub fn run(
    plan: &Plan,
    runtime: &Runtime,
    components: &[OpComponent],
    options: &RunOptions,
    observer: &mut dyn FnMut(RunEvent<'_>),
) -> RunReport {
    let started = Instant::now();
    let workers = options.max_concurrent.max(1);
    let mut scheduler = Scheduler::new(plan);
    let mut stats: Vec<Vec<(StepId, StepStats)>> = vec![Vec::new(); plan.ops.len()];
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = bounded::<Job>(workers);
        let (event_tx, event_rx) = unbounded::<Event>();
        for _ in 0..workers {
            let jobs = job_rx.clone();
            let events = event_tx.clone();
            scope.spawn(move || {
                for job in jobs {
                    let op = &plan.ops[job.step.op];
                    let sink = Box::new(ChannelSink {
                        step: job.step.clone(),
                        events: events.clone(),
                    });
                    let component = &components[job.step.op];
                    let report = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        runtime.run_step(component, &op.policy, &job.call, sink)
                    }))
                    .unwrap_or_else(|panic| host_panic(&panic));
                    let _ = events.send(Event::Done {
                        step: job.step,
                        report: Box::new(report),
                    });
                }
            });
        }
        drop(job_rx);
        drop(event_tx);
        let mut in_flight = 0usize;
        loop {
            report_skipped(plan, &mut scheduler, observer);
            while in_flight < workers {
                let Some(step) = scheduler.next_ready() else {
                    break;
                };
                let name = step_label(plan, &step);
                observer(RunEvent::StepStarted {
                    step: &name,
                    op: &plan.ops[step.op].name,
                });
                let call = StepCall {
                    run_id: options.run_id.clone(),
                    op: plan.ops[step.op].name.clone(),
                    keys: step.keys.clone(),
                    config_json: plan.ops[step.op].config_json.clone(),
                    inputs: scheduler.inputs(&step),
                };
                if job_tx.send(Job { step, call }).is_err() {
                    break;
                }
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let Ok(event) = event_rx.recv() else { break };
            match event {
                Event::Emit {
                    step,
                    output,
                    key,
                    value,
                } => scheduler.on_emit(&step, &output, key, Arc::from(value)),
                Event::Done { step, report } => {
                    in_flight -= 1;
                    let name = step_label(plan, &step);
                    observer(RunEvent::StepFinished {
                        step: &name,
                        op: &plan.ops[step.op].name,
                        report: &report,
                    });
                    stats[step.op].push((step.clone(), report.stats.clone()));
                    let outcome = report.outcome.map(Arc::from);
                    scheduler.on_finished(&step, outcome);
                }
            }
        }
        drop(job_tx);
    });
    scheduler.skip_stranded();
    report_skipped(plan, &mut scheduler, observer);
    build_report(plan, &scheduler, &stats, options, started)
}

fn report_skipped(
    plan: &Plan,
    scheduler: &mut Scheduler<'_>,
    observer: &mut dyn FnMut(RunEvent<'_>),
) {
    for (step, reason) in scheduler.take_skipped() {
        let name = step_label(plan, &step);
        observer(RunEvent::StepSkipped {
            step: &name,
            op: &plan.ops[step.op].name,
            reason: &reason,
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

fn build_report(
    plan: &Plan,
    scheduler: &Scheduler<'_>,
    stats: &[Vec<(StepId, StepStats)>],
    options: &RunOptions,
    started: Instant,
) -> RunReport {
    let mut steps: Vec<(&StepId, &Status)> = scheduler
        .steps
        .iter()
        .map(|(id, e)| (id, &e.status))
        .collect();
    steps.sort_by(|a, b| a.0.cmp(b.0));
    let is_read: Vec<bool> = (0..plan.ops.len())
        .map(|id| {
            plan.ops
                .iter()
                .any(|op| op.inputs.iter().any(|i| reads(&i.source, id)))
        })
        .collect();
    let mut ops: Vec<OpSummary> = plan.ops.iter().map(|op| OpSummary::new(&op.name)).collect();
    let mut outputs = Vec::new();
    for (id, status) in steps {
        let summary = &mut ops[id.op];
        summary.steps += 1;
        let name = step_label(plan, id);
        match status {
            Status::Succeeded(value) => {
                summary.succeeded += 1;
                if !is_read[id.op] {
                    outputs.push(FinalOutput {
                        op: plan.ops[id.op].name.clone(),
                        step: name,
                        keys: id.keys.clone(),
                        value: value.to_vec(),
                    });
                }
            }
            Status::Failed(failure) => {
                summary.failed += 1;
                summary.failures.push(StepFailure {
                    step: name,
                    failure: failure.clone(),
                });
            }
            Status::Skipped(reason) => {
                summary.skipped += 1;
                summary.skips.push((name, reason.clone()));
            }
            Status::Waiting | Status::Ready | Status::Running => {}
        }
    }
    for (op, op_stats) in ops.iter_mut().zip(stats) {
        for (_, s) in op_stats {
            op.busy += s.wall;
            op.peak_memory_bytes = op.peak_memory_bytes.max(s.peak_memory_bytes);
            op.emitted_items += s.emitted_items;
        }
    }
    RunReport {
        run_id: options.run_id.clone(),
        job: plan.job_name.clone(),
        elapsed: started.elapsed(),
        ops,
        outputs,
    }
}

fn reads(source: &crate::plan::Source, id: usize) -> bool {
    use crate::plan::{CollectTarget, Source};
    match source {
        Source::Value(op) | Source::Collect(CollectTarget::Values(op)) => *op == id,
        Source::Item(d) | Source::Collect(CollectTarget::Items(d)) => d.op == id,
    }
}
