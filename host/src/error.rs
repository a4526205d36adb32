//! `dynhost::Error`: everything that stops a job before or instead of running.
//! Step failures are not here: they are data ([`crate::OpFailure`]).

use std::path::PathBuf;

/// An error that makes a job unrunnable (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job file is unreadable or malformed.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The job's graph is invalid.
    #[error(transparent)]
    Plan(Box<crate::plan::PlanError>),
    /// An op's component cannot be loaded or does not implement the world.
    #[error("`{file}`: op `{op}`: {reason}")]
    Component {
        /// The job file.
        file: PathBuf,
        /// The op.
        op: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The wasm engine could not start.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The run store cannot be used.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The job's graph cannot be drawn.
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
    /// An op's build command failed.
    #[error("`{file}`: op `{op}`: build command `{command}` {reason}")]
    Build {
        /// The job file.
        file: PathBuf,
        /// The op.
        op: String,
        /// The command.
        command: String,
        /// How it failed.
        reason: String,
    },
}

impl From<crate::plan::PlanError> for Error {
    fn from(error: crate::plan::PlanError) -> Self {
        Error::Plan(Box::new(error))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
