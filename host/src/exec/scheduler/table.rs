//! Every step of a run, in the order the scheduler created them.
//!
//! Entries sit in one vector; a step the scheduler handed out carries its
//! index ([`StepId`]'s slot), so the events that come back for it find it
//! with no hashing and, in a fan-out, near the entries of the steps created
//! just before and after it.
//!
//! There is no index by keys. A step named from outside (a resume, a remote
//! worker, an upstream step found by its keys) is found the way it was
//! made: the steps mapped over an item are created together, in a fixed
//! order, right after the item, and the item remembers the first of their
//! slots ([`Items::first_slot`]); so a step at keys `[.., k]` is its
//! emitter's (found the same way, one level up) item `k`'s first slot plus
//! the op's rank among the ops mapped over that output. A hash index of a
//! 10,000,000-key map cost ~0.8 GiB and a hash of every key on the
//! coordinator (issue 15, goals 6 and 7).

use super::entry::{Items, StepEntry};
use super::{NO_SLOT, StepId};
use crate::key::{KeyPath, MappingKey};
use crate::plan::{OpId, Plan};

/// How the steps of one op are found by their keys.
#[derive(Debug, Clone)]
struct Place {
    /// For an op outside any map: the slot of its only step, once made.
    root: u32,
    /// For a mapped op: what creates its steps.
    mapped: Option<Mapped>,
}

/// The output an op is mapped over, and where the op's step stands among
/// the steps created together for each of its items.
#[derive(Debug, Clone)]
struct Mapped {
    emitter: OpId,
    output: String,
    rank: u32,
}

pub(crate) struct Steps {
    entries: Vec<StepEntry>,
    places: Vec<Place>,
}

impl Steps {
    /// An empty table for `plan`'s ops. `children[op][output]` lists the
    /// ops mapped over each dynamic output, in the order their steps are
    /// created for an item.
    pub fn new(plan: &Plan, children: &[Vec<Vec<OpId>>]) -> Self {
        let mut places = vec![
            Place {
                root: NO_SLOT,
                mapped: None,
            };
            plan.ops.len()
        ];
        for (emitter, outputs) in children.iter().enumerate() {
            for (index, ops) in outputs.iter().enumerate() {
                for (rank, &op) in ops.iter().enumerate() {
                    places[op].mapped = Some(Mapped {
                        emitter,
                        output: plan.ops[emitter].dynamic_outputs[index].clone(),
                        rank: u32::try_from(rank).unwrap_or(u32::MAX),
                    });
                }
            }
        }
        Self {
            entries: Vec::new(),
            places,
        }
    }

    /// Where `step` is in `entries`.
    fn find(&self, step: &StepId) -> Option<usize> {
        if step.slot != NO_SLOT {
            return Some(step.slot as usize);
        }
        self.find_by_keys(step.op, &step.keys)
    }

    /// The slot of `op`'s step at `keys`, found through the items that
    /// created it (see the module's comment).
    fn find_by_keys(&self, op: OpId, keys: &[MappingKey]) -> Option<usize> {
        let place = self.places.get(op)?;
        match (&place.mapped, keys.split_last()) {
            (None, None) => (place.root != NO_SLOT).then_some(place.root as usize),
            (Some(mapped), Some((key, outer))) => {
                let emitter = self.find_by_keys(mapped.emitter, outer)?;
                let items = self.entries[emitter].items(&mapped.output)?;
                let first = items.first_slot(items.position(key)?)?;
                let slot = first as usize + mapped.rank as usize;
                (self.entries.get(slot)?.op as OpId == op).then_some(slot)
            }
            _ => None,
        }
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
        self.find(step).is_some_and(|at| at < self.entries.len())
    }

    /// `step` with its slot, if it exists.
    pub fn with_slot(&self, step: StepId) -> Option<StepId> {
        let slot = u32::try_from(self.find(&step)?).ok()?;
        Some(StepId { slot, ..step })
    }

    /// The step `op` mapped over item `at` of `items` (the emitter's output
    /// `op` is mapped over): found by position, with no key compared.
    pub fn child(&self, items: &Items, at: usize, op: OpId) -> Option<u32> {
        let rank = self.places.get(op)?.mapped.as_ref()?.rank;
        let slot = items.first_slot(at)?.checked_add(rank)?;
        (self.entries.get(slot as usize)?.op as OpId == op).then_some(slot)
    }

    /// The step of `op` created with `step` for the same item (or both
    /// outside any map), found by `step`'s slot: a chained map's upstream.
    pub fn sibling(&self, step: &StepId, op: OpId) -> Option<u32> {
        let (mine, theirs) = (self.places.get(step.op)?, self.places.get(op)?);
        match (&mine.mapped, &theirs.mapped) {
            (Some(a), Some(b)) if a.emitter == b.emitter && a.output == b.output => {
                let slot = step.slot.checked_sub(a.rank)?.checked_add(b.rank)?;
                let entry = self.entries.get(slot as usize)?;
                (entry.op as OpId == op).then_some(slot)
            }
            (None, None) => (theirs.root != NO_SLOT).then_some(theirs.root),
            _ => None,
        }
    }

    /// Adds a new step (its entry names its op, item and parent); returns
    /// its id with its slot. Each step is created once, by its scope
    /// instance.
    pub fn push(&mut self, op: OpId, keys: KeyPath, entry: StepEntry) -> StepId {
        debug_assert_eq!(entry.op as OpId, op);
        let at = self.entries.len();
        // Past four billion steps the rest cannot be found (a run's
        // `max_emits` stops far below).
        let slot = u32::try_from(at)
            .ok()
            .filter(|&s| s != NO_SLOT)
            .unwrap_or(NO_SLOT);
        if entry.parent == NO_SLOT
            && keys.is_empty()
            && let Some(place) = self.places.get_mut(op)
        {
            place.root = slot;
        }
        self.entries.push(entry);
        StepId { op, keys, slot }
    }

