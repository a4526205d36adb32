//! Errors found while resolving a job into a plan: everything that needs the
//! whole graph or the file system. Every message names the job file and op.

use std::path::PathBuf;

/// A job that cannot run as written. Reported before any op runs (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The job has no ops.
    #[error("`{file}`: the job has no ops; add an `[ops.NAME]` table")]
    NoOps {
        /// The job file.
        file: PathBuf,
    },
    /// An op, output or input name breaks the naming rule.
    #[error("`{file}`: op `{op}`: {reason}")]
    InvalidName {
        /// The job file.
        file: PathBuf,
        /// The op.
        op: String,
        /// Which name and the rule.
        reason: String,
    },
    /// An input names an op that does not exist.
    #[error("`{file}`: op `{op}` input `{input}` reads unknown op `{reference}` (known: {known})")]
    UnknownOp {
        /// The job file.
        file: PathBuf,
        /// The reading op.
        op: String,
        /// The input.
        input: String,
        /// The unknown name.
        reference: String,
        /// The ops that exist.
        known: String,
    },
    /// An input names a dynamic output the op does not declare.
    #[error(
        "`{file}`: op `{op}` input `{input}` reads unknown output `{reference}` (dynamic outputs there: {known})"
    )]
    UnknownOutput {
        /// The job file.
        file: PathBuf,
        /// The reading op.
        op: String,
        /// The input.
        input: String,
        /// The reference as written, `op.output`.
        reference: String,
        /// The declared dynamic outputs.
        known: String,
    },
    /// The inputs form a cycle.
    #[error("`{file}`: ops form a cycle: {cycle}; an op cannot depend on its own output")]
    Cycle {
        /// The job file.
        file: PathBuf,
        /// The ops involved, as `a -> b -> a`.
        cycle: String,
    },
    /// A reference to a mapped op or dynamic output that cannot be used the way it is used.
    #[error("`{file}`: op `{op}` input `{input}`: {reason}")]
    BadInput {
        /// The job file.
        file: PathBuf,
        /// The reading op.
        op: String,
        /// The input.
        input: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// A component file is missing.
    #[error(
        "`{file}`: op `{op}`: component `{path}` not found (paths are relative to the job file); {hint}"
    )]
    MissingComponent {
        /// The job file.
        file: PathBuf,
        /// The op.
        op: String,
        /// The resolved component path.
        path: PathBuf,
        /// What to do.
        hint: String,
    },
    /// A mount or a limit is invalid.
    #[error("`{file}`: op `{op}`: {reason}")]
    BadSetting {
        /// The job file.
        file: PathBuf,
        /// The op.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// A `[resources.NAME]` table is invalid.
    #[error("`{file}`: `[resources.{resource}]`: {reason}")]
    BadResource {
        /// The job file.
        file: PathBuf,
        /// The resource.
        resource: String,
        /// What is wrong and what to write.
        reason: String,
    },
    /// A job-wide setting in `[defaults]` is invalid.
    #[error("`{file}`: {reason}")]
    BadDefault {
        /// The job file.
        file: PathBuf,
        /// What is wrong and the allowed range.
        reason: String,
    },
}
