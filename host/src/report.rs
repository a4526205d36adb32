//! The result of a run, as data: what the CLI prints and `--json` serializes.

use crate::key::MappingKey;
use crate::runtime::OpFailure;
use serde::Serialize;
use std::time::Duration;

/// Everything a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run's id.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Per op, in plan order.
    pub ops: Vec<OpSummary>,
    /// Values of the last ops (those no other op reads), sorted by step.
    pub outputs: Vec<FinalOutput>,
    /// Steps a resumed run had stored that this run no longer has: their
    /// emitter re-ran and did not emit their keys again.
    pub vanished: Vec<String>,
    /// Mapped ops that got no keys below an emitter because an optional
    /// output of it produced no items: `op (under emit[k]): reason`.
    pub empty_maps: Vec<String>,
    /// Bytes of values that went past the memory budget to the spill file.
    pub spilled_bytes: u64,
    /// The run was stopped (Ctrl-C, SIGTERM) before every step ran.
    pub interrupted: bool,
}

impl RunReport {
    /// True when no step failed or was skipped, except those a tolerant
    /// collect ran without, and the run was not interrupted.
    pub fn is_success(&self) -> bool {
        !self.interrupted && self.ops.iter().all(|op| op.failed == 0 && op.skipped == 0)
    }
}

/// One op's steps in a run.
#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    /// The op.
    pub op: String,
    /// Steps created (one per key).
    pub steps: u64,
    /// Steps that succeeded.
    pub succeeded: u64,
    /// Steps that failed.
    pub failed: u64,
    /// Steps skipped because an input failed.
    pub skipped: u64,
    /// Steps skipped because an optional output produced no items (or what
    /// they read was skipped so): Dagster's skips, which do not fail the run.
    pub skipped_optional: u64,
    /// Failed or skipped steps that a tolerant collect ran without; they do
    /// not fail the run.
    pub tolerated: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Steps reused from a stored run instead of running (resume).
    pub reused: u64,
    /// Steps that had a stored success with the same inputs but ran again
    /// because the op's component or config changed since.
    pub changed: u64,
    /// Sum of step wall times.
    pub busy: Duration,
    /// Largest linear memory of any step.
    pub peak_memory_bytes: u64,
    /// Items emitted by all steps.
    pub emitted_items: u64,
    /// Bytes emitted by all steps.
    pub emitted_bytes: u64,
    /// Instructions used by all steps, when the op has a `fuel` limit.
    pub fuel_used: Option<u64>,
    /// Outgoing HTTP requests made by all steps.
    pub http_requests: u64,
    /// Request body bytes those requests sent.
    pub http_sent_bytes: u64,
    /// Response body bytes they received.
    pub http_received_bytes: u64,
    /// Time steps spent ready but waiting for the op's `max_concurrent` or
    /// a resource's slot or rate token, summed over steps.
    pub waited: Duration,
    /// Failed steps and why, sorted by step.
    pub failures: Vec<StepFailure>,
    /// Skipped steps and why, sorted by step.
    pub skips: Vec<(String, String)>,
}

impl OpSummary {
    pub(crate) fn new(op: &str) -> Self {
        Self {
            op: op.to_owned(),
            steps: 0,
            succeeded: 0,
            failed: 0,
            skipped: 0,
            skipped_optional: 0,
            tolerated: 0,
            retries: 0,
            reused: 0,
            changed: 0,
            busy: Duration::ZERO,
            peak_memory_bytes: 0,
            emitted_items: 0,
            emitted_bytes: 0,
            fuel_used: None,
            http_requests: 0,
            http_sent_bytes: 0,
            http_received_bytes: 0,
            waited: Duration::ZERO,
            failures: Vec::new(),
            skips: Vec::new(),
        }
    }
}

/// A failed step.
#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    /// `op[key]`.
    pub step: String,
    /// Why.
    pub failure: OpFailure,
    /// Whether a tolerant collect ran without it.
    pub tolerated: bool,
}

/// The value of one step of a last op.
#[derive(Debug, Clone, Serialize)]
pub struct FinalOutput {
    /// The op.
    pub op: String,
    /// `op[key]`.
    pub step: String,
    /// The step's keys.
    pub keys: Vec<MappingKey>,
    /// The value.
    #[serde(skip)]
    pub value: Vec<u8>,
}

/// The peak resident set size of this process (`VmHWM`), where the OS tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
