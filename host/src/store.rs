//! The run store: every run, step, emitted item and output, so a failed or
//! killed run can be resumed per key, with nothing lost and nothing run twice.
//!
//! `store` knows nothing about wasmtime or plans: it keeps bytes and outcomes
//! keyed by (run, op, keys). [`RunStore`] is the seam for another backend; the
//! default is [`SqliteStore`], an embedded SQLite file (WAL) in `.dynhost/`.

pub(crate) mod sqlite;

pub(crate) use sqlite::INLINE_MAX;
pub use sqlite::SqliteStore;
pub use sqlite::browse::{StepCount, StepFilter, StepPage};
pub use sqlite::read::StepValue;

use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// A store that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not a dynhost store (or is damaged).
    #[error(
        "run store `{path}` is damaged or not a dynhost store ({reason}); move it aside to start a new one, or point `DYNHOST_HOME` elsewhere"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's words.
        reason: String,
    },
    /// The file is an SQLite database of another program; it was not changed.
    #[error(
        "`{path}` is an SQLite database of another program (tables: {}), not a dynhost run store; dynhost left it unchanged. Point `--store` or `DYNHOST_HOME` at another directory",
        tables.join(", ")
    )]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// Its tables.
        tables: Vec<String>,
    },
    /// The store was written by a newer dynhost.
    #[error(
        "run store `{path}` was written by a newer dynhost (schema version {version}; this dynhost reads up to {supported}); upgrade dynhost to use it"
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        version: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The store (or its directory) cannot be created or written.
    #[error(
        "cannot write the run store `{path}`: {reason}; make the directory writable, or point `--store` or `DYNHOST_HOME` at a writable directory"
    )]
    Unwritable {
        /// The database file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
    /// Another process holds the store's write lock for too long.
    #[error(
        "run store `{path}` is locked by another process; wait for it to finish, or point `DYNHOST_HOME` elsewhere"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// Any other I/O or SQL failure.
    #[error("run store `{path}`: {reason}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A run id that the store does not have.
    #[error("no run `{run}` in `{path}`; `dynhost runs` lists the runs")]
    UnknownRun {
        /// The database file.
        path: PathBuf,
        /// The id asked for.
        run: String,
    },
    /// A prefix that more than one run id starts with.
    #[error(
        "`{prefix}` is the start of {count} run ids in `{path}` ({}); give more of the id",
        candidates.join(", ")
    )]
    AmbiguousRun {
        /// The database file.
        path: PathBuf,
        /// The prefix asked for.
        prefix: String,
        /// How many runs match.
        count: usize,
        /// The newest few of them.
        candidates: Vec<String>,
    },
}

/// How a run may be named wherever one is taken: its full id, any unique
/// prefix of it, `latest` (the newest run), or `latest:JOB_FILE` (the newest
/// run of that job file, given as an absolute path). `runs` is newest first.
///
/// # Errors
/// [`StoreError::UnknownRun`] or [`StoreError::AmbiguousRun`].
pub fn find_run(
    runs: Vec<RunSummary>,
    wanted: &str,
    path: &std::path::Path,
) -> Result<RunSummary, StoreError> {
    let unknown = || StoreError::UnknownRun {
        path: path.to_owned(),
        run: wanted.to_owned(),
    };
    if wanted == "latest" {
        return runs.into_iter().next().ok_or_else(unknown);
    }
    if let Some(job_file) = wanted.strip_prefix("latest:") {
        return runs
            .into_iter()
            .find(|r| r.job_file == job_file)
            .ok_or_else(unknown);
    }
    if wanted.is_empty() {
        return Err(unknown());
    }
    let mut matches: Vec<RunSummary> = Vec::new();
    for run in runs {
        if run.id == wanted {
            return Ok(run);
        }
        if run.id.starts_with(wanted) {
            matches.push(run);
        }
    }
    match matches.len() {
        0 => Err(unknown()),
        1 => Ok(matches.remove(0)),
        count => Err(StoreError::AmbiguousRun {
            path: path.to_owned(),
            prefix: wanted.to_owned(),
            count,
            candidates: matches.into_iter().take(3).map(|r| r.id).collect(),
        }),
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every step succeeded.
    Succeeded,
    /// Some step failed or was skipped.
    Failed,
    /// Stopped by Ctrl-C or SIGTERM; `resume` continues it.
    Interrupted,
}

impl RunStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// This process as a run's owner: its pid and start time (in clock ticks
/// since boot, from `/proc`), so a reused pid is not taken for it.
pub fn this_process() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", process_start(pid).unwrap_or_default())
}

