//! Whether a step runs or a stored success stands in for it: on resume (the
//! run's own successes) and for `cache = true` ops (any run's), a success is
//! reused only when the component, the config and the inputs are all the
//! same (its memo key). Decides and counts; replaying a reused step into the
//! scheduler is the coordinator's.

use super::record::{self, MemoPrefix, Prior};
use super::scheduler::StepId;
use crate::plan::Plan;
use crate::store::{Digest, RunStore};
use rustc_hash::FxHashMap;

/// What to do with a step about to run.
pub(crate) enum Verdict {
    /// Run it.
    Run,
    /// Reuse this stored success instead; write it to this run's store too
    /// if `record` (a success from another run, or `--only`'s new run).
    Reuse {
        /// The stored success.
        prior: Prior,
        /// Whether this run records it anew.
        record: bool,
    },
}

/// Stored successes and the keys they must match.
pub(crate) struct Reuse<'p> {
    plan: &'p Plan,
    /// This run's candidates, by step (resume, `--only`).
    prior: FxHashMap<StepId, Prior>,
    /// Whether reused steps are recorded again (a new run built from an old one).
    record_reused: bool,
    /// The store to search for `cache = true` ops.
    lookup: Option<Box<dyn RunStore>>,
    /// Per op: its memo key up to the inputs (component and config).
    memo_prefixes: Vec<MemoPrefix>,
    /// Per op: steps reused.
    pub reused: Vec<u64>,
    /// Per op: steps with a stored success of the same inputs that ran again
    /// because the op's component or config changed.
    pub changed: Vec<u64>,
}

impl<'p> Reuse<'p> {
    /// `component_hashes[i]` is the hash of `plan.ops[i]`'s component.
    pub fn new(
        plan: &'p Plan,
        component_hashes: &[&str],
        prior: FxHashMap<StepId, Prior>,
        record_reused: bool,
        lookup: Option<Box<dyn RunStore>>,
    ) -> Self {
        Self {
            plan,
            prior,
            record_reused,
            lookup,
            memo_prefixes: plan
                .ops
                .iter()
                .zip(component_hashes)
                .map(|(op, hash)| MemoPrefix::new(hash, &op.config_json))
                .collect(),
            reused: vec![0; plan.ops.len()],
            changed: vec![0; plan.ops.len()],
        }
    }

    /// Stored successes not (yet) reused or discarded: at the end of a run,
    /// steps the job no longer has.
    pub fn unused(&self) -> impl Iterator<Item = &StepId> {
        self.prior.keys()
    }

    /// Whether any step could be reused (so input hashes are worth computing).
    pub fn has_candidates(&self) -> bool {
        !self.prior.is_empty()
    }

    /// The memo key of a step of op `op` whose inputs hash to `input_hash`:
    /// component, config and inputs.
    pub fn memo_key(&self, op: usize, input_hash: &Digest) -> Digest {
        self.memo_prefixes[op].key(input_hash)
    }

    /// Decides for `step`, whose inputs hash to `input_hash` (memo key `key`).
    pub fn decide(&mut self, step: &StepId, input_hash: &Digest, key: &Digest) -> Verdict {
        match self.prior.get(step) {
            Some(prior) if prior.memo_key.as_ref() == Some(key) => {
                let prior = self.prior.remove(step).expect("just matched");
                return self.reused(step, prior, self.record_reused);
            }
            Some(prior) if prior.input_hash.as_ref() == Some(input_hash) => {
                self.changed[step.op] += 1;
                self.prior.remove(step);
            }
            _ => {}
        }
        if self.plan.ops[step.op].cache
            && let Some(prior) = self.memoized(key)
        {
            return self.reused(step, prior, true);
        }
        Verdict::Run
    }

    fn reused(&mut self, step: &StepId, prior: Prior, record: bool) -> Verdict {
        self.reused[step.op] += 1;
        Verdict::Reuse { prior, record }
    }

    /// A success of any run with memo key `key` (for `cache = true` ops).
    fn memoized(&self, key: &Digest) -> Option<Prior> {
        let found = self
            .lookup
            .as_ref()
            .and_then(|store| match store.memoized(key) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!("memoization lookup failed: {e}");
                    None
                }
            })?;
        record::prior_map(self.plan, vec![found])
            .into_values()
            .next()
    }
}
