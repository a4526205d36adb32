//! The coordinator: owns the scheduler, dispatches ready steps to workers in
//! batches, handles their events, retries, reuse of stored steps and records.

use super::gates::Gates;
use super::inbox::Inbox;
use super::record::{self, Prior, Recorder};
use super::reuse::{Reuse, Verdict};
use super::scheduler::{NewItem, Scheduler, StepId};
use super::transport::{Events, StepEvent, StepRequest, Transport, Woke};
use super::values::Value;
use super::worker::{Emitted, FLUSH_INTERVAL, Inputs};
use super::{RunEvent, RunOptions, Storage};
use crate::key::StepName;
use crate::plan::Plan;
use crate::report::OpSummary;
use crate::runtime::{FailureKind, OpFailure, StepReport, StepStats};
use crate::store::{InputSummary, ItemsRecord, StoredItem};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Emitted items handled between two looks at the workers: a fast emitter
/// can queue a hundred thousand items at once, and the workers should not
/// starve while the coordinator turns them all into steps.
const EMIT_CHUNK: usize = 1024;

/// Room an empty backlog keeps for the next fan-out; beyond it the ring is
/// given back (a fan-out of millions would otherwise keep its large empty
/// ring for the rest of the run).
const BACKLOG_KEPT: usize = 1 << 16;

/// Frees `backlog`'s ring once it is empty and larger than [`BACKLOG_KEPT`].
fn release_if_drained<T>(backlog: &mut VecDeque<T>) {
    if backlog.is_empty() && backlog.capacity() > BACKLOG_KEPT {
        *backlog = VecDeque::new();
    }
}

/// The longest wait between retries, however many there were.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(3600);

/// Owns the scheduler and everything else the coordinating thread tracks.
pub(crate) struct Coordinator<'p> {
    plan: &'p Plan,
    pub(super) scheduler: Scheduler<'p>,
    /// Accounting summed per op as steps finish (not kept per step: a
    /// million keys would hold a million records).
    pub(super) totals: Vec<OpSummary>,
    pub(super) retried: Vec<u64>,
    in_flight: usize,
    pub(super) recorder: Option<Recorder>,
    /// Stored successes that may stand in for steps.
    pub(super) reuse: Reuse<'p>,
    /// Per op, the names its steps' records repeat (op, outputs, input
    /// heads), made once and shared.
    names: Vec<record::OpNames>,
    /// Per started step, until it is recorded: what its record says about
    /// its inputs (one map, one entry per step).
    hashes: FxHashMap<StepId, record::Hashes>,
    /// Per running step, items already sent to the store.
    items_written: FxHashMap<StepId, u64>,
    /// Items recorded but not yet turned into steps (12 bytes each: a fast
    /// emitter can be millions of items ahead of its mapped steps).
    backlog: VecDeque<NewItem>,
    /// Items the inbox put in order, to record (kept to reuse its buffer).
    arrived: Vec<Emitted>,
    /// Items recorded since the store was last sent some, per step.
    streamed: Vec<(StepId, ItemsRecord)>,
    /// Events put in order: items once and in sequence, ends after their items.
    inbox: Inbox,
    /// Set from outside to stop the run (Ctrl-C, SIGTERM).
    interrupt: Option<Arc<AtomicBool>>,
    /// The interruption was seen: nothing more is dispatched or retried.
    stopping: bool,
    /// `max_concurrent` and `[resources]`: steps that must wait to start.
    pub(super) gates: Gates,
}

impl<'p> Coordinator<'p> {
    /// `component_hashes[i]` is the hash of `plan.ops[i]`'s component.
    pub(super) fn new(
        plan: &'p Plan,
        component_hashes: &[&str],
        options: &RunOptions,
        storage: Storage,
    ) -> Self {
        Self {
            plan,
            scheduler: Scheduler::new(plan, options.memory_budget_bytes),
            totals: plan.ops.iter().map(|op| OpSummary::new(&op.name)).collect(),
            retried: vec![0; plan.ops.len()],
            in_flight: 0,
            recorder: storage
                .store
                .map(|store| Recorder::start(store, options.run_id.clone())),
            reuse: Reuse::new(
                plan,
                component_hashes,
                record::prior_map(plan, storage.prior),
                storage.record_reused,
                storage.lookup,
            ),
            names: record::op_names(plan),
            hashes: FxHashMap::default(),
            items_written: FxHashMap::default(),
            backlog: VecDeque::new(),
            arrived: Vec::new(),
            streamed: Vec::new(),
            inbox: Inbox::default(),
            interrupt: options.interrupt.clone(),
            stopping: false,
            gates: Gates::new(plan, options.shared_limits.as_deref()).unwrap_or_else(|reason| {
                // The CLI creates the directory first and reports it; here
                // the limits still hold within this run.
                tracing::warn!("{reason}; resource limits hold within this run only");
                Gates::new(plan, None).unwrap_or_else(|_| unreachable!("local gates open no files"))
            }),
        }
    }