/// The pid in `owner` if that process is still the one that started the run.
pub fn live_owner(owner: &str) -> Option<u32> {
    let (pid, start) = owner.split_once(':')?;
    let pid: u32 = pid.parse().ok()?;
    (process_start(pid)? == start).then_some(pid)
}

/// Field 22 of `/proc/PID/stat`: when the process started.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

/// A run, as started.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The run id.
    pub id: String,
    /// The job's name.
    pub job: String,
    /// The job file, absolute.
    pub job_file: String,
    /// SHA-256 of the job file's text.
    pub job_hash: String,
    /// The config each op ran with (defaults and overrides applied), as a
    /// JSON object by op name.
    pub config: String,
    /// The locked plan ([`crate::plan::lock`]) as JSON: what this run (or
    /// this resume of it) ran. Empty when not known yet.
    pub plan: String,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// It returned a value.
    Succeeded,
    /// It failed (after any retries).
    Failed,
    /// It never ran because an input failed.
    Skipped,
}

impl StepStatus {
    fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// One finished step, written whole in one transaction with its items and output.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The op (its name, shared by all its steps' records: a million-key
    /// run builds a million records, and each string was an allocation
    /// made on the coordinator and freed on the store's thread).
    pub op: Arc<str>,
    /// The step's keys (mapping keys are kept inline when short).
    pub keys: crate::key::KeyPath,
    /// Its item's position among its emitter's items (emission order), for
    /// steps inside a map.
    pub position: Option<u32>,
    /// How it ended.
    pub status: StepStatus,
    /// Attempts so far in this run.
    pub attempts: u32,
    /// Wall time of the last attempt.
    pub wall_secs: f64,
    /// Failure kind (`timeout`, `trap`, ...) or skip reason kind.
    pub failure_kind: Option<String>,
    /// Failure message or skip reason.
    pub failure_message: Option<String>,
    /// Peak linear memory.
    pub peak_memory_bytes: u64,
    /// Items emitted.
    pub emitted_items: u64,
    /// Bytes emitted.
    pub emitted_bytes: u64,
    /// Fuel used, when metered.
    pub fuel_used: Option<u64>,
    /// SHA-256 over the step's inputs: a stored success is reused only for the same inputs.
    pub input_hash: Option<Digest>,
    /// SHA-256 over component, config and inputs: what resume compares.
    pub memo_key: Option<Digest>,
    /// The op has `cache = true`: other runs may reuse this step, so its
    /// memo key is indexed. Only such steps pay for the index (a random
    /// 64-character key per step was half of the recorder's work).
    pub memoized: bool,
    /// The returned value.
    pub output: Option<Arc<[u8]>>,
    /// Metadata the op attached to its result, a JSON array.
    pub metadata: Option<Box<str>>,
    /// The op returned "no value" on an optional result.
    pub no_value: bool,
    /// HTTP requests and bytes, and time waited for limits, as a JSON
    /// object; `None` for a step that made no request and never waited.
    pub services: Option<String>,
    /// Named plain outputs (one per declared output of a step that
    /// succeeded; empty otherwise).
    pub outputs: Vec<StoredOutput>,
    /// Emitted items, in emission order. Empty when
    /// `items_streamed`: a step that ran had its items written as it emitted them.
    pub items: Vec<StoredItem>,
    /// The items were written by [`Write::Items`] while the step ran; keep them.
    pub items_streamed: bool,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// `host.log` lines.
    pub log: String,
    /// What the inputs were, for `show` and the viewer.
    pub inputs: Option<InputSummary>,
    /// Whether this was a real execution (false when reused from a stored run).
    pub executed: bool,
}

/// What a step's inputs were: their names, sources and kinds, the same for
/// every step of an op (so stored once per run and op), and this step's
/// sizes and values. Read back as one JSON array ([`StepRow::inputs`]).
#[derive(Debug, Clone)]
pub struct InputSummary {
    /// Per input, a JSON object with `name`, `from` (where it comes from)
    /// and `kind` (`single` or `collected`), in a JSON array; shared by the
    /// op's steps.
    pub heads: Arc<str>,
    /// Per input, in the same order: `{"hex": …}` (a small value whole),
    /// `{"bytes": …, "sha256": …}` (a larger one by the hash it is stored
    /// under) or `{"items": …, "failed": …}` (a collect), in a JSON array.
    pub values: String,
}

