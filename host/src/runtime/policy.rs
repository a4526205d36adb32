//! What a step may reach and use: plain data built by `plan`, enforced by
//! `runtime::sandbox`. Nothing here touches wasmtime.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The capabilities and limits of one op's steps. Grants nothing by default:
/// no file system, environment or network beyond what is listed here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxPolicy {
    /// Host directories visible to the op.
    pub mounts: Vec<Mount>,
    /// Environment variables, exactly as declared.
    pub env: Vec<(String, String)>,
    /// Resource limits per step.
    pub limits: Limits,
    /// The dynamic outputs the op may emit to.
    pub dynamic_outputs: Vec<String>,
    /// What each dynamic output's items are (same order); empty when none is
    /// declared, so undeclared ops check nothing. Shared: every step of the
    /// op holds it.
    pub output_types: std::sync::Arc<[super::types::ValueType]>,
    /// Named plain outputs the op may set (`set-output`), by name.
    pub plain_outputs: Vec<String>,
    /// Per named plain output (same order): whether the op must set it.
    pub plain_required: Vec<bool>,
    /// Per named plain output (same order): what its value is.
    pub plain_output_types: Vec<super::types::ValueType>,
    /// What the op's plain result is.
    pub result_type: super::types::ValueType,
    /// Whether the op must return a value: `false` (`returns = { required =
    /// false }`) lets it return "no value", which skips what reads it.
    pub result_required: bool,
    /// Fixed clocks and randomness seeded from the step, for reproducible reruns.
    pub deterministic: bool,
    /// Where the op may send HTTP(S) requests (`allowed_outbound_hosts`);
    /// empty: nowhere.
    /// Shared: every step of the op holds it.
    #[serde(default)]
    pub outbound: std::sync::Arc<[super::outbound::OutboundHost]>,
    /// Environment variables whose values the host reads from its own
    /// environment when the step starts: (name the op sees, host variable).
    /// Only the names are here, so a plan stored with a run or sent to a
    /// worker never carries a secret; values are redacted from what the step
    /// prints.
    #[serde(default)]
    pub secrets: Vec<(String, String)>,
}

/// A host directory made visible to the op.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute, canonical host directory.
    pub host: PathBuf,
    /// Where the op sees it.
    pub guest: String,
    /// Whether the op may create and modify files in it.
    pub writable: bool,
    /// At the same path on every worker machine (`run --nats`).
    #[serde(default)]
    pub shared: bool,
}

/// Resource limits for one step. Each guards against one way an untrusted op
/// could hurt the host or its siblings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory and table bytes per instance: an op cannot exhaust host RAM.
    pub memory_bytes: u64,
    /// Wall time per step: a spinning op cannot hold its slot forever.
    pub timeout: Duration,
    /// Items per step: a flood of emits cannot grow the fan-out without end.
    pub max_emits: u64,
    /// Bytes per emitted value: one value cannot take the host's memory.
    pub max_value_bytes: u64,
    /// Bytes emitted plus returned per step.
    pub max_output_bytes: u64,
    /// Bytes kept of each of stdout, stderr and log; the rest is dropped with a marker.
    pub max_log_bytes: u64,
    /// Instructions per step (wasmtime fuel), for limits that do not depend on
    /// machine speed; `None` leaves the step unmetered.
    pub fuel: Option<u64>,
    /// The wasm stack, job-wide: wasmtime sets it per engine, not per store.
    pub stack_bytes: u64,
    /// HTTP requests per step: an op looping on a service cannot flood it.
    /// `None`: no cap beyond the time limit.
    #[serde(default)]
    pub max_http_requests: Option<u64>,
}
