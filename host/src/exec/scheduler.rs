//! The scheduling core: which steps exist, which are ready, what they read.
//! Pure bookkeeping with no threads and no wasm, so every rule is unit-tested.
//!
//! Steps come into being when their scope instance does: root steps at start,
//! and the steps mapped over a dynamic output when its emitter emits an item,
//! while the emitter is still running. A step is ready when every plain input
//! has succeeded and every collection it reads is complete. A collection
//! counts what it still waits for (`pending`): the emitter at each level below
//! the collecting op, and each member step; it completes at zero.

mod collection;
mod entry;
mod table;

use entry::NO_ITEM;
pub(crate) use entry::{Emitted, Items, Status, StepEntry};

use super::collect;
use super::values::{Value, Values};
use super::worker::Inputs;
use crate::key::{KeyPath, MappingKey};
use crate::plan::{CollectTarget, OpId, Plan, Source};
use crate::runtime::{CollectedItems, FailureKind, InputData, OpFailure};
use collection::{Collection, CollectionId, Role, Watch, exceeds};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::VecDeque;
use std::sync::Arc;

/// One step: an op at a key path.
///
/// A step the scheduler created also carries its place in the scheduler's
/// table (`slot`), and so does every clone of it: the requests, items and
/// ends that come back for it are found without hashing its keys, by an
/// index into a table kept in creation order (on a million-key map a hash
/// lookup is a cache miss or two, and each step needs several). Identity,
/// order and hashing are the op and keys alone.
#[derive(Debug, Clone)]
pub struct StepId {
    /// The op.
    pub op: OpId,
    /// The step's keys, outermost first.
    pub keys: KeyPath,
    /// Its index in the scheduler's table, [`NO_SLOT`] if not (yet) known.
    slot: u32,
}

/// A [`StepId`] made outside the scheduler: found by its op and keys.
const NO_SLOT: u32 = u32::MAX;

impl StepId {
    /// The step of `op` at `keys`.
    pub fn new(op: OpId, keys: KeyPath) -> Self {
        Self {
            op,
            keys,
            slot: NO_SLOT,
        }
    }
}

impl PartialEq for StepId {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op && self.keys == other.keys
    }
}

impl Eq for StepId {}

impl std::hash::Hash for StepId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state);
        self.keys.hash(state);
    }
}

impl PartialOrd for StepId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StepId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.op, &self.keys).cmp(&(other.op, &other.keys))
    }
}

/// Scheduling state for one run.
pub(crate) struct Scheduler<'p> {
    plan: &'p Plan,
    pub steps: table::Steps,
    waiters: HashMap<StepId, Vec<StepId>>,
    collections: HashMap<CollectionId, Collection>,
    /// Slots of the steps ready to run, in order: 4 bytes a step, not a
    /// step id (a 10,000,000-key emitter queues millions at once).
    ready: VecDeque<u32>,
    /// Steps waiting out a retry backoff, soonest first. They hold no
    /// worker meanwhile (Dagster deadlocks here, dagster#30712).
    backoffs: std::collections::BinaryHeap<std::cmp::Reverse<(std::time::Instant, StepId)>>,
    /// Steps that became terminal without running (skipped), for the caller to report.
    skipped: Vec<(StepId, String)>,
    /// Per op and dynamic output index, the ops mapped over that output.
    children: std::rc::Rc<[Vec<Vec<OpId>>]>,
    /// Per op, the collections its steps count toward. Shared so the hot
    /// paths can walk it while mutating the rest of the scheduler.
    watches: std::rc::Rc<[Vec<Watch>]>,
    /// Failed or skipped steps that a tolerant collect ran without.
    pub tolerated: HashSet<StepId>,
    /// Steps tolerated since the coordinator last looked, to report.
    pub newly_tolerated: Vec<StepId>,
    /// Steps skipped because an optional output produced no items (or
    /// because what they read was skipped so): Dagster's skips, which do
    /// not fail the run.
    pub optional_skipped: HashSet<StepId>,
    /// Mapped ops that got no keys because an optional output of the
    /// emitter at these keys produced no items: (op, emitter keys, reason).
    pub empty_maps: Vec<(OpId, KeyPath, String)>,
    /// Every value steps returned or emitted, in memory or spilled.
    pub values: Values,
    /// Named plain outputs of steps of ops that declare any, by step (kept
    /// apart so that other steps pay nothing for them).
    named: HashMap<StepId, Box<[Value]>>,
}

