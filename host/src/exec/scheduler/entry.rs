//! What the scheduler keeps per step: its status and the items it emitted.
//! Kept small on purpose: a million-key map holds a million of these.

use crate::exec::values::Value;
use crate::key::MappingKey;
use crate::runtime::OpFailure;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// Where a step is in its life: `Waiting` for inputs, `Queued` to run as
/// the given attempt (1 for the first), handed out and `Running` as an
/// attempt, in `Backoff` before the given attempt, or ended. Events about
/// an attempt count only while the step is `Running` as that attempt, so
/// late and duplicate ones change nothing.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    Waiting,
    Queued(u32),
    Running(u32),
    Backoff(u32),
    Succeeded(Value),
    /// Boxed, like the skip reason, to keep every step's entry small: a
    /// million-key map holds a million of them.
    Failed(Box<OpFailure>),
    Skipped(Box<str>),
}

impl Status {
    pub(super) fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Succeeded(_) | Status::Failed(_) | Status::Skipped(_)
        )
    }
}

/// Items a step emitted, per dynamic output.
pub(crate) type Emitted = BTreeMap<String, Items>;

/// The items of one dynamic output of one step, in emission order. A mapped
/// step finds its own item by position ([`StepEntry::item`]); the index by
/// key is built only if something looks an item up by key (an outer level of
/// a nested map), so a plain million-key map never builds it.
#[derive(Default)]
pub(crate) struct Items {
    pub order: Vec<(MappingKey, Value)>,
    index: std::cell::OnceCell<HashMap<MappingKey, usize>>,
    /// Per item, the slot of the first step mapped over it (the others
    /// follow it); empty if nothing is mapped over this output. How the
    /// table finds a mapped step by its keys (`table.rs`).
    first_slots: Vec<u32>,
}

impl Items {
    /// Appends an item; returns its position.
    pub(super) fn push(&mut self, key: MappingKey, value: Value) -> usize {
        let at = self.order.len();
        if let Some(index) = self.index.get_mut() {
            index.insert(key.clone(), at);
        }
        self.order.push((key, value));
        at
    }

    pub(super) fn get(&self, key: &MappingKey) -> Option<&Value> {
        self.position(key).map(|i| &self.order[i].1)
    }

    /// Where `key` stands in emission order.
    pub(crate) fn position(&self, key: &MappingKey) -> Option<usize> {
        let index = self.index.get_or_init(|| {
            self.order
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect()
        });
        index.get(key).copied()
    }

    /// The slot of the first step mapped over item `at`.
    pub(super) fn first_slot(&self, at: usize) -> Option<u32> {
        self.first_slots
            .get(at)
            .copied()
            .filter(|&slot| slot != super::NO_SLOT)
    }

    pub(super) fn set_first_slot(&mut self, at: usize, slot: u32) {
        if self.first_slots.len() <= at {
            self.first_slots.resize(at + 1, super::NO_SLOT);
        }
        self.first_slots[at] = slot;
    }

    /// The item at `at` if its key is `key`, else looked up by key.
    pub(super) fn find(&self, at: u32, key: &MappingKey) -> Option<&Value> {
        match self.order.get(at as usize) {
            Some((k, value)) if k == key => Some(value),
            _ => self.get(key),
        }
    }
}

pub(crate) struct StepEntry {
    pub status: Status,
    /// Boxed: most steps emit nothing.
    pub emitted: Option<Box<Emitted>>,
    /// Its op (so a step's id can be read back from its slot).
    pub(super) op: u32,
    /// Position of this step's own (last) key among the items of the output
    /// it is mapped over; [`NO_ITEM`] outside any map.
    pub(super) item: u32,
    /// The slot (see [`super::StepId`]) of the step whose item created this
    /// one, if known: a mapped step reads its input from there.
    pub(super) parent: u32,
}

/// [`StepEntry::item`] of a step outside any map.
pub(super) const NO_ITEM: u32 = u32::MAX;

impl StepEntry {
    /// Its op.
    pub fn op(&self) -> crate::plan::OpId {
        self.op as crate::plan::OpId
    }

    /// Its item's position among its emitter's items; `None` outside a map.
    pub fn position(&self) -> Option<u32> {
        (self.item != NO_ITEM).then_some(self.item)
    }

    /// The value of the item `key` it emitted on `output` (looked for at
    /// position `at` first).
    pub fn item_of(&self, output: &str, at: u32, key: &MappingKey) -> Option<&Value> {
        self.items(output)?.find(at, key)
    }

    /// The items the step emitted on `output`, if any.
    pub fn items(&self, output: &str) -> Option<&Items> {
        self.emitted.as_ref().and_then(|e| e.get(output))
    }
}