/// Items a running step emitted, written as they arrive so that a million
/// items never wait in memory for their emitter to finish. They count only
/// once the step's own record says it succeeded.
#[derive(Debug, Clone)]
pub struct ItemsRecord {
    /// The emitting op.
    pub op: Arc<str>,
    /// The emitting step's keys.
    pub keys: crate::key::KeyPath,
    /// Position of the first item among all the step's items; 0 starts the
    /// step's items afresh (a new attempt replaces an old one's items).
    pub first_seq: u64,
    /// The items, in emission order.
    pub items: Vec<StoredItem>,
}

/// One named plain output of a step as the store keeps it.
#[derive(Debug, Clone)]
pub struct StoredOutput {
    /// The output's name.
    pub name: String,
    /// Its value; `None` if the op did not set it.
    pub value: Option<Arc<[u8]>>,
    /// Its metadata, a JSON array.
    pub metadata: Option<Box<str>>,
}

/// One emitted item as the store keeps it.
#[derive(Debug, Clone)]
pub struct StoredItem {
    /// The dynamic output (its name, shared by all its items).
    pub output: Arc<str>,
    /// The item's mapping key.
    pub key: String,
    /// Its value.
    pub value: Arc<[u8]>,
    /// Its metadata, a JSON array (WIT 0.2.0 `emit`); `None` for most items.
    pub metadata: Option<Arc<str>>,
}

/// One write to the store.
#[derive(Debug, Clone)]
pub enum Write {
    /// Items of a step that is still running.
    Items(ItemsRecord),
    /// A finished step.
    Step(Box<StepRecord>),
    /// Failed or skipped steps that a tolerant collect ran without: (op,
    /// keys). They do not fail the run and are counted apart.
    Tolerated(Vec<(String, Vec<String>)>),
}

/// A stored success that a resumed run may reuse.
#[derive(Debug, Clone)]
pub struct PriorStep {
    /// The op.
    pub op: String,
    /// The step's keys.
    pub keys: Vec<String>,
    /// The inputs it ran with.
    pub input_hash: Option<Digest>,
    /// Its component, config and inputs together ([`memo key`]); `None` for
    /// steps recorded before every step had one.
    ///
    /// [`memo key`]: crate::exec
    pub memo_key: Option<Digest>,
    /// Its value.
    pub output: Arc<[u8]>,
    /// It returned "no value" on an optional result.
    pub no_value: bool,
    /// Metadata on its result, a JSON array.
    pub metadata: Option<Box<str>>,
    /// Its named plain outputs that were set or carry metadata.
    pub outputs: Vec<StoredOutput>,
    /// Its emitted items, in emission order.
    pub items: Vec<StoredItem>,
}

/// One row of `dynhost runs`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The job's name.
    pub job: String,
    /// The job file.
    pub job_file: String,
    /// `running`, `succeeded`, `failed` or `interrupted` (stopped by a
    /// signal, or its process is gone while it was `running`).
    pub status: String,
    /// The process working on a `running` run, while it is alive.
    pub owner_pid: Option<u32>,
    /// Start, seconds since the Unix epoch.
    pub started_at: f64,
    /// End, if it ended.
    pub finished_at: Option<f64>,
    /// Seconds the run was running, summed over its resumes (the time
    /// between an interruption and a resume is not in it); `None` for runs
    /// recorded before it was kept.
    pub active_secs: Option<f64>,
    /// Failed or skipped steps a tolerant collect ran without.
    pub tolerated: u64,
    /// The config each op ran with last, as a JSON object by op name
    /// (`None` for runs recorded before it was kept).
    pub config: Option<String>,
    /// Steps that succeeded.
    pub succeeded: u64,
    /// Steps that failed.
    pub failed: u64,
    /// Steps that were skipped.
    pub skipped: u64,
}

