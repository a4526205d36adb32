//! Where steps run, behind one seam: the coordinator hands steps over and
//! takes back what happened to them, without knowing whether they run on
//! threads of this process or on other machines. [`ThreadPool`] is the
//! first implementation (the workers of `exec::worker`); the scale-out work
//! (issue 13) adds NATS JetStream workers behind the same trait, with the
//! messages of `exec::wire`.
//!
//! Every event names the attempt it belongs to, and a finished step says how
//! many items it emitted, so the coordinator can ignore late or duplicate
//! events and never relies on items arriving before their step's end.

use super::scheduler::StepId;
use super::worker::{
    BATCH_THRESHOLD, Bells, Doorbell, Emitted, Inputs, Outbox, QUEUED_PER_WORKER, StepQueue,
};
use crate::runtime::StepReport;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// One step to run.
#[derive(Debug)]
pub(crate) struct StepRequest {
    /// The step.
    pub step: StepId,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// Its input values, in the order of the op's inputs.
    pub inputs: Inputs,
}

/// What happened to a step, as the transport reports it.
pub(crate) enum StepEvent {
    /// A running step emitted an item: its `seq`-th (from 0) of this attempt.
    Item {
        /// The attempt that emitted it.
        attempt: u32,
        /// Position among the attempt's items.
        seq: u64,
        /// The item, with its step.
        item: Emitted,
    },
    /// A step ended; `report.stats.emitted_items` items belong to it.
    Finished {
        /// The step.
        step: StepId,
        /// The attempt that ended.
        attempt: u32,
        /// What it did. Boxed: every event, items included, is as large as
        /// its largest variant, and a million-item drain moved 300-byte
        /// events (the report) instead of 112-byte ones.
        report: Box<StepReport>,
    },
}

/// What transports reported, in order, as whole blocks of events: a
/// worker's outbox hands over the blocks it filled and takes emptied ones
/// back, so an event is written once by its worker and read once by the
/// coordinator, never copied into one long vector in between (copying and
/// regrowing that vector was most of the bytes the coordinator moved per key).
#[derive(Default)]
pub(crate) struct Events {
    blocks: VecDeque<VecDeque<StepEvent>>,
    /// Emptied blocks, for an outbox to fill again.
    spare: Vec<Vec<StepEvent>>,
}

/// Events per block made here (a transport that reports one at a time).
const EVENTS_PER_BLOCK: usize = 256;

/// Emptied blocks kept for reuse; the rest are freed. Enough for every
/// outbox to refill its own (64 each) on a large machine. Unbounded, a
/// coordinator that once fell millions of events behind a fast emitter kept
/// all their blocks for the rest of the run (~0.4 GiB at 10,000,000 keys).
const MAX_SPARE: usize = 1024;

impl Events {
    /// Adds one event after the others.
    pub fn push(&mut self, event: StepEvent) {
        match self.blocks.back_mut() {
            Some(block) if block.len() < EVENTS_PER_BLOCK => block.push_back(event),
            _ => {
                let mut block = VecDeque::from(
                    self.spare
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(EVENTS_PER_BLOCK)),
                );
                block.push_back(event);
                self.blocks.push_back(block);
            }
        }
    }

    /// Adds a block of events after the others, without copying them.
    pub fn push_block(&mut self, block: Vec<StepEvent>) {
        if block.is_empty() {
            self.keep_spare(block);
        } else {
            self.blocks.push_back(VecDeque::from(block));
        }
    }

    /// The oldest event not yet taken.
    pub fn next(&mut self) -> Option<StepEvent> {
        loop {
            let block = self.blocks.front_mut()?;
            if let Some(event) = block.pop_front() {
                return Some(event);
            }
            if let Some(empty) = self.blocks.pop_front() {
                self.keep_spare(Vec::from(empty));
            }
        }
    }

    /// Keeps an emptied block for reuse, up to [`MAX_SPARE`].
    fn keep_spare(&mut self, block: Vec<StepEvent>) {
        if self.spare.len() < MAX_SPARE {
            self.spare.push(block);
        }
    }

    /// An emptied block to fill again, if there is one.
    pub fn take_spare(&mut self) -> Option<Vec<StepEvent>> {
        self.spare.pop()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.blocks.iter().map(VecDeque::len).sum()
    }

    #[cfg(test)]
    pub fn spare_len(&self) -> usize {
        self.spare.len()
    }
}

/// What [`Transport::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Events were taken (possibly none, after a timeout).
    Looked,
    /// Nothing asked for attention within a zero timeout; nothing was taken.
    Quiet,
    /// The transport is gone: no more events will come.
    Closed,
}

