//! Puts what a transport reports into the order the coordinator acts on:
//! each step's items once and in the order they were emitted, and a step's
//! end only after all of its items (the end says how many there are). The
//! thread pool delivers in that order already; remote workers, redeliveries
//! and several streams need not.
//!
//! Whether an event's attempt is the one running is the scheduler's to say;
//! the inbox sees only events that passed that check.

use super::scheduler::StepId;
use super::worker::Emitted;
use crate::runtime::StepReport;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// Per running step: items taken so far, items that came early, an end that
/// came before its items.
#[derive(Default)]
pub(crate) struct Inbox {
    /// The next expected `seq` of each step that emitted.
    received: FxHashMap<StepId, u64>,
    /// Items that arrived ahead of an earlier one of the same step, by seq.
    early: FxHashMap<StepId, BTreeMap<u64, Emitted>>,
    /// Ends that arrived before all their items did.
    held: FxHashMap<StepId, StepReport>,
}

impl Inbox {
    /// Takes item `seq` of its step: appends it, and any early ones it
    /// unblocks, to `ready` in order; a duplicate is dropped. Returns the
    /// step's end if it was held for this item.
    pub fn item(
        &mut self,
        seq: u64,
        item: Emitted,
        ready: &mut impl Extend<Emitted>,
    ) -> Option<StepReport> {
        // One lookup per item on the usual path (items in order, none held):
        // this runs for every item of a million-item emitter.
        let received = self.received.entry(item.step.clone()).or_insert(0);
        if seq < *received {
            return None;
        }
        if seq > *received {
            let step = item.step.clone();
            self.early.entry(step).or_default().insert(seq, item);
            return None;
        }
        // Only an early item or a held end needs the step again.
        let step = (!self.early.is_empty() || !self.held.is_empty()).then(|| item.step.clone());
        ready.extend([item]);
        *received += 1;
        // The usual path ends here.
        let step = step?;
        if let Some(early) = self.early.get_mut(&step) {
            while let Some(item) = early.remove(received) {
                ready.extend([item]);
                *received += 1;
            }
        }
        let next = *received;
        let complete = self
            .held
            .get(&step)
            .is_some_and(|report| report.stats.emitted_items <= next);
        if complete {
            return self.held.remove(&step).inspect(|_| self.forget(&step));
        }
        None
    }

    /// Takes a step's end: returned if all its items are in, else held until
    /// they are (`None`). A second end while one is held is dropped.
    pub fn finished(&mut self, step: &StepId, report: StepReport) -> Option<StepReport> {
        // Most steps emit nothing: then none of their items can be missing,
        // none was received (an item of this attempt would count), and no
        // earlier end of theirs is held. Nothing to look up or forget.
        if report.stats.emitted_items == 0 {
            return Some(report);
        }
        if self.held.contains_key(step) {
            return None;
        }
        let received = self.received.get(step).copied().unwrap_or(0);
        if received < report.stats.emitted_items {
            self.held.insert(step.clone(), report);
            return None;
        }
        self.forget(step);
        Some(report)
    }

    fn forget(&mut self, step: &StepId) {
        self.received.remove(step);
        self.early.remove(step);
    }
}
