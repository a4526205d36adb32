//! Worker threads: take steps one at a time from a shared queue, run each in
//! the sandbox, and hand emitted items and finished steps back to the
//! coordinator as they happen.

use super::StepId;
use super::transport::{Events, StepEvent, StepRequest};
use crate::key::MappingKey;
use crate::plan::Plan;
use crate::runtime::{
    EmitSink, FailureKind, InputData, OpComponent, OpFailure, Runtime, StepCall, StepReport,
};
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Wakes the coordinator: the news itself waits in the workers'
/// [`Outbox`]es, which the coordinator drains whole on every wake.
///
/// A flag under a mutex and a condition variable, not a channel: a channel's
/// blocking receive spins and calls `sched_yield` before it sleeps (~1.5
/// yields per key in a fan-out, by strace), on the cores the workers need,
/// and rings only need to be noticed, not counted.
#[derive(Default)]
pub(crate) struct Doorbell {
    state: Mutex<Bell>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct Bell {
    rung: bool,
    /// Live [`Ringer`]s; none left and not rung: nobody will ring again.
    ringers: usize,
}

/// What the coordinator learned from the doorbell.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bells {
    /// A worker rang (the flag is cleared).
    Rung,
    /// Nobody rang before the timeout.
    Quiet,
    /// Every worker has gone.
    Closed,
}