/// Runs steps somewhere and reports what happened to them.
pub(crate) trait Transport {
    /// How many steps should be handed over and not yet finished, given how
    /// many are ready: enough to keep every worker busy, few enough that a
    /// step is started only when it can run soon.
    fn capacity(&self, ready: usize) -> usize;

    /// Hands steps over to run.
    fn submit(&mut self, steps: Vec<StepRequest>);

    /// Waits up to `timeout` for something to happen, then takes what
    /// happened into `events`. A zero timeout takes events only if the
    /// transport asked for attention ([`Woke::Quiet`] otherwise), so a
    /// coordinator busy with other work does not poll for nothing.
    fn wait(&mut self, timeout: Duration, events: &mut Events) -> Woke;

    /// Stops: steps not yet started never start (running ones end by
    /// themselves, interrupted by the runtime). Returns how many were dropped.
    fn stop(&mut self) -> usize;
}

/// The workers of this process: threads that take steps from a shared queue
/// and report through per-worker outboxes and a doorbell.
pub(crate) struct ThreadPool<'a> {
    pub workers: usize,
    pub queue: &'a StepQueue,
    pub doorbell: &'a Doorbell,
    pub outboxes: &'a [Arc<Outbox>],
}

impl ThreadPool<'_> {
    /// Takes everything the workers queued, in each worker's order.
    fn drain(&self, events: &mut Events) {
        for outbox in self.outboxes {
            outbox.take(events);
        }
    }
}

impl Transport for ThreadPool<'_> {
    fn capacity(&self, ready: usize) -> usize {
        // In a large fan-out enough for every worker to find its next step
        // at once; otherwise one per free worker.
        if ready >= BATCH_THRESHOLD * self.workers {
            self.workers * QUEUED_PER_WORKER
        } else {
            self.workers
        }
    }

    fn submit(&mut self, steps: Vec<StepRequest>) {
        self.queue.push(steps);
    }

    fn wait(&mut self, timeout: Duration, events: &mut Events) -> Woke {
        match self.doorbell.wait(timeout) {
            // Workers ring only when asked to hurry: after a quiet wait, take
            // what they queued anyway (a zero wait only looks).
            Bells::Rung => {
                self.drain(events);
                Woke::Looked
            }
            Bells::Quiet if !timeout.is_zero() => {
                self.drain(events);
                Woke::Looked
            }
            Bells::Quiet => Woke::Quiet,
            Bells::Closed => Woke::Closed,
        }
    }

    fn stop(&mut self) -> usize {
        self.queue.close()
    }
}

/// Steps of some ops on this process's threads, the rest elsewhere: under
/// `run --nats`, an op with a mount that is not shared runs on the
/// coordinator's machine, the only one that sees that directory.
pub(crate) struct Split<'a> {
    pub local: ThreadPool<'a>,
    pub remote: &'a mut dyn Transport,
    /// Per op: whether its steps run here.
    pub is_local: Vec<bool>,
}

/// How often a split transport looks at both sides while waiting.
const SPLIT_POLL: Duration = Duration::from_millis(1);

impl Transport for Split<'_> {
    fn capacity(&self, ready: usize) -> usize {
        self.local.capacity(ready) + self.remote.capacity(ready)
    }

    fn submit(&mut self, steps: Vec<StepRequest>) {
        let (local, remote): (Vec<_>, Vec<_>) =
            steps.into_iter().partition(|s| self.is_local[s.step.op]);
        if !local.is_empty() {
            self.local.submit(local);
        }
        if !remote.is_empty() {
            self.remote.submit(remote);
        }
    }

    fn wait(&mut self, timeout: Duration, events: &mut Events) -> Woke {
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            let local = self.local.wait(Duration::ZERO, events);
            let remote = self.remote.wait(Duration::ZERO, events);
            if local == Woke::Looked || remote == Woke::Looked {
                return Woke::Looked;
            }
            if local == Woke::Closed && remote == Woke::Closed {
                return Woke::Closed;
            }
            if timeout.is_zero() {
                return Woke::Quiet;
            }
            let now = std::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                // The pool's workers ring only when asked to hurry: take
                // what they queued anyway, as its own wait would.
                self.local.wait(Duration::from_micros(1), events);
                return Woke::Looked;
            }
            let left = deadline.map_or(SPLIT_POLL, |d| d - now);
            std::thread::sleep(left.min(SPLIT_POLL));
        }
    }

    fn stop(&mut self) -> usize {
        self.local.stop().saturating_add(self.remote.stop())
    }
}
