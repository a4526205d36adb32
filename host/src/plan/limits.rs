//! Default resource limits and how `[defaults]` and per-op `limits` combine.
//!
//! Every op runs untrusted code, so every limit has a default; a job raises
//! what it needs. The numbers are a trade between a useful op and a host that
//! survives `--max-concurrent` hostile ops at once.

use crate::runtime::Limits;
use crate::spec::LimitsSpec;
use std::time::Duration;

/// Linear memory per instance. 256 MiB fits a Python interpreter with room for
/// data; with one instance per core, a hostile op cannot take the host's memory.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;
/// Wall time per step: long enough for real per-file work, short enough that
/// a spinning op is noticed within a minute.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Items per step: a large fan-out, but a flood of a billion tiny emits stops.
pub const DEFAULT_MAX_EMITS: u64 = 100_000;
/// Bytes per emitted value: emitted values are held until their mapped steps
/// run; larger data belongs in a mount, with its path emitted.
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 16 << 20;
/// Bytes a step may emit and return in total.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 256 << 20;
/// Captured stdout, stderr and log, each: enough for diagnostics; the rest is
/// dropped with a marker so a chatty op cannot fill memory.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 1 << 20;
/// The wasm stack per step: deep enough for real recursive code (parsers,
/// interpreters); an op that recurses without end traps with a stack overflow.
pub const DEFAULT_STACK_BYTES: u64 = 1 << 20;
/// The smallest stack a job may ask for.
pub const MIN_STACK_BYTES: u64 = 64 << 10;
/// The largest stack a job may ask for; each thread that runs steps gets this
/// much plus room for host frames (`runtime::thread_stack_bytes`).
pub const MAX_STACK_BYTES: u64 = 64 << 20;
/// The largest memory limit a job may set: the pooling allocator reserves
/// address space for it in every slot.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// Resolves an op's limits: the op's own setting, else the job's `[defaults]`,
/// else the built-in default.
///
/// # Errors
/// A message naming the invalid limit.
pub fn resolve(op: &LimitsSpec, job: &LimitsSpec) -> Result<Limits, String> {
    let memory_mib = op.memory_mib.or(job.memory_mib);
    let memory_bytes = memory_mib.map_or(DEFAULT_MEMORY_BYTES, |mib| mib.saturating_mul(1 << 20));
    if memory_bytes == 0 || memory_bytes > MAX_MEMORY_BYTES {
        return Err(format!(
            "limit `memory_mib` must be between 1 and {}",
            MAX_MEMORY_BYTES >> 20
        ));
    }
    let timeout = match op.timeout_secs.or(job.timeout_secs) {
        None => DEFAULT_TIMEOUT,
        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
        Some(s) => {
            return Err(format!(
                "limit `timeout_secs` must be more than 0 and at most 86400 (a day), got {s}; use e.g. `timeout_secs = 1`, or `0.5` for half a second"
            ));
        }
    };
    if op.max_nesting.is_some() || op.stack_kib.is_some() {
        return Err("`max_nesting` and `stack_kib` are job-wide: set them in `[defaults]`".into());
    }
    let stack_bytes = job
        .stack_kib
        .map_or(DEFAULT_STACK_BYTES, |kib| kib.saturating_mul(1024));
    if !(MIN_STACK_BYTES..=MAX_STACK_BYTES).contains(&stack_bytes) {
        return Err(format!(
            "`[defaults] stack_kib` must be between {} and {} (KiB)",
            MIN_STACK_BYTES >> 10,
            MAX_STACK_BYTES >> 10
        ));
    }
    if let Some(0) = op.fuel.or(job.fuel) {
        return Err("limit `fuel` must be above 0".into());
    }
    Ok(Limits {
        memory_bytes,
        timeout,
        max_emits: op.max_emits.or(job.max_emits).unwrap_or(DEFAULT_MAX_EMITS),
        max_value_bytes: op
            .max_value_bytes
            .or(job.max_value_bytes)
            .unwrap_or(DEFAULT_MAX_VALUE_BYTES),
        max_output_bytes: op
            .max_output_bytes
            .or(job.max_output_bytes)
            .unwrap_or(DEFAULT_MAX_OUTPUT_BYTES),
        max_log_bytes: op
            .max_log_bytes
            .or(job.max_log_bytes)
            .unwrap_or(DEFAULT_MAX_LOG_BYTES),
        fuel: op.fuel.or(job.fuel),
        stack_bytes,
        max_http_requests: match op.max_http_requests.or(job.max_http_requests) {
            Some(0) => {
                return Err(
                    "limit `max_http_requests` must be above 0; to forbid HTTP, leave out `allowed_outbound_hosts`".into(),
                );
            }
            n => n,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_beats_job_beats_default() {
        let job = LimitsSpec {
            memory_mib: Some(64),
            max_emits: Some(5),
            ..Default::default()
        };
        let op = LimitsSpec {
            memory_mib: Some(32),
            ..Default::default()
        };
        let limits = resolve(&op, &job).unwrap();
        assert_eq!(limits.memory_bytes, 32 << 20);
        assert_eq!(limits.max_emits, 5);
        assert_eq!(limits.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn rejects_nonsense() {
        let bad = LimitsSpec {
            timeout_secs: Some(-1.0),
            ..Default::default()
        };
        assert!(
            resolve(&bad, &LimitsSpec::default())
                .unwrap_err()
                .contains("timeout_secs")
        );
        let bad = LimitsSpec {
            memory_mib: Some(0),
            ..Default::default()
        };
        assert!(
            resolve(&bad, &LimitsSpec::default())
                .unwrap_err()
                .contains("memory_mib")
        );
    }
}