impl<'p> Scheduler<'p> {
    /// Creates the steps outside any map and queues those that are ready.
    pub fn new(plan: &'p Plan, memory_budget: u64) -> Self {
        let mut children: Vec<Vec<Vec<OpId>>> = plan
            .ops
            .iter()
            .map(|op| vec![Vec::new(); op.dynamic_outputs.len()])
            .collect();
        let mut watches: Vec<Vec<Watch>> = vec![Vec::new(); plan.ops.len()];
        for (id, op) in plan.ops.iter().enumerate() {
            if let Some(last) = op.scope.last()
                && let Some(index) = plan.ops[last.op]
                    .dynamic_outputs
                    .iter()
                    .position(|o| *o == last.output)
            {
                children[last.op][index].push(id);
            }
            for (index, input) in op.inputs.iter().enumerate() {
                let Source::Collect(target, _) = &input.source else {
                    continue;
                };
                let depth = op.scope.len();
                let full = collect::target_scope(plan, target);
                for (level, d) in full.iter().enumerate().skip(depth) {
                    let last = level + 1 == full.len();
                    let adds = !last || matches!(target, CollectTarget::Values(_));
                    let role = Role::Emitter {
                        output: d.output.clone(),
                        adds,
                    };
                    watches[d.op].push(Watch {
                        consumer: id,
                        input: index,
                        depth,
                        role,
                    });
                }
                if let CollectTarget::Values(member) = target {
                    watches[member.op].push(Watch {
                        consumer: id,
                        input: index,
                        depth,
                        role: Role::Member,
                    });
                }
            }
        }
        let mut scheduler = Scheduler {
            plan,
            steps: table::Steps::new(plan, &children),
            waiters: HashMap::default(),
            collections: HashMap::default(),
            ready: VecDeque::new(),
            backoffs: std::collections::BinaryHeap::new(),
            skipped: Vec::new(),
            children: children.into(),
            watches: watches.into(),
            tolerated: HashSet::default(),
            newly_tolerated: Vec::new(),
            optional_skipped: HashSet::default(),
            empty_maps: Vec::new(),
            values: Values::new(memory_budget),
            named: HashMap::default(),
        };
        let roots: Vec<OpId> = (0..plan.ops.len())
            .filter(|&id| plan.ops[id].scope.is_empty())
            .collect();
        scheduler.create_instance(&roots, &[], NO_ITEM, NO_SLOT);
        scheduler
    }

    /// The next step to start: a retry whose backoff is over, else the
    /// next ready step. It stays queued until [`Scheduler::start`].
    pub fn next_ready(&mut self) -> Option<StepId> {
        if let Some(std::cmp::Reverse((due, _))) = self.backoffs.peek()
            && *due <= std::time::Instant::now()
        {
            return self.backoffs.pop().map(|std::cmp::Reverse((_, step))| step);
        }
        while let Some(slot) = self.ready.pop_front() {
            if let Some(step) = self.steps.id(slot) {
                return Some(step);
            }
        }
        // Emptied after a fan-out of millions, the ring would keep its
        // pages (40 MB at 10,000,000 steps) through the collect.
        if self.ready.capacity() > 1 << 16 {
            self.ready = VecDeque::new();
        }
        None
    }

    /// Whether `step` runs now as `attempt`: only then do events about that
    /// attempt count.
    pub fn is_running(&self, step: &StepId, attempt: u32) -> bool {
        matches!(self.entry_status(step), Some(Status::Running(a)) if *a == attempt)
    }

    /// The attempt `step` is on: running, queued or waiting out a backoff
    /// for; 1 for a step that never started.
    pub fn attempt(&self, step: &StepId) -> u32 {
        match self.entry_status(step) {
            Some(Status::Queued(a) | Status::Running(a) | Status::Backoff(a)) => *a,
            _ => 1,
        }
    }

    /// Marks a step taken from [`Scheduler::next_ready`] as handed out;
    /// returns the attempt it runs as, and what [`Scheduler::inputs`] needs
    /// of its entry (one map lookup per step start, not three).
    pub fn start(&mut self, step: &StepId) -> Started {
        let Some(entry) = self.steps.get_mut(step) else {
            return Started {
                attempt: 1,
                item: NO_ITEM,
                parent: NO_SLOT,
            };
        };
        let attempt = match entry.status {
            Status::Queued(a) | Status::Backoff(a) => a,
            _ => 1,
        };
        entry.status = Status::Running(attempt);
        Started {
            attempt,
            item: entry.item,
            parent: entry.parent,
        }
    }