/// One stored step, for `dynhost show`.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    /// The op.
    pub op: String,
    /// The step's keys.
    pub keys: Vec<String>,
    /// `succeeded`, `failed` or `skipped`.
    pub status: String,
    /// A failed or skipped step that a tolerant collect ran without.
    pub tolerated: bool,
    /// Attempts in this run.
    pub attempts: u32,
    /// Wall time of the last attempt.
    pub wall_secs: f64,
    /// Failure kind.
    pub failure_kind: Option<String>,
    /// Failure message or skip reason.
    pub failure_message: Option<String>,
    /// Peak linear memory.
    pub peak_memory_bytes: u64,
    /// Items emitted.
    pub emitted_items: u64,
    /// Bytes emitted.
    pub emitted_bytes: u64,
    /// Fuel used, when metered.
    pub fuel_used: Option<u64>,
    /// Size of the returned value.
    pub output_bytes: Option<u64>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// `host.log` lines.
    pub log: String,
    /// JSON summary of the inputs: name, kind, size and hash of each.
    pub inputs: Option<String>,
    /// Metadata on the result, a JSON array.
    pub metadata: Option<String>,
    /// The op returned "no value" on an optional result.
    pub no_value: bool,
    /// HTTP requests and bytes, and time waited for limits (JSON), if any.
    pub services: Option<String>,
}

/// The operations dynhost needs from a run store.
pub trait RunStore: Send {
    /// Records a new run, or marks an existing one running again (resume).
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// Writes items and finished steps in one transaction: each step is
    /// whole or absent after a crash.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn record(&mut self, run_id: &str, writes: &[Write]) -> Result<(), StoreError>;
    /// Marks a run finished.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn finish_run(&mut self, run_id: &str, status: RunStatus) -> Result<(), StoreError>;
    /// The header of the run named `run_id` (an id, a unique prefix,
    /// `latest` or `latest:JOB_FILE`: see [`find_run`]).
    ///
    /// # Errors
    /// [`StoreError::UnknownRun`] if there is no such run,
    /// [`StoreError::AmbiguousRun`] if a prefix names several.
    fn run(&self, run_id: &str) -> Result<RunSummary, StoreError>;
    /// All runs, newest first.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn runs(&self) -> Result<Vec<RunSummary>, StoreError>;
    /// Every stored step of a run, sorted by op and keys.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn steps(&self, run_id: &str) -> Result<Vec<StepRow>, StoreError>;
    /// The succeeded steps of a run, with values and items, for reuse.
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn successes(&self, run_id: &str) -> Result<Vec<PriorStep>, StoreError>;
    /// A stored success of any run with this memo key (`cache = true`).
    ///
    /// # Errors
    /// A [`StoreError`] naming the store file.
    fn memoized(&self, memo_key: &Digest) -> Result<Option<PriorStep>, StoreError>;
}

/// A SHA-256 digest kept as its 32 bytes: a step's input hash and memo
/// key. Stored as a 32-byte blob (stores before schema 12 hold 64 hex
/// characters; both read back), compared as bytes: a million-step run
/// hex-encoded two of these per step and wrote 128 characters per row.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest as 64 lowercase hex characters.
    pub fn hex(&self) -> String {
        crate::runtime::cache::hex(&self.0)
    }

    /// A digest from 64 hex characters (either case), or `None`.
    pub fn from_hex(text: &str) -> Option<Self> {
        unhex(text)?.try_into().ok().map(Self)
    }

    /// A digest read from a store column: 32 bytes, or 64 hex characters
    /// (written before schema 12); anything else is `None` (never matches).
    pub(crate) fn from_column(bytes: &[u8]) -> Option<Self> {
        match <[u8; 32]>::try_from(bytes) {
            Ok(raw) => Some(Self(raw)),
            Err(_) => std::str::from_utf8(bytes).ok().and_then(Self::from_hex),
        }
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// The bytes of hex text (either case; as the store writes hashes and small
/// input values), or `None` for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// SHA-256 of `bytes`, hex-encoded: how values are addressed.
pub fn hash_bytes(bytes: &[u8]) -> String {
    crate::runtime::cache::component_hash(bytes)
}

/// The `services` column (HTTP accounting, time waited for limits) as one line.
pub fn services_line(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    format!(
        "{} HTTP request(s), {} bytes sent, {} received; waited {:.3}s for limits",
        n("http_requests"),
        n("http_sent_bytes"),
        n("http_received_bytes"),
        v["waited_secs"].as_f64().unwrap_or(0.0)
    )
}