    /// The id of the step at `slot`, its keys read back from the items that
    /// created it.
    pub fn id(&self, slot: u32) -> Option<StepId> {
        let entry = self.at(slot)?;
        let mut keys = KeyPath::new();
        self.keys_into(slot, &mut keys)?;
        Some(StepId {
            op: entry.op as OpId,
            keys,
            slot,
        })
    }

    fn keys_into(&self, slot: u32, keys: &mut KeyPath) -> Option<()> {
        let entry = self.at(slot)?;
        if entry.parent == NO_SLOT {
            return Some(());
        }
        self.keys_into(entry.parent, keys)?;
        let mapped = self.places.get(entry.op as OpId)?.mapped.as_ref()?;
        let items = self.at(entry.parent)?.items(&mapped.output)?;
        keys.push(items.order.get(entry.item as usize)?.0.clone());
        Some(())
    }

    /// Records that the steps mapped over item `at` of `step`'s `output`
    /// start at `first`.
    pub fn set_first_slot(&mut self, step: u32, output: &str, at: usize, first: u32) {
        if let Some(items) = self
            .entries
            .get_mut(step as usize)
            .and_then(|e| e.emitted.as_mut())
            .and_then(|e| e.get_mut(output))
        {
            items.set_first_slot(at, first);
        }
    }

    /// Every step's slot and entry, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &StepEntry)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(at, entry)| (u32::try_from(at).unwrap_or(NO_SLOT), entry))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Scheduler, StepId};
    use crate::exec::values::Value;
    use crate::key::{KeyPath, MappingKey};
    use crate::plan::Plan;

    fn plan() -> (tempfile::TempDir, Plan) {
        crate::exec::tests::plan(
            r#"
[ops.outer]
component = "op.wasm"
dynamic = true
[ops.inner]
component = "op.wasm"
dynamic = true
inputs.v = { map = "outer" }
[ops.check]
component = "op.wasm"
inputs.v = { map = "outer" }
[ops.work]
component = "op.wasm"
inputs.v = { map = "inner" }
[ops.again]
component = "op.wasm"
inputs.v = { map = "work" }
[ops.all]
component = "op.wasm"
inputs.vs = { collect = "again" }
"#,
        )
    }

    fn keys(keys: &[&str]) -> KeyPath {
        keys.iter().map(|k| MappingKey::parse(k).unwrap()).collect()
    }

    /// Steps made two levels deep, two ops per item, are found by their
    /// keys alone (as a remote worker or a resume names them), and every
    /// slot reads back the id it was made with.
    #[test]
    fn a_step_is_found_by_its_keys_through_the_items_that_made_it() {
        let (_dir, plan) = plan();
        let op = |name: &str| plan.op_id(name).unwrap();
        let mut s = Scheduler::new(&plan, 1 << 20);
        let outer = StepId::new(op("outer"), KeyPath::new());
        for k in ["x", "y"] {
            s.on_emit(&outer, 0, MappingKey::parse(k).unwrap(), Value::Nothing);
        }
        for (outer_key, inner_keys) in [("y", ["3", "4"]), ("x", ["1", "2"])] {
            let inner = StepId::new(op("inner"), keys(&[outer_key]));
            for k in inner_keys {
                s.on_emit(&inner, 0, MappingKey::parse(k).unwrap(), Value::Nothing);
            }
        }
        let mut named = Vec::new();
        for (slot, entry) in s.steps.iter() {
            let id = s.steps.id(slot).expect("every slot reads back");
            assert_eq!(id.op, entry.op());
            // Named from outside: no slot, the same entry.
            let outside = StepId::new(id.op, id.keys.clone());
            assert_eq!(s.steps.with_slot(outside).map(|f| f.slot), Some(slot));
            named.push(crate::exec::scheduler::step_label(&plan, &id));
        }
        named.sort();
        assert_eq!(
            named,
            [
                "again[x][1]",
                "again[x][2]",
                "again[y][3]",
                "again[y][4]",
                "all",
                "check[x]",
                "check[y]",
                "inner[x]",
                "inner[y]",
                "outer",
                "work[x][1]",
                "work[x][2]",
                "work[y][3]",
                "work[y][4]",
            ]
        );
        // Keys that were never emitted, or an op at the wrong depth, are absent.
        for (name, k) in [
            ("work", &["x", "9"][..]),
            ("work", &["z", "1"]),
            ("check", &[]),
        ] {
            assert!(
                s.steps.get(&StepId::new(op(name), keys(k))).is_none(),
                "{name} {k:?}"
            );
        }
        // A chained map's upstream, found from the step's slot.
        let again = s
            .steps
            .with_slot(StepId::new(op("again"), keys(&["y", "4"])))
            .unwrap();
        let work = s.steps.sibling(&again, op("work")).unwrap();
        assert_eq!(
            s.steps.id(work).unwrap(),
            StepId::new(op("work"), keys(&["y", "4"]))
        );
        // A member, found by its item's position.
        let inner_y = s
            .steps
            .get(&StepId::new(op("inner"), keys(&["y"])))
            .unwrap();
        let items = inner_y.items("result").unwrap();
        let member = s.steps.child(items, 1, op("again")).unwrap();
        assert_eq!(
            s.steps.id(member).unwrap(),
            StepId::new(op("again"), keys(&["y", "4"]))
        );
        assert_eq!(s.steps.child(items, 2, op("again")), None);
    }
}