    /// A running step failed and runs again once `due`: it waits, holding
    /// no worker, as the next attempt.
    pub fn retry(&mut self, step: StepId, due: std::time::Instant) {
        if let Some(entry) = self.steps.get_mut(&step)
            && let Status::Running(a) = entry.status
        {
            entry.status = Status::Backoff(a + 1);
            self.backoffs.push(std::cmp::Reverse((due, step)));
        }
    }

    /// When the next retry is due, if any waits.
    pub fn next_due(&self) -> Option<std::time::Instant> {
        self.backoffs.peek().map(|std::cmp::Reverse((due, _))| *due)
    }

    /// Drops every waiting retry (the run is stopping); they never run.
    pub fn drop_retries(&mut self) {
        self.backoffs.clear();
    }

    /// How many steps are ready to run.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Steps skipped since the last call.
    pub fn take_skipped(&mut self) -> Vec<(StepId, String)> {
        std::mem::take(&mut self.skipped)
    }

    /// Records an item emitted by a running step on its dynamic output number
    /// `output` and creates the steps mapped over it.
    pub fn on_emit(&mut self, step: &StepId, output: usize, key: MappingKey, value: Value) {
        if let Some(item) = self.record_item(step, output, key, value) {
            self.map_item(item);
        }
    }

    /// Records an item emitted by a running step on its dynamic output number
    /// `output` (its value kept, the collections below counting it); returns
    /// the item, for [`Scheduler::map_item`] to create the steps mapped
    /// over it, if any are. Kept apart so that a fast emitter's items wait
    /// for their steps as 12 bytes each, not as whole items.
    pub fn record_item(
        &mut self,
        step: &StepId,
        output: usize,
        key: MappingKey,
        value: Value,
    ) -> Option<NewItem> {
        let plan = self.plan;
        let name = plan.ops[step.op].dynamic_outputs.get(output)?;
        let step = self.steps.with_slot(step.clone())?;
        let entry = self.steps.get_mut(&step)?;
        let emitted = entry.emitted.get_or_insert_with(Box::default);
        let at = match emitted.get_mut(name.as_str()) {
            Some(items) => items.push(key, value),
            None => {
                let mut items = Items::default();
                let at = items.push(key, value);
                emitted.insert(name.clone(), items);
                at
            }
        };
        let watches = self.watches.clone();
        for watch in &watches[step.op] {
            if let Role::Emitter { output: o, adds } = &watch.role
                && o == name
                && let Some(c) = self.collections.get_mut(&(
                    watch.consumer,
                    watch.input,
                    KeyPath::from(&step.keys[..watch.depth]),
                ))
            {
                if *adds {
                    c.pending += 1;
                }
                c.items_seen = true;
            }
        }
        if self.children[step.op][output].is_empty() {
            return None;
        }
        // Past four billion items of one output (far beyond any
        // `max_emits`) the rest get no steps.
        Some(NewItem {
            emitter: step.slot,
            output: u32::try_from(output).ok()?,
            at: u32::try_from(at).ok().filter(|&at| at != NO_ITEM)?,
        })
    }

    /// Creates the steps mapped over an item [`Scheduler::record_item`]
    /// recorded.
    pub fn map_item(&mut self, item: NewItem) {
        let Some(emitter) = self.steps.id(item.emitter) else {
            return;
        };
        let output = item.output as usize;
        let name = &self.plan.ops[emitter.op].dynamic_outputs[output];
        let Some(key) = self
            .steps
            .at(item.emitter)
            .and_then(|e| e.items(name))
            .and_then(|items| items.order.get(item.at as usize))
            .map(|(key, _)| key.clone())
        else {
            return;
        };
        let mut keys = emitter.keys;
        keys.push(key);
        let children = self.children.clone();
        let first =
            self.create_instance(&children[emitter.op][output], &keys, item.at, item.emitter);
        self.steps
            .set_first_slot(item.emitter, name, item.at as usize, first);
    }

