//! Why a step failed, as data. Op failures are never `Err` in dynhost: a failed
//! step is recorded and reported, and its siblings keep running.
//!
//! Kinds are classified by downcasting wasmtime errors (a `Trap` code, our own
//! [`Tripped`] marker), never by matching message text.

use super::policy::Limits;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The type of a step failure. Shown in summaries and carried by `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The op returned an error.
    OpError,
    /// The op trapped (panic, unreachable, stack overflow, ...).
    Trap,
    /// The step ran past its `timeout_secs`.
    Timeout,
    /// The instance asked for more memory than `memory_mib`.
    MemoryLimit,
    /// The step used up its instruction budget (`fuel`).
    FuelExhausted,
    /// The step emitted or returned more than its output limits allow.
    OutputLimit,
    /// The op emitted an invalid or duplicate mapping key, or to an undeclared output.
    InvalidKey,
    /// The component could not be instantiated.
    BadComponent,
    /// dynhost itself failed while running the step (a bug; please report it).
    Host,
    /// The step never ran because an input failed (only in collected `failed` lists).
    Skipped,
    /// The run was interrupted (Ctrl-C, SIGTERM) while the step ran; `resume`
    /// runs it again.
    Interrupted,
    /// A value did not match its output's declared type or schema.
    TypeCheck,
}

impl FailureKind {
    /// The kebab-case name used in reports and `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::OpError => "op-error",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory-limit",
            FailureKind::FuelExhausted => "fuel-exhausted",
            FailureKind::OutputLimit => "output-limit",
            FailureKind::InvalidKey => "invalid-key",
            FailureKind::BadComponent => "bad-component",
            FailureKind::Host => "host",
            FailureKind::Skipped => "skipped",
            FailureKind::Interrupted => "interrupted",
            FailureKind::TypeCheck => "type-check",
        }
    }

    /// Every kind, for parsing `retry_on`.
    pub const ALL: [FailureKind; 12] = [
        FailureKind::OpError,
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::MemoryLimit,
        FailureKind::FuelExhausted,
        FailureKind::OutputLimit,
        FailureKind::InvalidKey,
        FailureKind::BadComponent,
        FailureKind::Host,
        FailureKind::Skipped,
        FailureKind::Interrupted,
        FailureKind::TypeCheck,
    ];
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed step: its kind and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpFailure {
    /// The type of failure.
    pub kind: FailureKind,
    /// What happened, e.g. the op's error message or the limit that tripped.
    pub message: String,
}

impl OpFailure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for OpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Raised inside a host call or the resource limiter to stop the guest at
/// once; the trap it causes is classified by downcasting to this type.
#[derive(Debug)]
pub(crate) struct Tripped(pub OpFailure);

impl fmt::Display for Tripped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Tripped {}

/// Classifies an error returned by instantiating or calling the op.
pub(crate) fn classify(error: &wasmtime::Error, limits: &Limits) -> OpFailure {
    let fuel = limits.fuel;
    if let Some(Tripped(failure)) = error.downcast_ref::<Tripped>() {
        return failure.clone();
    }
    if error.downcast_ref::<InterruptedError>().is_some() {
        return interrupted();
    }
    if error
        .chain()
        .any(|e| e.to_string().contains(HOSTCALL_FUEL_EXHAUSTED))
    {
        // The budget is sized from these limits (`runtime::hostcall_budget`),
        // so only a value over them exhausts it.
        return OpFailure::new(
            FailureKind::OutputLimit,
            format!(
                "the op passed the host a value over both the `max_value_bytes` limit of {} bytes and the `max_output_bytes` limit of {} bytes; raise `limits.max_output_bytes` (and `limits.max_value_bytes` for an emitted value) on the op if it needs to",
                limits.max_value_bytes, limits.max_output_bytes
            ),
        );
    }
    let backtrace = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| {
            let frames = bt.to_string();
            let frames = frames
                .strip_prefix("error while executing at wasm backtrace:\n")
                .unwrap_or(&frames)
                .to_owned();
            format!("\nwasm backtrace:\n{frames}")
        })
        .unwrap_or_default();
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => timeout(limits),
        Some(wasmtime::Trap::OutOfFuel) => OpFailure::new(
            FailureKind::FuelExhausted,
            format!(
                "step used up its `fuel` budget of {} instructions; raise `limits.fuel` on the op if it needs more",
                fuel.unwrap_or_default()
            ),
        ),
        Some(wasmtime::Trap::StackOverflow) => OpFailure::new(
            FailureKind::Trap,
            format!(
                "wasm stack overflow: the step used its whole wasm stack of {} KiB (`stack_kib`); raise `[defaults] stack_kib` in the job file (at most 65536) if the recursion is meant to be this deep{backtrace}",
                limits.stack_bytes >> 10,
            ),
        ),
        Some(trap) => OpFailure::new(FailureKind::Trap, format!("{trap}{backtrace}")),
        None => {
            let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
            OpFailure::new(
                FailureKind::Trap,
                format!("{}{backtrace}", chain.join(": ")),
            )
        }
    }
}

/// Classifies a failed instantiation: a limit our limiter enforces (memory at
/// start-up), else the component itself cannot be instantiated.
/// What wasmtime says when a guest copies more than the hostcall budget to
/// the host in one call (its error type is private).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// The run was interrupted while the step ran.
pub(crate) fn interrupted() -> OpFailure {
    OpFailure::new(
        FailureKind::Interrupted,
        "the run was interrupted while this step ran; `dynhost resume` runs it again".to_owned(),
    )
}

/// The error an epoch callback raises to stop a step when the run is
/// interrupted.
#[derive(Debug)]
pub(crate) struct InterruptedError;

impl fmt::Display for InterruptedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the run was interrupted")
    }
}

impl std::error::Error for InterruptedError {}

/// The step ran (or waited) past its `timeout_secs`.
pub(crate) fn timeout(limits: &Limits) -> OpFailure {
    let timeout_secs = limits.timeout.as_secs_f64();
    OpFailure::new(
        FailureKind::Timeout,
        format!(
            "step ran longer than the `timeout_secs` limit of {timeout_secs} s; raise `limits.timeout_secs` on the op if it needs longer"
        ),
    )
}

pub(crate) fn classify_instantiate(error: &wasmtime::Error, limits: &Limits) -> OpFailure {
    if error.downcast_ref::<Tripped>().is_some() || error.downcast_ref::<wasmtime::Trap>().is_some()
    {
        return classify(error, limits);
    }
    let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
    OpFailure::new(
        FailureKind::BadComponent,
        format!("cannot instantiate the component: {}", chain.join(": ")),
    )
}

/// For a trap, adds the last line the op wrote to stderr: a guest's panic
/// message is there, and the trap itself only says `unreachable`.
pub(crate) fn with_stderr_hint(mut failure: OpFailure, stderr: &str) -> OpFailure {
    if failure.kind != FailureKind::Trap {
        return failure;
    }
    let Some(last) = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("note: run with"))
    else {
        return failure;
    };
    let last: String = last.chars().take(300).collect();
    let (first, rest) = failure
        .message
        .split_once('\n')
        .unwrap_or((&failure.message, ""));
    failure.message = format!("{first} (op stderr: {last})\n{rest}")
        .trim_end()
        .to_owned();
    failure
}