    /// Dispatches ready steps and handles what the workers send until nothing
    /// is running, ready or waiting for a retry.
    pub(super) fn drive(
        &mut self,
        transport: &mut dyn Transport,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        let mut events = Events::default();
        loop {
            if let Some(recorder) = &self.recorder {
                recorder.tick();
            }
            self.report_skipped(observer);
            if !self.stopping
                && self
                    .interrupt
                    .as_ref()
                    .is_some_and(|flag| flag.load(Ordering::Relaxed))
            {
                // Running steps stop by themselves (the runtime sees the same
                // flag); queued ones and retries never start.
                self.stopping = true;
                self.in_flight = self.in_flight.saturating_sub(transport.stop());
                self.scheduler.drop_retries();
                self.gates.drop_parked();
            }
            if !self.stopping {
                self.dispatch(transport, observer);
            }
            if !self.backlog.is_empty() {
                // Items still to turn into steps: take the next chunk unless
                // a worker rang (finished steps free workers sooner).
                match transport.wait(Duration::ZERO, &mut events) {
                    Woke::Looked => self.handle(&mut events, observer),
                    Woke::Quiet => self.take_emitted(EMIT_CHUNK),
                    Woke::Closed => return,
                }
                continue;
            }
            let now = Instant::now();
            let next_retry = match (self.scheduler.next_due(), self.gates.next_wake(now)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if self.in_flight == 0 && next_retry.is_none() {
                return;
            }
            // Wake for a ring, a due retry, or the flush interval, whichever
            // comes first: a finished step is reported within the interval
            // even when its worker is stuck in the next step.
            let mut wait = if self.in_flight > 0 {
                FLUSH_INTERVAL
            } else {
                Duration::MAX
            };
            if let Some(due) = next_retry {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            // What finished so far goes to the store before the wait.
            if let Some(recorder) = &self.recorder {
                recorder.flush();
            }
            if transport.wait(wait, &mut events) == Woke::Closed {
                return;
            }
            self.handle(&mut events, observer);
        }
    }

    /// Queues ready steps (and retries whose backoff is over) up to the
    /// queue's capacity: in a large fan-out enough for every worker to find
    /// its next step at once; otherwise one per free worker, so a step is
    /// started only when a worker can run it.
    fn dispatch(&mut self, transport: &mut dyn Transport, observer: &mut dyn FnMut(RunEvent<'_>)) {
        let waiting = self.scheduler.ready_len() + self.gates.parked();
        let capacity = transport.capacity(waiting);
        // Sized once: dispatching a fan-out otherwise regrows it every time.
        let mut steps = Vec::with_capacity(capacity.saturating_sub(self.in_flight).min(waiting));
        let now = Instant::now();
        // Steps held back by a limit go first, as soon as it lets them.
        while self.in_flight + steps.len() < capacity {
            let Some(request) = self.gates.unpark(now) else {
                break;
            };
            self.started(&request, observer);
            steps.push(request);
        }
        while self.in_flight + steps.len() < capacity && self.gates.has_room() {
            let Some(step) = self.scheduler.next_ready() else {
                break;
            };
            if let Some((inputs, attempt)) = self.start(&step, observer) {
                let request = StepRequest {
                    step,
                    attempt,
                    inputs,
                };
                if let Some(request) = self.gates.admit(request, now) {
                    self.started(&request, observer);
                    steps.push(request);
                }
            }
        }
        self.report_waiting(observer);
        if !steps.is_empty() {
            self.in_flight += steps.len();
            transport.submit(steps);
        }
    }

    /// Acts on what the transport reported, in its order.
    fn handle(&mut self, events: &mut Events, observer: &mut dyn FnMut(RunEvent<'_>)) {
        while let Some(event) = events.next() {
            match event {
                StepEvent::Item { attempt, seq, item } => {
                    self.on_item(attempt, seq, item, observer)
                }
                StepEvent::Finished {
                    step,
                    attempt,
                    report,
                } => self.on_finished(step, attempt, *report, observer),
            }
        }
        self.flush_items();
        if !self.backlog.is_empty() {
            self.take_emitted(EMIT_CHUNK);
        }
    }

    /// An item: taken in `seq` order, once; one ahead of its turn waits.
    fn on_item(
        &mut self,
        attempt: u32,
        seq: u64,
        item: Emitted,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        if !self.scheduler.is_running(&item.step, attempt) {
            return;
        }
        let step = item.step.clone();
        let mut arrived = std::mem::take(&mut self.arrived);
        let report = self.inbox.item(seq, item, &mut arrived);
        for item in arrived.drain(..) {
            self.record_item(item, observer);
        }
        self.arrived = arrived;
        if let Some(report) = report {
            self.complete(step, report, observer);
        }
    }

    /// A step's end: acted on once all its items are in.
    fn on_finished(
        &mut self,
        step: StepId,
        attempt: u32,
        report: StepReport,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        if !self.scheduler.is_running(&step, attempt) {
            return;
        }
        if let Some(report) = self.inbox.finished(&step, report) {
            self.complete(step, report, observer);
        }
    }

    fn complete(
        &mut self,
        step: StepId,
        report: StepReport,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        // Every item of the step must be in the store's queue before its
        // row, and a step (counted in its collections, as it already is)
        // before the step is done.
        self.flush_items();
        self.take_emitted(usize::MAX);
        self.in_flight -= 1;
        self.finished(step, report, observer);
    }

    /// Builds the call; reuses a stored success with the same inputs instead
    /// of running it (`None`), else counts the attempt and tells the observer.
    fn start(
        &mut self,
        step: &StepId,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) -> Option<(Inputs, u32)> {
        // Running from here on: whatever happens next (a stored success
        // reused, inputs that cannot be read) ends this attempt.
        let started = self.scheduler.start(step);
        let inputs = self.scheduler.inputs(step, started);
        self.report_tolerated(observer);
        let inputs = match inputs {
            Ok(inputs) => inputs,
            Err(message) => {
                let report = StepReport::failed(OpFailure::new(FailureKind::Host, message));
                self.finished(step.clone(), report, observer);
                return None;
            }
        };
        if self.recorder.is_some() || self.reuse.has_candidates() {
            let op = &self.plan.ops[step.op];
            let input = record::hash_inputs(op, &inputs);
            let memo_key = self.reuse.memo_key(step.op, &input);
            let verdict = self.reuse.decide(step, &input, &memo_key);
            let summary = self.recorder.is_some().then(|| InputSummary {
                heads: self.names[step.op].heads.clone(),
                values: record::describe_inputs(&inputs),
            });
            self.hashes.insert(
                step.clone(),
                record::Hashes {
                    input,
                    memo_key,
                    summary,
                },
            );
            if let Verdict::Reuse { prior, record } = verdict {
                self.replay(step, prior, record, observer);
                return None;
            }
        }
        Some((inputs, started.attempt))
    }

    /// Tells the observer a step is handed to the workers.
    fn started(&self, request: &StepRequest, observer: &mut dyn FnMut(RunEvent<'_>)) {
        let op = &self.plan.ops[request.step.op].name;
        observer(RunEvent::StepStarted {
            step: StepName {
                op,
                keys: &request.step.keys,
            },
            op,
            attempt: request.attempt,
        });
    }

    /// Tells the observer of steps a limit just held back.
    fn report_waiting(&mut self, observer: &mut dyn FnMut(RunEvent<'_>)) {
        for waiting in std::mem::take(&mut self.gates.newly_waiting) {
            let op = &self.plan.ops[waiting.step.op].name;
            observer(RunEvent::StepWaiting {
                step: StepName {
                    op,
                    keys: &waiting.step.keys,
                },
                op,
                on: &waiting.on,
            });
        }
    }

    /// Tells the observer of steps a collect just tolerated.
    fn report_tolerated(&mut self, observer: &mut dyn FnMut(RunEvent<'_>)) {
        for id in std::mem::take(&mut self.scheduler.newly_tolerated) {
            let was_skipped = matches!(
                self.scheduler.steps.get(&id).map(|e| &e.status),
                Some(super::scheduler::Status::Skipped(_))
            );
            let op = &self.plan.ops[id.op].name;
            observer(RunEvent::StepTolerated {
                step: StepName { op, keys: &id.keys },
                op,
                was_skipped,
            });
        }
    }

    /// Replays a stored success: its items (which start the steps mapped over
    /// them) and its value.
    fn replay(
        &mut self,
        step: &StepId,
        prior: Prior,
        record: bool,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        let hashes = self.hashes.remove(step);
        let outputs = &self.plan.ops[step.op].dynamic_outputs;
        for (key, item) in &prior.items {
            if let Some(index) = outputs.iter().position(|o| **o == *item.output) {
                let value = self.scheduler.values.put(item.value.clone());
                self.scheduler.on_emit(step, index, key.clone(), value);
            }
        }
        if record && let Some(recorder) = &self.recorder {
            let finished = self.finished_record(step, hashes);
            recorder.record(finished.reused(&prior));
        }
        let op = &self.plan.ops[step.op].name;
        observer(RunEvent::StepReused {
            step: StepName {
                op,
                keys: &step.keys,
            },
            op,
        });
        if let Some(dir) = &self.plan.ops[step.op].values_dir {
            let named: Vec<(&str, &[u8])> = prior
                .outputs
                .iter()
                .filter_map(|o| Some((o.name.as_str(), o.value.as_deref()?)))
                .collect();
            let result = (!prior.no_value).then_some(&*prior.output);
            if let Err(message) = super::files::write_values(dir, op, &step.keys, result, &named) {
                tracing::error!("{message}");
            }
        }
        let declared = &self.plan.ops[step.op].plain_outputs;
        if !declared.is_empty() {
            let named: Box<[Value]> = declared
                .iter()
                .map(|d| {
                    let stored = prior.outputs.iter().find(|o| o.name == d.name);
                    match stored.and_then(|o| o.value.clone()) {
                        Some(bytes) => self.scheduler.values.put(bytes),
                        None => Value::Nothing,
                    }
                })
                .collect();
            self.scheduler.set_named(step, named);
        }
        let value = if prior.no_value {
            Value::Nothing
        } else {
            self.scheduler.values.put(prior.output)
        };
        self.scheduler.on_finished(step, Ok(value));
    }

    fn finished_record(
        &self,
        step: &'p StepId,
        hashes: Option<record::Hashes>,
    ) -> record::Finished<'_> {
        let entry = self.scheduler.steps.get(step);
        record::Finished {
            names: &self.names[step.op],
            step,
            attempts: self.attempt(step),
            hashes,
            emitted: entry.and_then(|e| e.emitted.as_deref()),
            values: &self.scheduler.values,
            position: entry.and_then(|e| e.position()),
        }
    }

    pub(super) fn report_skipped(&mut self, observer: &mut dyn FnMut(RunEvent<'_>)) {
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
        self.scheduler.attempt(step)
    }

    /// Records an item the inbox put in order: its store write (batched
    /// until [`Coordinator::flush_items`]), its metadata event, its value
    /// and its place in the scheduler; its steps wait in the backlog.
    fn record_item(&mut self, item: Emitted, observer: &mut dyn FnMut(RunEvent<'_>)) {
        if self.recorder.is_some() {
            let mut streamed = std::mem::take(&mut self.streamed);
            self.stream_item(&mut streamed, &item);
            self.streamed = streamed;
        }
        if let Some(metadata) = &item.metadata {
            let op = &self.plan.ops[item.step.op];
            observer(RunEvent::ItemMetadata {
                step: StepName {
                    op: &op.name,
                    keys: &item.step.keys,
                },
                op: &op.name,
                output: op
                    .dynamic_outputs
                    .get(item.output)
                    .map_or("", String::as_str),
                key: item.key.as_str(),
                metadata,
            });
        }
        let value = self.scheduler.values.put_slice(&item.value);
        if let Some(new) = self
            .scheduler
            .record_item(&item.step, item.output, item.key, value)
        {
            self.backlog.push_back(new);
        }
    }

    /// Sends the items recorded since the last call to the store.
    fn flush_items(&mut self) {
        if let Some(recorder) = &self.recorder {
            for (step, items) in self.streamed.drain(..) {
                let written = items.first_seq + items.items.len() as u64;
                self.items_written.insert(step, written);
                recorder.record_items(items);
            }
        }
    }

    /// Turns up to `limit` items of the backlog into steps.
    fn take_emitted(&mut self, limit: usize) {
        for _ in 0..limit {
            let Some(item) = self.backlog.pop_front() else {
                break;
            };
            self.scheduler.map_item(item);
        }
        release_if_drained(&mut self.backlog);
    }

    /// Adds an emitted item to the batch of its step that goes to the store;
    /// the step's count of written items is looked up once per batch.
    fn stream_item(&self, batches: &mut Vec<(StepId, ItemsRecord)>, item: &Emitted) {
        let names = &self.names[item.step.op];
        let Some(output) = names.outputs.get(item.output) else {
            return;
        };
        let batch = match batches.iter().position(|(s, _)| *s == item.step) {
            Some(i) => &mut batches[i].1,
            None => {
                batches.push((
                    item.step.clone(),
                    ItemsRecord {
                        op: names.op.clone(),
                        keys: item.step.keys.clone(),
                        first_seq: self.items_written.get(&item.step).copied().unwrap_or(0),
                        items: Vec::new(),
                    },
                ));
                &mut batches.last_mut().expect("just pushed").1
            }
        };
        batch.items.push(StoredItem {
            output: output.clone(),
            key: item.key.as_str().to_owned(),
            value: Arc::from(item.value.as_slice()),
            metadata: item.metadata.as_deref().map(Arc::from),
        });
    }

    fn finished(
        &mut self,
        step: StepId,
        mut report: StepReport,
        observer: &mut dyn FnMut(RunEvent<'_>),
    ) {
        // `values_dir`: the value goes to its file before anyone hears the
        // step succeeded; a value that cannot be written fails the step.
        if let (Some(dir), Ok(bytes)) = (&self.plan.ops[step.op].values_dir, &report.outcome) {
            let named: Vec<(&str, &[u8])> = report
                .outputs
                .iter()
                .filter_map(|n| Some((n.name.as_str(), n.value.as_deref()?)))
                .collect();
            let result = (!report.no_value).then_some(bytes.as_slice());
            let op = &self.plan.ops[step.op].name;
            if let Err(message) = super::files::write_values(dir, op, &step.keys, result, &named) {
                report.outcome = Err(OpFailure::new(FailureKind::Host, message));
            }
        }
        self.gates.release(&step);
        report.stats.waited = self.gates.take_waited(&step);
        add_stats(&mut self.totals[step.op], &report.stats);
        let op = &self.plan.ops[step.op];
        let name = StepName {
            op: &op.name,
            keys: &step.keys,
        };
        if let Some(delay) = self.retry_delay(&step, &report).filter(|_| !self.stopping) {
            let attempt = self.attempt(&step);
            observer(RunEvent::StepRetrying {
                step: name,
                op: &op.name,
                report: &report,
                attempt,
                delay,
            });
            self.retried[step.op] += 1;
            self.scheduler.retry(step, Instant::now() + delay);
            return;
        }
        observer(RunEvent::StepFinished {
            step: name,
            op: &op.name,
            report: &report,
        });
        let hashes = self.hashes.remove(&step);
        if let Some(recorder) = &self.recorder {
            self.items_written.remove(&step);
            recorder.record(self.finished_record(&step, hashes).ran(&report));
        }
        if report.outcome.is_ok() && !report.outputs.is_empty() {
            let named: Box<[Value]> = report
                .outputs
                .iter()
                .map(|named| match &named.value {
                    Some(bytes) => self.scheduler.values.put_slice(bytes),
                    None => Value::Nothing,
                })
                .collect();
            self.scheduler.set_named(&step, named);
        }
        let outcome = match report.outcome {
            Ok(_) if report.no_value => Ok(Value::Nothing),
            outcome => outcome.map(|bytes| self.scheduler.values.put_slice(&bytes)),
        };
        self.scheduler.on_finished(&step, outcome);
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

fn add_stats(op: &mut OpSummary, s: &StepStats) {
    op.busy += s.wall;
    op.peak_memory_bytes = op.peak_memory_bytes.max(s.peak_memory_bytes);
    op.emitted_items += s.emitted_items;
    op.emitted_bytes += s.emitted_bytes;
    if let Some(fuel) = s.fuel_used {
        *op.fuel_used.get_or_insert(0) += fuel;
    }
    op.http_requests += s.http_requests;
    op.http_sent_bytes += s.http_sent_bytes;
    op.http_received_bytes += s.http_received_bytes;
    op.waited += s.waited;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_backlog_gives_a_large_ring_back_and_keeps_a_small_one() {
        let mut large: VecDeque<u64> = (0..BACKLOG_KEPT as u64 * 2).collect();
        release_if_drained(&mut large);
        assert!(large.capacity() > BACKLOG_KEPT, "not drained yet: kept");
        large.clear();
        release_if_drained(&mut large);
        assert_eq!(large.capacity(), 0, "a drained large ring is freed");

        let mut small: VecDeque<u64> = (0..1000).collect();
        small.clear();
        let room = small.capacity();
        release_if_drained(&mut small);
        assert_eq!(small.capacity(), room, "a small ring is kept for reuse");
    }
}