    /// Records the end of a running step and wakes what waited for it.
    /// `outcome` holds a value kept in [`Scheduler::values`].
    pub fn on_finished(&mut self, step: &StepId, outcome: Result<Value, OpFailure>) {
        let status = match outcome {
            Ok(value) => Status::Succeeded(value),
            Err(failure) => Status::Failed(Box::new(failure)),
        };
        self.finish(step.clone(), status);
    }

    /// Marks every step that never became terminal as skipped. Returns how
    /// many there were; zero unless a scheduling rule is broken.
    pub fn skip_stranded(&mut self) -> usize {
        let stranded: Vec<StepId> = self
            .steps
            .iter()
            .filter(|(_, e)| !e.status.is_terminal())
            .filter_map(|(slot, _)| self.steps.id(slot))
            .collect();
        for step in &stranded {
            self.finish(
                step.clone(),
                Status::Skipped("never became ready (a dynhost bug; please report it)".into()),
            );
        }
        stranded.len()
    }

    /// Creates the steps of `ops` at `keys` (one new scope instance), with
    /// their collections, then checks which are ready. Returns the first
    /// step's slot: the others follow it, in the order of `ops`.
    fn create_instance(
        &mut self,
        ops: &[OpId],
        keys: &[MappingKey],
        item: u32,
        parent: u32,
    ) -> u32 {
        for &op in ops {
            for (index, input) in self.plan.ops[op].inputs.iter().enumerate() {
                if matches!(input.source, Source::Collect(..)) {
                    self.collections
                        .insert((op, index, KeyPath::from(keys)), Collection::new());
                }
            }
        }
        if let [op] = ops {
            // One op (the usual mapped op): nothing in this instance can be
            // its input, so decide before inserting, with one map operation.
            let step = StepId::new(*op, KeyPath::from(keys));
            let blocker = self.blocker(&step);
            let ready = matches!(blocker, Blocker::None);
            let status = if ready {
                Status::Queued(1)
            } else {
                Status::Waiting
            };
            let step = self.steps.push(
                step.op,
                step.keys,
                StepEntry {
                    status,
                    emitted: None,
                    op: op_number(*op),
                    item,
                    parent,
                },
            );
            let first = step.slot;
            if ready {
                self.ready.push_back(step.slot);
            } else {
                self.settle(step, blocker);
            }
            return first;
        }
        let created: Vec<StepId> = ops
            .iter()
            .map(|&op| {
                self.steps.push(
                    op,
                    KeyPath::from(keys),
                    StepEntry {
                        status: Status::Waiting,
                        emitted: None,
                        op: op_number(op),
                        item,
                        parent,
                    },
                )
            })
            .collect();
        let first = created.first().map_or(NO_SLOT, |step| step.slot);
        for step in created {
            self.check(step);
        }
        first
    }

    /// Queues `step` if it is ready, skips it if an input can never arrive,
    /// or registers it to be checked again when its first missing input does.
    fn check(&mut self, step: StepId) {
        match self.entry_status(&step) {
            Some(Status::Waiting) => {}
            _ => return,
        }
        let blocker = self.blocker(&step);
        self.settle(step, blocker);
    }

    /// Acts on what `blocker` says about a waiting step.
    fn settle(&mut self, step: StepId, blocker: Blocker) {
        match blocker {
            Blocker::None => {
                if let Some(step) = self.steps.with_slot(step) {
                    if let Some(entry) = self.steps.get_mut(&step) {
                        entry.status = Status::Queued(1);
                    }
                    self.ready.push_back(step.slot);
                }
            }
            Blocker::Wait(Some(on)) => self.waiters.entry(on).or_default().push(step),
            Blocker::Wait(None) => {}
            Blocker::Never(reason) => self.finish(step, Status::Skipped(reason.into())),
            Blocker::NotNeeded(reason) => {
                self.optional_skipped.insert(step.clone());
                self.finish(step, Status::Skipped(reason.into()));
            }
        }
    }

    fn entry_status(&self, step: &StepId) -> Option<&Status> {
        self.steps.get(step).map(|e| &e.status)
    }

