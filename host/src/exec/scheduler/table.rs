//! Every step of a run, in the order the scheduler created them.
//!
//! Entries sit in one vector; a step the scheduler handed out carries its
//! index ([`StepId`]'s slot), so the events that come back for it find it
//! with no hashing and, in a fan-out, near the entries of the steps created
//! just before and after it. Steps named from outside (a resume, a remote
//! worker, an upstream step found by its keys) are found through the index
//! by op and keys.

use super::entry::StepEntry;
use super::{NO_SLOT, StepId};
use rustc_hash::FxHashMap as HashMap;

#[derive(Default)]
pub(crate) struct Steps {
    entries: Vec<StepEntry>,
    index: HashMap<StepId, usize>,
}

impl Steps {
    /// Where `step` is in `entries`.
    fn find(&self, step: &StepId) -> Option<usize> {
        if step.slot != NO_SLOT {
            return Some(step.slot as usize);
        }
        self.index.get(step).copied()
    }

    pub fn get(&self, step: &StepId) -> Option<&StepEntry> {
        self.find(step).and_then(|at| self.entries.get(at))
    }

    pub fn get_mut(&mut self, step: &StepId) -> Option<&mut StepEntry> {
        self.find(step).and_then(|at| self.entries.get_mut(at))
    }

    /// The entry at `slot`, if there is one.
    pub fn at(&self, slot: u32) -> Option<&StepEntry> {
        if slot == NO_SLOT {
            return None;
        }
        self.entries.get(slot as usize)
    }

    pub fn contains_key(&self, step: &StepId) -> bool {
        self.find(step).is_some()
    }

    /// Adds `step` (or replaces its entry); returns it with its slot.
    pub fn insert(&mut self, mut step: StepId, entry: StepEntry) -> StepId {
        // The index's copy has no slot; one lookup hashes the keys once.
        step.slot = NO_SLOT;
        let at = match self.index.entry(step.clone()) {
            std::collections::hash_map::Entry::Occupied(at) => {
                let at = *at.get();
                self.entries[at] = entry;
                at
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                let at = self.entries.len();
                self.entries.push(entry);
                vacant.insert(at);
                at
            }
        };
        // Past four billion steps the rest are found by their keys.
        step.slot = u32::try_from(at)
            .ok()
            .filter(|&s| s != NO_SLOT)
            .unwrap_or(NO_SLOT);
        step
    }

    /// Every step with its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&StepId, &StepEntry)> {
        self.index.iter().map(|(id, &at)| (id, &self.entries[at]))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::scheduler::Status;
    use crate::key::{KeyPath, MappingKey};

    fn entry(attempt: u32) -> StepEntry {
        StepEntry {
            status: Status::Queued(attempt),
            emitted: None,
            item: 0,
            parent: NO_SLOT,
        }
    }

    fn attempt(steps: &Steps, id: &StepId) -> Option<u32> {
        match steps.get(id)?.status {
            Status::Queued(a) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn a_step_is_found_by_its_slot_and_by_its_keys() {
        let mut steps = Steps::default();
        let key = |k: &str| KeyPath::from([MappingKey::parse(k).unwrap()].as_slice());
        let a = steps.insert(StepId::new(1, key("a")), entry(1));
        let b = steps.insert(StepId::new(1, key("b")), entry(2));
        assert_eq!((a.slot, b.slot), (0, 1));
        assert_eq!(attempt(&steps, &b), Some(2));
        // The same step named from outside (no slot) is the same entry.
        assert_eq!(attempt(&steps, &StepId::new(1, key("b"))), Some(2));
        assert_eq!(attempt(&steps, &StepId::new(1, key("a"))), Some(1));
        assert!(steps.get(&StepId::new(2, key("a"))).is_none());
        // Inserting a step again replaces its entry and keeps its slot.
        let again = steps.insert(StepId::new(1, key("a")), entry(3));
        assert_eq!(again.slot, 0);
        assert_eq!(attempt(&steps, &a), Some(3));
        assert_eq!(steps.len(), 2);
        let mut seen: Vec<_> = steps.iter().map(|(id, _)| id.keys[0].to_string()).collect();
        seen.sort();
        assert_eq!(seen, ["a", "b"]);
    }
}