impl Doorbell {
    /// A handle for one worker; the bell closes when the last one is dropped.
    pub fn ringer(self: &Arc<Self>) -> Ringer {
        self.lock().ringers += 1;
        Ringer(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bell> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` (zero: only looks) for a ring. The clock is
    /// read only when there is something to wait for.
    pub fn wait(&self, timeout: Duration) -> Bells {
        let mut deadline: Option<Option<std::time::Instant>> = None;
        let mut bell = self.lock();
        loop {
            if bell.rung {
                bell.rung = false;
                return Bells::Rung;
            }
            if bell.ringers == 0 {
                return Bells::Closed;
            }
            if timeout.is_zero() {
                return Bells::Quiet;
            }
            let now = std::time::Instant::now();
            // `None` inside: a timeout too long to add, waited in hours.
            let left = match *deadline.get_or_insert_with(|| now.checked_add(timeout)) {
                Some(deadline) if now >= deadline => return Bells::Quiet,
                Some(deadline) => deadline - now,
                None => Duration::from_secs(3600),
            };
            bell = self
                .wake
                .wait_timeout(bell, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// One worker's hold on the [`Doorbell`].
pub(crate) struct Ringer(Arc<Doorbell>);

impl Ringer {
    fn ring(&self) {
        self.0.lock().rung = true;
        self.0.wake.notify_one();
    }
}

impl Drop for Ringer {
    fn drop(&mut self) {
        self.0.lock().ringers -= 1;
        self.0.wake.notify_one();
    }
}

/// An item a running step emitted.
#[derive(Debug, Clone)]
pub(crate) struct Emitted {
    pub step: StepId,
    /// Index into the op's dynamic outputs.
    pub output: usize,
    pub key: MappingKey,
    pub value: Vec<u8>,
    /// The item's metadata, a JSON array; `None` for most items.
    pub metadata: Option<Box<str>>,
}

/// One worker's results on their way to the coordinator. A finished step is
/// queued here at once (never held back behind the next step, which may run
/// for minutes), and the coordinator takes everything queued at once.
///
/// The worker rings the [`Doorbell`] only when the coordinator should look now: for
/// an emitted item (mapped steps start while the emitter runs) or when the
/// step queue runs low; and only once until the coordinator drains. Otherwise
/// the coordinator looks every [`FLUSH_INTERVAL`]: a fast fan-out costs one
/// wake-up per few hundred steps, not one per step, and no finished step waits
/// longer than that to be reported.
///
/// Events queue in fixed-size blocks that the coordinator hands back empty:
/// an emitter that runs far ahead of the coordinator (a million items in a
/// second) never regrows one big vector. Regrowing it cost ~5% of a
/// fan-out's CPU, most of it the kernel zeroing fresh pages for each larger
/// copy.
///
/// And a bounded number of them: a worker whose outbox is full waits (see
/// [`Outbox::wait_for_room`]) until the coordinator takes it. An emitter
/// faster than the coordinator (ten million items in nine seconds) once
/// queued millions of events here, ~0.4 GiB at its peak; now it runs at the
/// coordinator's pace, and the time it waits is not counted against its
/// time limit (see `EmitSink::emit`).
#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<OutboxState>,
    /// Signalled when the coordinator takes the blocks, for a waiting worker.
    room: Condvar,
}

#[derive(Default)]
struct OutboxState {
    /// Queued events, oldest block first; only the last one has room.
    blocks: Vec<Vec<StepEvent>>,
    /// Empty blocks to fill next.
    free: Vec<Vec<StepEvent>>,
    /// A ring was sent and the coordinator has not drained since.
    rung: bool,
    /// The worker waits for room (so a take must wake it).
    waiting: bool,
    /// The coordinator has gone: no one will take blocks any more.
    closed: bool,
}

/// Events per block.
const BLOCK: usize = 256;

/// Empty blocks an outbox keeps for reuse (the rest are freed).
const FREE_BLOCKS: usize = 64;

/// Full blocks an outbox holds before its worker waits for the coordinator:
/// 16,384 events, a few milliseconds of the fastest emitter.
const MAX_BLOCKS: usize = 64;

impl Outbox {
    /// Hands everything queued to `events`, in order, block by block (and
    /// takes emptied blocks back); the next push that wants attention rings
    /// again.
    pub fn take(&self, events: &mut Events) {
        let blocks = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.rung = false;
            while state.free.len() < FREE_BLOCKS {
                match events.take_spare() {
                    Some(mut block) => {
                        block.clear();
                        state.free.push(block);
                    }
                    None => break,
                }
            }
            if state.waiting {
                self.room.notify_one();
            }
            std::mem::take(&mut state.blocks)
        };
        for block in blocks {
            events.push_block(block);
        }
    }

    /// Queues `out`; returns whether to ring (`urgent` and not yet rung)
    /// and whether the outbox is now full (see [`Outbox::wait_for_room`]).
    fn push(&self, out: StepEvent, urgent: bool) -> Pushed {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.blocks.last().is_none_or(|b| b.len() >= BLOCK) {
            let block = state
                .free
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BLOCK));
            state.blocks.push(block);
        }
        if let Some(block) = state.blocks.last_mut() {
            block.push(out);
        }
        let ring = urgent && !state.rung;
        state.rung |= ring;
        Pushed {
            ring,
            full: Self::full(&state),
        }
    }

    /// [`MAX_BLOCKS`] full blocks queued, and someone to take them.
    fn full(state: &OutboxState) -> bool {
        state.blocks.len() >= MAX_BLOCKS
            && state.blocks.last().is_some_and(|b| b.len() >= BLOCK)
            && !state.closed
    }

    /// Waits until the coordinator has taken the queued blocks (or is gone);
    /// returns how long that took.
    fn wait_for_room(&self) -> Duration {
        let started = std::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while Self::full(&state) {
            state.waiting = true;
            state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.waiting = false;
        started.elapsed()
    }

    /// The coordinator is gone: a worker never waits for it again.
    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        self.room.notify_all();
    }
}

/// What [`Outbox::push`] tells its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pushed {
    /// Ring the coordinator.
    ring: bool,
    /// Wait for room before queueing more.
    full: bool,
}

/// The steps waiting for a worker, shared by all workers: any free worker
/// takes the next step, so no step waits behind a long one while another
/// worker is idle. Taking one step is one uncontended lock; the coordinator
/// adds many at once.
#[derive(Default)]
pub(crate) struct StepQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    steps: VecDeque<StepRequest>,
    closed: bool,
    /// Workers blocked in [`StepQueue::pop`]: notified only if there are any.
    idle: usize,
}

impl StepQueue {
    /// Adds steps for the workers.
    pub fn push(&self, steps: impl IntoIterator<Item = StepRequest>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.steps.extend(steps);
        if state.idle > 0 {
            self.ready.notify_all();
        }
    }

    /// Lets every worker finish its current step and stop; returns how many
    /// queued steps will now never run.
    pub fn close(&self) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        let dropped = state.steps.len();
        state.steps.clear();
        self.ready.notify_all();
        dropped
    }

    /// The next step and how many wait behind it, or `None` once closed.
    fn pop(&self) -> Option<(StepRequest, usize)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.closed {
                return None;
            }
            if let Some(request) = state.steps.pop_front() {
                return Some((request, state.steps.len()));
            }
            state.idle += 1;
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle -= 1;
        }
    }
}

/// A step's input values: inline for the usual one or two inputs, so
/// dispatching a step allocates nothing for them.
pub(crate) type Inputs = smallvec::SmallVec<[InputData; 2]>;

/// Steps handed out per worker in a large fan-out: enough that the workers
/// never wait for the coordinator, few enough that queued inputs stay small.
pub(crate) const QUEUED_PER_WORKER: usize = 128;

/// Ready steps per worker above which the queue is kept full; below it, a
/// step is queued only when a worker is free to run it at once.
pub(crate) const BATCH_THRESHOLD: usize = 16;

/// Queued steps at or below which a finished step rings the coordinator, so
/// it refills the queue before the workers run dry.
const LOW_WATER: usize = 64;

/// How often the coordinator drains the outboxes when nobody rang: the
/// longest a finished step waits to be reported.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(2);

/// Where one worker's steps send their items. Owned by the worker alone, so
/// cloning it per step touches no count that another thread touches.
struct Sender {
    outbox: Arc<Outbox>,
    ring: Ringer,
}

impl Sender {
    /// Queues `out`; when the outbox is full, rings and waits until the
    /// coordinator takes it. Returns how long it waited.
    fn send(&self, out: StepEvent, urgent: bool) -> Duration {
        let pushed = self.outbox.push(out, urgent);
        if pushed.ring || pushed.full {
            self.ring.ring();
        }
        if pushed.full {
            self.outbox.wait_for_room()
        } else {
            Duration::ZERO
        }
    }
}

struct QueueSink {
    /// The step, for its items; `None` for an op that declares no dynamic
    /// output, whose emits the sandbox refuses before they reach a sink.
    /// (Such a step takes no copy of its keys, whose reference counts the
    /// coordinator's thread touches too.)
    step: Option<StepId>,
    attempt: u32,
    /// Items this attempt emitted so far.
    seq: u64,
    sender: Arc<Sender>,
}

impl EmitSink for QueueSink {
    fn emit(
        &mut self,
        output: usize,
        key: MappingKey,
        value: Vec<u8>,
        metadata: Option<Box<str>>,
    ) -> Duration {
        let Some(step) = &self.step else {
            tracing::error!("an op without dynamic outputs emitted `{key}` (a dynhost bug)");
            return Duration::ZERO;
        };
        let item = Emitted {
            step: step.clone(),
            output,
            key,
            value,
            metadata,
        };
        let seq = self.seq;
        self.seq += 1;
        let event = StepEvent::Item {
            attempt: self.attempt,
            seq,
            item,
        };
        self.sender.send(event, true)
    }
}

/// The strings of one op's calls, made once per worker (see [`StepCall`]),
/// not per step.
pub(crate) struct OpStrings {
    name: Arc<str>,
    config: String,
    input_names: Vec<String>,
}

impl OpStrings {
    /// Every op's, in plan order.
    pub fn of(plan: &Plan) -> Vec<Self> {
        plan.ops
            .iter()
            .map(|op| OpStrings {
                name: Arc::from(op.name.as_str()),
                config: op.config_json.clone(),
                input_names: op.inputs.iter().map(|i| i.name.clone()).collect(),
            })
            .collect()
    }
}

/// Runs `step` of `plan` with `component` (a worker thread, a worker
/// process or a NATS worker): a panic in the host fails the step alone.
#[expect(
    clippy::too_many_arguments,
    reason = "one step's whole context, borrowed"
)]
pub(crate) fn run_one(
    runtime: &Runtime,
    plan: &Plan,
    strings: &[OpStrings],
    component: &OpComponent,
    run_id: &str,
    step: &StepId,
    inputs: Inputs,
    sink: Box<dyn EmitSink>,
) -> StepReport {
    let strings = &strings[step.op];
    let call = StepCall {
        run_id,
        op: &strings.name,
        keys: &step.keys,
        config_json: &strings.config,
        input_names: &strings.input_names,
    };
    let policy = &plan.ops[step.op].policy;
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.run_step(component, policy, &call, inputs, sink)
    }))
    .unwrap_or_else(|panic| host_panic(&panic))
}

/// What a worker thread is given.
pub(crate) struct WorkerContext<'a> {
    pub plan: &'a Plan,
    pub runtime: &'a Runtime,
    pub components: &'a [OpComponent],
    pub run_id: &'a str,
    pub queue: &'a StepQueue,
    pub outbox: Arc<Outbox>,
}

/// A worker thread: runs steps from the queue until it is closed.
pub(crate) fn work(cx: WorkerContext<'_>, ring: Ringer) {
    let WorkerContext {
        plan,
        runtime,
        components,
        run_id,
        queue,
        outbox,
    } = cx;
    let ops = OpStrings::of(plan);
    let sender = Arc::new(Sender { outbox, ring });
    while let Some((request, waiting)) = queue.pop() {
        let StepRequest {
            step,
            attempt,
            inputs,
        } = request;
        let sink = Box::new(QueueSink {
            step: (!plan.ops[step.op].dynamic_outputs.is_empty()).then(|| step.clone()),
            attempt,
            seq: 0,
            sender: sender.clone(),
        });
        let report = run_one(
            runtime,
            plan,
            &ops,
            &components[step.op],
            run_id,
            &step,
            inputs,
            sink,
        );
        let event = StepEvent::Finished {
            step,
            attempt,
            report: Box::new(report),
        };
        let _ = sender.send(event, waiting <= LOW_WATER);
    }
}

fn host_panic(panic: &Box<dyn std::any::Any + Send>) -> StepReport {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    StepReport::failed(OpFailure::new(
        FailureKind::Host,
        format!("dynhost panicked while running the step: {message}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doorbell_wakes_a_waiter_and_closes_with_its_last_ringer() {
        let bell = Arc::new(Doorbell::default());
        let (first, second) = (bell.ringer(), bell.ringer());
        assert_eq!(bell.wait(Duration::ZERO), Bells::Quiet);
        assert_eq!(bell.wait(Duration::from_millis(5)), Bells::Quiet);
        // Rings while nobody waits are kept (once), not lost.
        first.ring();
        first.ring();
        assert_eq!(bell.wait(Duration::ZERO), Bells::Rung);
        assert_eq!(bell.wait(Duration::ZERO), Bells::Quiet);
        // A ring from another thread ends a long wait at once.
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                second.ring();
            });
            assert_eq!(bell.wait(Duration::from_secs(60)), Bells::Rung);
        });
        assert!(started.elapsed() < Duration::from_secs(30));
        // A ring before the last ringer leaves is still seen, then: closed.
        second.ring();
        drop(first);
        drop(second);
        assert_eq!(bell.wait(Duration::MAX), Bells::Rung);
        assert_eq!(bell.wait(Duration::MAX), Bells::Closed);
    }

    fn item(seq: u64) -> StepEvent {
        StepEvent::Item {
            attempt: 1,
            seq,
            item: Emitted {
                step: StepId::new(0, crate::key::KeyPath::new()),
                output: 0,
                key: MappingKey::parse(&format!("k{seq}")).expect("a valid key"),
                value: Vec::new(),
                metadata: None,
            },
        }
    }

    /// Takes every event out of `events`, as the coordinator does.
    fn seqs(events: &mut Events) -> Vec<u64> {
        std::iter::from_fn(|| events.next())
            .map(|e| match e {
                StepEvent::Item { seq, .. } => seq,
                StepEvent::Finished { .. } => u64::MAX,
            })
            .collect()
    }

    /// A worker whose outbox is full waits, ringing, until the coordinator
    /// takes it (so a fast emitter cannot queue without bound), reports how
    /// long, and never waits once the coordinator is gone.
    #[test]
    fn a_full_outbox_holds_its_worker_until_the_coordinator_takes_it() {
        let outbox = Arc::new(Outbox::default());
        let bell = Arc::new(Doorbell::default());
        let sender = Sender {
            outbox: outbox.clone(),
            ring: bell.ringer(),
        };
        let limit = (MAX_BLOCKS * BLOCK) as u64;
        let sent = std::sync::atomic::AtomicU64::new(0);
        let mut waited = Duration::ZERO;
        // A failed assertion below must not leave the worker waiting.
        struct Closes(Arc<Outbox>);
        impl Drop for Closes {
            fn drop(&mut self) {
                self.0.close();
            }
        }
        std::thread::scope(|scope| {
            // Dropped while the closure unwinds, before the scope joins.
            let _closes = Closes(outbox.clone());
            let worker = scope.spawn(|| {
                let mut waited = Duration::ZERO;
                for seq in 0..limit + 10 {
                    waited += sender.send(item(seq), false);
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                waited
            });
            // The worker stops at the limit, and rings though its items
            // were not urgent.
            assert_eq!(bell.wait(Duration::from_secs(60)), Bells::Rung);
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), limit - 1);
            assert_eq!(outbox.state.lock().unwrap().blocks.len(), MAX_BLOCKS);
            assert!(!worker.is_finished());
            let mut events = Events::default();
            outbox.take(&mut events);
            waited = worker.join().unwrap();
            outbox.take(&mut events);
            assert_eq!(seqs(&mut events), (0..limit + 10).collect::<Vec<_>>());
        });
        // The coordinator took the blocks 100 ms after the ring (the margin
        // is for the worker's own scheduling between ringing and waiting).
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        // Closed (by the guard, as the executor's `CloseOnDrop` does), a
        // full outbox no longer holds anyone.
        for seq in 0..limit {
            let _ = outbox.push(item(seq), false);
        }
        assert_eq!(sender.send(item(limit), false), Duration::ZERO);
    }

    #[test]
    fn events_come_out_in_order_across_blocks_and_blocks_are_reused() {
        let outbox = Outbox::default();
        let n = BLOCK as u64 * 3 + 7;
        // Rings once until drained, however many urgent pushes.
        assert!(outbox.push(item(0), true).ring);
        for seq in 1..n {
            assert!(!outbox.push(item(seq), true).ring);
        }
        let mut events = Events::default();
        outbox.take(&mut events);
        assert_eq!(events.len() as u64, n);
        assert_eq!(seqs(&mut events), (0..n).collect::<Vec<_>>());
        // The next push rings again; the take after it gives the four
        // emptied blocks back to the outbox, to be filled again.
        assert!(outbox.push(item(n), true).ring);
        outbox.take(&mut events);
        let state = outbox.state.lock().unwrap();
        assert_eq!(
            state.free.len(),
            4,
            "the four blocks come back empty for reuse"
        );
        assert!(
            state
                .free
                .iter()
                .all(|b| b.is_empty() && b.capacity() >= BLOCK)
        );
        drop(state);
        assert_eq!(seqs(&mut events), vec![n]);
        // Events pushed one at a time (a remote transport) keep their order too.
        for seq in 0..600 {
            events.push(item(seq));
        }
        assert_eq!(seqs(&mut events), (0..600).collect::<Vec<_>>());
    }

    /// A coordinator that fell far behind keeps a bounded number of the
    /// emptied blocks, not all of them for the rest of the run.
    #[test]
    fn emptied_blocks_kept_for_reuse_are_bounded() {
        let mut events = Events::default();
        let blocks = 3000;
        for b in 0..blocks {
            events.push_block((0..BLOCK as u64).map(|i| item(b * 10_000 + i)).collect());
        }
        assert_eq!(seqs(&mut events).len(), blocks as usize * BLOCK);
        let kept = events.spare_len();
        assert!(kept > 0 && kept < 2000, "{kept} spare blocks kept");
    }
}