    fn blocker(&self, step: &StepId) -> Blocker {
        let op = &self.plan.ops[step.op];
        for (index, input) in op.inputs.iter().enumerate() {
            match &input.source {
                Source::Item(_) => {}
                Source::Value(up) => {
                    let dep = self.upstream(step, up.op);
                    match self.entry_status(&dep) {
                        Some(Status::Succeeded(_)) => {
                            if let Some(Value::Nothing) = self.plain_value(&dep, up.output) {
                                let output = match up.output {
                                    None => format!("{}.result", self.plan.ops[up.op].name),
                                    Some(_) => up.label(self.plan),
                                };
                                return Blocker::NotNeeded(format!(
                                    "optional output `{output}` produced no value"
                                ));
                            }
                        }
                        Some(Status::Skipped(reason)) if self.optional_skipped.contains(&dep) => {
                            return Blocker::NotNeeded(format!(
                                "input `{}` from `{}` was skipped: {reason}",
                                input.name,
                                self.name(&dep)
                            ));
                        }
                        Some(Status::Failed(_) | Status::Skipped(_)) | None => {
                            return Blocker::Never(format!(
                                "input `{}` from `{}` did not succeed",
                                input.name,
                                self.name(&dep)
                            ));
                        }
                        Some(_) => return Blocker::Wait(Some(dep)),
                    }
                }
                Source::Collect(..) => {
                    let Some(c) = self.collections.get(&(step.op, index, step.keys.clone())) else {
                        return Blocker::Never(format!(
                            "collection for input `{}` is missing (a dynhost bug)",
                            input.name
                        ));
                    };
                    if c.pending > 0 {
                        return Blocker::Wait(None);
                    }
                    // Dagster: a collect of an optional output that produced
                    // nothing is skipped, not run with an empty list.
                    if let Some(reason) = &c.optional_empty
                        && !c.items_seen
                        && c.members == 0
                    {
                        return Blocker::NotNeeded(reason.clone());
                    }
                    if let Some(reason) = &c.incomplete {
                        return Blocker::Never(format!(
                            "input `{}` cannot be collected: {reason}",
                            input.name
                        ));
                    }
                    let Source::Collect(_, tolerance) = &input.source else {
                        unreachable!("matched Source::Collect above")
                    };
                    if let Some(reason) = exceeds(tolerance, c) {
                        return Blocker::Never(format!("input `{}` {reason}", input.name));
                    }
                }
            }
        }
        Blocker::None
    }

    /// Makes `step` terminal and propagates: collections it belongs to, then
    /// steps waiting on it. A worklist keeps long skip cascades off the stack.
    fn finish(&mut self, step: StepId, status: Status) {
        let mut work: Vec<(StepId, Status)> = Vec::new();
        let mut next = Some((step, status));
        while let Some((step, status)) = next.take().or_else(|| work.pop()) {
            let succeeded = matches!(status, Status::Succeeded(_));
            // A step skipped because an optional output produced nothing
            // is not a failure: it is absent, like its keys.
            // (Empty sets and maps are not asked: asking hashes the keys.)
            let not_needed =
                !self.optional_skipped.is_empty() && self.optional_skipped.contains(&step);
            let failed = !succeeded && !not_needed;
            if let Status::Skipped(reason) = &status {
                self.skipped.push((step.clone(), reason.to_string()));
            }
            if let Some(entry) = self.steps.get_mut(&step) {
                entry.status = status;
            }
            // Optional outputs this step ended with no items on (or all of
            // its outputs, if it was itself not needed).
            let op = &self.plan.ops[step.op];
            let may_be_empty =
                not_needed || (succeeded && op.required_outputs.iter().any(|required| !required));
            let empty: Vec<(usize, String)> = if may_be_empty {
                self.empty_optional_outputs(&step, not_needed)
            } else {
                Vec::new()
            };
            for (index, reason) in &empty {
                let children = self.children.clone();
                for &op in &children[step.op][*index] {
                    self.empty_maps
                        .push((op, step.keys.clone(), reason.clone()));
                }
            }
            let mut to_check: Vec<StepId> = if self.waiters.is_empty() {
                Vec::new()
            } else {
                self.waiters.remove(&step).unwrap_or_default()
            };
            let watches = self.watches.clone();
            for watch in &watches[step.op] {
                let key = (
                    watch.consumer,
                    watch.input,
                    KeyPath::from(&step.keys[..watch.depth]),
                );
                let Some(c) = self.collections.get_mut(&key) else {
                    continue;
                };
                c.pending = c.pending.saturating_sub(1);
                if matches!(watch.role, Role::Member) {
                    c.members += 1;
                }
                if failed {
                    match watch.role {
                        Role::Member => c.failed_members += 1,
                        Role::Emitter { .. } => {
                            c.incomplete.get_or_insert_with(|| {
                                format!("`{}` did not succeed", step_label(self.plan, &step))
                            });
                        }
                    }
                }
                if let Role::Emitter { output, .. } = &watch.role
                    && let Some((_, reason)) = empty
                        .iter()
                        .find(|(i, _)| self.plan.ops[step.op].dynamic_outputs[*i] == *output)
                {
                    c.optional_empty.get_or_insert_with(|| reason.clone());
                }
                if c.pending == 0 {
                    to_check.push(StepId::new(
                        watch.consumer,
                        KeyPath::from(&step.keys[..watch.depth]),
                    ));
                }
            }
            for waiting in to_check {
                if !matches!(self.entry_status(&waiting), Some(Status::Waiting)) {
                    continue;
                }
                // Skips go on the worklist rather than recursing.
                match self.blocker(&waiting) {
                    Blocker::Never(reason) => {
                        work.push((waiting, Status::Skipped(reason.into())));
                    }
                    Blocker::NotNeeded(reason) => {
                        self.optional_skipped.insert(waiting.clone());
                        work.push((waiting, Status::Skipped(reason.into())));
                    }
                    blocker => self.settle(waiting, blocker),
                }
            }
        }
    }

