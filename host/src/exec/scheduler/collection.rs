//! How collections know they are complete: every collect input of every step
//! counts what it still waits for (`pending`), and the watch table says which
//! steps' events move which counts.

use crate::key::KeyPath;
use crate::plan::OpId;
use crate::spec::Tolerance;

/// Identifies one collect input of one step: (consumer op, input index, consumer keys).
pub(super) type CollectionId = (OpId, usize, KeyPath);

#[derive(Debug)]
pub(super) struct Collection {
    pub pending: u64,
    /// Set when an emitter below failed or was skipped: the set of keys is unknown.
    pub incomplete: Option<String>,
    pub failed_members: u64,
    /// Members that became terminal, failed or not.
    pub members: u64,
    /// An optional dynamic output below ended with no items (the reason).
    pub optional_empty: Option<String>,
    /// Some emitter below emitted at least one item.
    pub items_seen: bool,
}

/// Why a complete collection may not run: more failed members than its
/// tolerance allows (none by default).
pub(super) fn exceeds(tolerance: &Tolerance, c: &Collection) -> Option<String> {
    let failed = c.failed_members;
    if failed == 0 {
        return None;
    }
    if tolerance.max_failures.is_none() && tolerance.min_success.is_none() {
        return Some(format!(
            "collects {failed} failed or skipped step(s); set `max_failures` or `min_success` on the input to run without them"
        ));
    }
    if let Some(max) = tolerance.max_failures
        && failed > max
    {
        return Some(format!(
            "collects {failed} failed or skipped step(s), more than its `max_failures` of {max}"
        ));
    }
    if let Some(min) = tolerance.min_success {
        let ratio = (c.members - failed) as f64 / c.members as f64;
        if ratio < min {
            return Some(format!(
                "collects only {} successes of {} steps ({ratio:.3}), below its `min_success` of {min}",
                c.members - failed,
                c.members
            ));
        }
    }
    None
}

/// How a step of one op affects a collection of another.
#[derive(Debug, Clone)]
pub(super) struct Watch {
    pub consumer: OpId,
    pub input: usize,
    /// Length of the consumer's scope: the collection key is the step's key prefix.
    pub depth: usize,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub(super) enum Role {
    /// Emits the items of `output` at some level of the collected fan-out;
    /// each item adds one pending unit unless items are the members themselves.
    Emitter { output: String, adds: bool },
    /// A member whose value is collected.
    Member,
}

impl Collection {
    /// A collection that waits for its first emitter.
    pub fn new() -> Self {
        Self {
            pending: 1,
            incomplete: None,
            failed_members: 0,
            members: 0,
            optional_empty: None,
            items_seen: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(failed: u64, members: u64) -> Collection {
        Collection {
            pending: 0,
            incomplete: None,
            failed_members: failed,
            members,
            optional_empty: None,
            items_seen: true,
        }
    }

    #[test]
    fn no_tolerance_means_no_failures() {
        assert!(exceeds(&Tolerance::default(), &done(0, 4)).is_none());
        let reason = exceeds(&Tolerance::default(), &done(1, 4)).unwrap();
        assert!(
            reason.contains("set `max_failures` or `min_success`"),
            "{reason}"
        );
    }

    #[test]
    fn max_failures_and_min_success_bound_the_failures() {
        let max = Tolerance {
            max_failures: Some(1),
            min_success: None,
        };
        assert!(exceeds(&max, &done(1, 4)).is_none());
        assert!(
            exceeds(&max, &done(2, 4))
                .unwrap()
                .contains("`max_failures` of 1")
        );
        let min = Tolerance {
            max_failures: None,
            min_success: Some(0.75),
        };
        assert!(exceeds(&min, &done(1, 4)).is_none());
        assert!(
            exceeds(&min, &done(2, 4))
                .unwrap()
                .contains("`min_success` of 0.75")
        );
    }
}