    fn name(&self, step: &StepId) -> String {
        step_label(self.plan, step)
    }

    /// The optional dynamic outputs of `step` that ended with no items, with
    /// the reason to give; every dynamic output if `all` (the step itself
    /// was not needed, so it emitted nothing).
    fn empty_optional_outputs(&self, step: &StepId, all: bool) -> Vec<(usize, String)> {
        let op = &self.plan.ops[step.op];
        let entry = self.steps.get(step);
        op.dynamic_outputs
            .iter()
            .enumerate()
            .filter(|(i, name)| {
                (all || !op.required_outputs[*i])
                    && entry
                        .and_then(|e| e.items(name))
                        .is_none_or(|items| items.order.is_empty())
            })
            .map(|(i, name)| {
                let reason = if all {
                    format!("`{}` was skipped", step_label(self.plan, step))
                } else {
                    format!("optional output `{}.{name}` produced no items", op.name)
                };
                (i, reason)
            })
            .collect()
    }

    /// The inputs of a ready step, in the order the plan lists them.
    /// Failed or skipped steps that a tolerant collect ran without are marked
    /// tolerated here, as the collect's input is built. Fails only if a
    /// spilled value cannot be read back.
    pub fn inputs(&mut self, step: &StepId, started: Started) -> Result<Inputs, String> {
        let op = &self.plan.ops[step.op];
        let mut inputs = Inputs::new();
        for input in &op.inputs {
            let data = match &input.source {
                Source::Value(up) => {
                    let dep = self.upstream(step, up.op);
                    InputData::Single(self.bytes(self.plain_value(&dep, up.output))?)
                }
                Source::Item(d) => {
                    // The item's level in this op's scope: the emitter runs at
                    // the keys above it, and the item's key is the key at it.
                    let level = op
                        .scope
                        .iter()
                        .position(|s| s == d)
                        .expect("a map input's output is in the op's scope");
                    let last = level + 1 == op.scope.len();
                    let own = if last { started.item } else { NO_ITEM };
                    // The emitter at the last level created this step and
                    // left its slot; one further out (or one the slot does
                    // not lead to the item) is found by its keys.
                    let key = &step.keys[level];
                    let value = self
                        .steps
                        .at(started.parent)
                        .filter(|_| last)
                        .and_then(|entry| entry.item_of(&d.output, own, key))
                        .or_else(|| {
                            let emitter = StepId::new(d.op, KeyPath::from(&step.keys[..level]));
                            let entry = self.steps.get(&emitter)?;
                            entry.item_of(&d.output, own, key)
                        });
                    InputData::Single(self.bytes(value)?)
                }
                Source::Collect(target, _) => {
                    let data = collect::gather(self, target, step)?;
                    if let (CollectTarget::Values(member), InputData::Collected { failed, .. }) =
                        (target, &data)
                    {
                        for (keys, _) in failed {
                            let mut full = step.keys.clone();
                            full.extend(keys.iter().cloned());
                            let id = StepId::new(member.op, full);
                            if self.tolerated.insert(id.clone()) {
                                self.newly_tolerated.push(id);
                            }
                        }
                    }
                    data
                }
            };
            inputs.push(data);
        }
        Ok(inputs)
    }

    pub(crate) fn plan(&self) -> &Plan {
        self.plan
    }

    /// The step of `op` that `step` reads a plain value from: the one at
    /// the leading keys of `step` that `op`'s scope covers. One created
    /// with `step` (a chained map) is found by slot, any other by its keys.
    fn upstream(&self, step: &StepId, op: OpId) -> StepId {
        let keys = KeyPath::from(&step.keys[..self.plan.ops[op].scope.len()]);
        let mut dep = StepId::new(op, keys);
        if step.slot != NO_SLOT
            && dep.keys.len() == step.keys.len()
            && let Some(slot) = self.steps.sibling(step, op)
        {
            dep.slot = slot;
        }
        dep
    }

    /// The step of `op` mapped over item `at` of `items`, with its slot.
    pub(crate) fn child(&self, items: &Items, at: usize, op: OpId, keys: KeyPath) -> StepId {
        let mut step = StepId::new(op, keys);
        if let Some(slot) = self.steps.child(items, at, op) {
            step.slot = slot;
        }
        step
    }

    /// The result of a step that succeeded.
    pub(crate) fn value(&self, step: &StepId) -> Option<&Value> {
        match self.entry_status(step) {
            Some(Status::Succeeded(v)) => Some(v),
            _ => None,
        }
    }

    /// The result (`output` `None`) or a named plain output of a step that
    /// succeeded; [`Value::Nothing`] for one it did not set.
    pub(crate) fn plain_value(&self, step: &StepId, output: Option<usize>) -> Option<&Value> {
        let result = self.value(step)?;
        match output {
            None => Some(result),
            Some(i) => Some(
                self.named
                    .get(step)
                    .and_then(|values| values.get(i))
                    .unwrap_or(&Value::Nothing),
            ),
        }
    }

    /// Keeps the named plain outputs of `step` (before it is finished).
    pub fn set_named(&mut self, step: &StepId, values: Box<[Value]>) {
        if !values.is_empty() {
            self.named.insert(step.clone(), values);
        }
    }

    /// The bytes of a value (empty for none), read back if it was spilled.
    pub(crate) fn bytes(&self, value: Option<&Value>) -> Result<Arc<[u8]>, String> {
        match value {
            None => Ok(Arc::from(Vec::new())),
            Some(v) => self.values.get(v).map_err(unreadable),
        }
    }

    /// Appends `value` under `keys` to a collect's elements, its bytes
    /// read straight into them ([`Values::append_to`]).
    pub(crate) fn collect_into(
        &self,
        items: &mut CollectedItems,
        keys: &[MappingKey],
        value: &Value,
    ) -> Result<(), String> {
        items
            .push_with(keys.iter().map(MappingKey::as_str), |out| {
                self.values.append_to(value, out)
            })
            .map_err(unreadable)
    }

    pub(crate) fn failure(&self, step: &StepId) -> Option<OpFailure> {
        match self.entry_status(step) {
            Some(Status::Failed(f)) => Some((**f).clone()),
            Some(Status::Skipped(reason)) => {
                Some(OpFailure::new(FailureKind::Skipped, reason.to_string()))
            }
            _ => None,
        }
    }
}

/// An item recorded but not yet mapped: its emitter's slot, the output's
/// number and the item's position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewItem {
    emitter: u32,
    output: u32,
    at: u32,
}

/// A step just handed out: the attempt it runs as, and its item's position
/// (see [`StepEntry::item`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub attempt: u32,
    item: u32,
    /// The slot of the step that emitted its item (see [`StepEntry::parent`]).
    parent: u32,
}

enum Blocker {
    None,
    /// Not yet; check again when this step finishes (or, for collections,
    /// when the collection completes).
    Wait(Option<StepId>),
    /// Can never run.
    Never(String),
    /// Need not run: an optional output it depends on produced no items.
    /// Skipped, but not a failure of the run.
    NotNeeded(String),
}

/// An op's number as an entry keeps it.
fn op_number(op: OpId) -> u32 {
    u32::try_from(op).expect("a plan has fewer than four billion ops")
}

fn unreadable(e: std::io::Error) -> String {
    format!("cannot read a spilled input value back from disk: {e}")
}

/// `op[k1][k2]` for a step.
pub(crate) fn step_label(plan: &Plan, step: &StepId) -> String {
    crate::key::step_name(&plan.ops[step.op].name, &step.keys)
}
