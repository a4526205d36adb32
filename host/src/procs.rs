//! Worker processes on this machine (`dynhost run --processes N`): a run's
//! steps go to N child `dynhost` processes over pipes instead of to threads
//! of this one.
//!
//! Why: a step of an interpreter op (Python, JavaScript) writes hundreds of
//! copy-on-write pages of its fresh instance's memory image. Threads share
//! one address space, so each such fault on one worker flushes the TLB of
//! every CPU running another (an inter-processor interrupt; on a virtual
//! machine a VM exit per fault). Processes share no address space: their
//! faults flush nothing elsewhere. Measured on the Python template op (2,000
//! keys, 2 CPUs): 2 worker threads 3.4 s wall, 6.6 s CPU; 2 worker
//! processes 1.7 s wall, 3.1 s CPU (README, issue 15 goal 2). A trivial Rust
//! op has no such faults and pays the pipe instead, so threads stay the
//! default.
//!
//! The messages are `exec::wire`'s (those of the NATS workers), one JSON
//! object per line: steps down a child's stdin, batches of items and ends up
//! its stdout. Values over `wire::INLINE_MAX` go through files named by
//! their digest in a directory both sides see. Every child loads the run's
//! locked plan and runs a step only with the component the plan names by
//! digest; it runs one step at a time, in its own sandbox as on a thread.

use crate::exec::transport::{Events, StepEvent, StepRequest, Transport, Woke};
use crate::exec::wire::{self, BlobStore, EventBatchMsg, FinishedMsg, StepMsg};
use crate::exec::worker::{OpStrings, run_one};
use crate::exec::{RunEvent, RunOptions, RunResult, StepId, Storage};
use crate::plan::Plan;
use crate::plan::lock::Locked;
use crate::runtime::{
    EmitSink, FailureKind, OpComponent, OpFailure, Runtime, RuntimeConfig, StepReport,
};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why worker processes could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcsError {
    /// A child could not be started.
    #[error("cannot start worker process `{exe}`: {reason}")]
    Spawn {
        /// The program.
        exe: PathBuf,
        /// Why.
        reason: String,
    },
    /// The directory for values and the plan could not be made.
    #[error("cannot prepare worker processes: {0}")]
    Setup(String),
    /// A child was given something it cannot use.
    #[error("worker process: {0}")]
    Serve(String),
}

/// How to start the children.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The `dynhost` binary (the CLI passes its own path).
    pub exe: PathBuf,
    /// How many.
    pub count: usize,
    /// Per op (plan order): whether its steps run in the children; the
    /// others run on this process's threads.
    pub ops: Vec<bool>,
    /// The run's locked plan as JSON (components by digest): what the
    /// children run.
    pub locked_plan: String,
    /// The runtime each builds (`max_instances` is set to 1: a child runs
    /// one step at a time).
    pub runtime: RuntimeConfig,
}

/// Steps handed to one child and not yet ended, at most: its next steps wait
/// in its pipe, so it never idles while the coordinator catches up.
const QUEUED_PER_CHILD: usize = 8;

/// Items a child gathers into one line before it writes them (and at most
/// [`LINE_BYTES`]); a step's end goes out at once with what is gathered.
const ITEMS_PER_LINE: usize = 512;
const LINE_BYTES: usize = 512 << 10;

/// Values over `wire::INLINE_MAX`, as files named by their SHA-256.
pub struct DirBlobs {
    dir: PathBuf,
}

impl DirBlobs {
    fn path(&self, digest: &str) -> Result<PathBuf, String> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{digest}` is not a value digest"));
        }
        Ok(self.dir.join(hex))
    }
}

impl BlobStore for DirBlobs {
    fn put(&mut self, bytes: &[u8]) -> Result<String, String> {
        let digest = format!("sha256:{}", crate::store::hash_bytes(bytes));
        let path = self.path(&digest)?;
        if !path.exists() {
            // Whole or not at all: the other side may read it at once.
            let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
            file.write_all(bytes).map_err(|e| e.to_string())?;
            file.persist(&path).map_err(|e| e.to_string())?;
        }
        Ok(digest)
    }

    fn get(&mut self, digest: &str) -> Result<Vec<u8>, String> {
        let path = self.path(digest)?;
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Component files at least this large embed an interpreter (componentize-py
/// ~18 MB, componentize-js ~12 MB; compiled Rust and C ops are well under
/// 1 MB): their fresh instances are the ones that fault many pages.
pub const INTERPRETER_BYTES: u64 = 8 << 20;

/// Per op: whether its component is an interpreter's (see
/// [`INTERPRETER_BYTES`]), whose steps run faster in worker processes.
pub fn interpreter_ops(plan: &Plan) -> Vec<bool> {
    plan.ops
        .iter()
        .map(|op| std::fs::metadata(&op.component).is_ok_and(|m| m.len() >= INTERPRETER_BYTES))
        .collect()
}

/// Runs the steps of `processes.ops` in `processes.count` child processes,
/// the others on `runtime` here; this process coordinates (scheduling,
/// store, progress) as for a local run.
///
/// # Errors
/// [`ProcsError`] if the children cannot be started.
pub fn run(
    plan: &Plan,
    runtime: &Runtime,
    components: &[OpComponent],
    options: &RunOptions,
    storage: Storage,
    observer: &mut dyn FnMut(RunEvent<'_>),
    processes: &ProcessOptions,
) -> Result<RunResult, ProcsError> {
    let dir = tempfile::Builder::new()
        .prefix("dynhost-procs-")
        .tempdir()
        .map_err(|e| ProcsError::Setup(e.to_string()))?;
    let mut transport = Children::start(plan, components, options, processes, dir.path())?;
    let result = if processes.ops.iter().all(|in_child| *in_child) {
        let hashes: Vec<&str> = components.iter().map(|c| c.hash.as_str()).collect();
        crate::exec::run_on(plan, &hashes, options, storage, observer, &mut transport)
    } else {
        let here = processes.ops.iter().map(|in_child| !in_child).collect();
        crate::exec::run_split(
            plan,
            runtime,
            components,
            options,
            storage,
            observer,
            Some((&mut transport, here)),
        )
    };
    drop(transport);
    Ok(result)
}

/// What a child's reader thread saw.
enum Line {
    /// One line of events.
    Events(Vec<u8>),
    /// Its stdout closed: the child exited.
    Closed,
}

/// One child.
struct Worker {
    child: Child,
    /// Lines to write to its stdin, by its writer thread (a write may wait
    /// for the child to read, which must not hold up the coordinator).
    stdin: Option<crossbeam_channel::Sender<Vec<u8>>>,
    /// Steps handed to it and not yet ended, in the order it runs them: the
    /// first is the one running.
    held: VecDeque<Held>,
    alive: bool,
}

/// A step handed to a child, with its line, to hand it to another if the
/// child dies before starting it.
struct Held {
    step: StepId,
    attempt: u32,
    line: Vec<u8>,
}

/// What starting a child takes (again, when one dies).
struct Spawner {
    processes: ProcessOptions,
    /// The runtime config as JSON.
    runtime: String,
    run_id: String,
    dir: PathBuf,
    plan_file: PathBuf,
    lines: crossbeam_channel::Sender<(usize, Line)>,
}

/// Children started in place of dead ones, at most, per child of the run: a
/// child killed now and then (the OOM killer) is replaced, one that dies
/// at every start is not retried for ever.
const RESPAWNS_PER_CHILD: usize = 3;

/// The transport over the children.
struct Children<'p> {
    plan: &'p Plan,
    digests: Vec<String>,
    blobs: DirBlobs,
    spawner: Spawner,
    workers: Vec<Worker>,
    respawns_left: usize,
    lines: crossbeam_channel::Receiver<(usize, Line)>,
    /// Ends made here (a child died with steps), reported at the next wait.
    made: Vec<StepEvent>,
    stopped: bool,
}

impl<'p> Children<'p> {
    fn start(
        plan: &'p Plan,
        components: &[OpComponent],
        options: &RunOptions,
        processes: &ProcessOptions,
        dir: &Path,
    ) -> Result<Self, ProcsError> {
        let plan_file = dir.join("plan.json");
        std::fs::write(&plan_file, &processes.locked_plan)
            .map_err(|e| ProcsError::Setup(e.to_string()))?;
        let runtime = serde_json::to_string(&RuntimeConfig {
            max_instances: 1,
            ..processes.runtime.clone()
        })
        .map_err(|e| ProcsError::Setup(e.to_string()))?;
        let (tx, lines) = crossbeam_channel::unbounded();
        let spawner = Spawner {
            processes: processes.clone(),
            runtime,
            run_id: options.run_id.clone(),
            dir: dir.to_path_buf(),
            plan_file,
            lines: tx,
        };
        let count = processes.count.max(1);
        let workers = (0..count)
            .map(|index| spawner.spawn(index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            plan,
            digests: components
                .iter()
                .map(|c| format!("sha256:{}", c.hash))
                .collect(),
            blobs: DirBlobs {
                dir: dir.to_path_buf(),
            },
            spawner,
            workers,
            respawns_left: count * RESPAWNS_PER_CHILD,
            lines,
            made: Vec::new(),
            stopped: false,
        })
    }

    /// Takes one line of a child's events; a step's end frees its place.
    fn take(&mut self, index: usize, line: Line, events: &mut Events) {
        match line {
            Line::Events(bytes) => {
                let batch: EventBatchMsg = match wire::decode(&bytes) {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!("ignoring a line of worker process {index}: {e}");
                        return;
                    }
                };
                for item in batch.items {
                    match item.event(self.plan, &mut self.blobs) {
                        Ok(event) => events.push(event),
                        Err(e) => tracing::warn!("ignoring an item: {e}"),
                    }
                }
                for end in batch.finished {
                    match end.event(self.plan, &mut self.blobs) {
                        Ok(event) => {
                            if let StepEvent::Finished { step, attempt, .. } = &event {
                                let held = &mut self.workers[index].held;
                                if let Some(at) = held
                                    .iter()
                                    .position(|h| h.step == *step && h.attempt == *attempt)
                                {
                                    held.remove(at);
                                }
                            }
                            events.push(event);
                        }
                        Err(e) => tracing::warn!("ignoring a step's end: {e}"),
                    }
                }
            }
            Line::Closed => self.died(index),
        }
    }

    /// A child is gone: the step it was running fails (a retry policy runs
    /// it again), the ones waiting in its pipe go to the other children, and
    /// another child takes its place (up to [`RESPAWNS_PER_CHILD`] each).
    fn died(&mut self, index: usize) {
        let worker = &mut self.workers[index];
        if !worker.alive {
            return;
        }
        worker.alive = false;
        worker.stdin = None;
        if self.stopped {
            return;
        }
        let status = worker
            .child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        let pid = worker.child.id();
        let mut held = std::mem::take(&mut worker.held);
        if let Some(running) = held.pop_front() {
            self.fail(
                running.step,
                running.attempt,
                format!(
                    "worker process {pid} ended ({status}) while running this step; the other steps went on; run `dynhost resume` to run it again"
                ),
            );
        }
        if self.respawns_left > 0 {
            self.respawns_left -= 1;
            match self.spawner.spawn(index) {
                Ok(worker) => {
                    tracing::warn!(
                        "worker process {pid} ended ({status}); started another in its place"
                    );
                    self.workers[index] = worker;
                }
                Err(e) => tracing::warn!("worker process {pid} ended ({status}): {e}"),
            }
        }
        for step in held {
            self.hand(step);
        }
    }

    /// A step's end made here, as a host failure.
    fn fail(&mut self, step: StepId, attempt: u32, reason: String) {
        self.made.push(StepEvent::Finished {
            step,
            attempt,
            report: Box::new(StepReport::failed(OpFailure::new(
                FailureKind::Host,
                reason,
            ))),
        });
    }

    /// Hands a step to the live child holding the fewest.
    fn hand(&mut self, step: Held) {
        let Some(worker) = self
            .workers
            .iter_mut()
            .filter(|w| w.alive)
            .min_by_key(|w| w.held.len())
        else {
            self.fail(
                step.step,
                step.attempt,
                "every worker process has ended (see the messages above); run `dynhost resume` to run this step again".into(),
            );
            return;
        };
        if let Some(stdin) = &worker.stdin {
            // A closed channel means the writer saw the child go; its
            // reader reports that, and this step with it.
            let _ = stdin.send(step.line.clone());
        }
        worker.held.push_back(step);
    }
}

impl Spawner {
    /// Starts child `index`, with a thread writing its stdin and one
    /// reading its stdout.
    fn spawn(&self, index: usize) -> Result<Worker, ProcsError> {
        let Self {
            processes,
            runtime,
            run_id,
            dir,
            plan_file,
            lines,
        } = self;
        use std::os::unix::process::CommandExt as _;
        let spawn_error = |e: std::io::Error| ProcsError::Spawn {
            exe: processes.exe.clone(),
            reason: e.to_string(),
        };
        let mut child = Command::new(&processes.exe)
            .arg("worker-process")
            .arg("--runtime")
            .arg(runtime)
            .arg("--run-id")
            .arg(run_id)
            .arg("--values")
            .arg(dir)
            .arg(plan_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: a Ctrl-C at the terminal is for the
            // coordinator, which stops the children itself.
            .process_group(0)
            .spawn()
            .map_err(spawn_error)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(ProcsError::Setup("a child without pipes".into()));
        };
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
        let named = |what: &str| format!("dynhost-proc{index}-{what}");
        std::thread::Builder::new()
            .name(named("in"))
            .spawn(move || write_lines(stdin, &rx))
            .map_err(spawn_error)?;
        let lines = lines.clone();
        std::thread::Builder::new()
            .name(named("out"))
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if lines
                                .send((index, Line::Events(std::mem::take(&mut line))))
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                let _ = lines.send((index, Line::Closed));
            })
            .map_err(spawn_error)?;
        Ok(Worker {
            child,
            stdin: Some(tx),
            held: VecDeque::new(),
            alive: true,
        })
    }
}

/// Writes lines to a child until the coordinator drops the sender or the
/// child stops reading.
fn write_lines(stdin: ChildStdin, rx: &crossbeam_channel::Receiver<Vec<u8>>) {
    let mut out = BufWriter::new(stdin);
    while let Ok(line) = rx.recv() {
        if out.write_all(&line).is_err() {
            return;
        }
        // Write what is queued together; flush before waiting for more.
        if rx.is_empty() && out.flush().is_err() {
            return;
        }
    }
}

impl Transport for Children<'_> {
    fn capacity(&self, _ready: usize) -> usize {
        self.workers.iter().filter(|w| w.alive).count().max(1) * QUEUED_PER_CHILD
    }

    fn submit(&mut self, steps: Vec<StepRequest>) {
        for request in steps {
            let op = request.step.op;
            match StepMsg::new(
                &self.spawner.run_id,
                self.plan,
                &self.digests[op],
                &request,
                &mut self.blobs,
            ) {
                Ok(msg) => {
                    let mut line = wire::encode(&msg);
                    line.push(b'\n');
                    self.hand(Held {
                        step: request.step,
                        attempt: request.attempt,
                        line,
                    });
                }
                Err(e) => self.fail(
                    request.step,
                    request.attempt,
                    format!("cannot hand the step to a worker process: {e}"),
                ),
            }
        }
    }

    fn wait(&mut self, timeout: Duration, events: &mut Events) -> Woke {
        let mut looked = !self.made.is_empty();
        for event in self.made.drain(..) {
            events.push(event);
        }
        let first = if looked || timeout.is_zero() {
            self.lines.try_recv().ok()
        } else {
            match self
                .lines
                .recv_timeout(timeout.min(Duration::from_secs(3600)))
            {
                Ok(line) => Some(line),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Woke::Looked,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Woke::Closed,
            }
        };
        let mut next = first;
        while let Some((index, line)) = next {
            looked = true;
            self.take(index, line, events);
            next = self.lines.try_recv().ok();
        }
        for event in self.made.drain(..) {
            events.push(event);
        }
        if looked || !timeout.is_zero() {
            Woke::Looked
        } else {
            Woke::Quiet
        }
    }

    fn stop(&mut self) -> usize {
        self.stopped = true;
        for worker in &mut self.workers {
            worker.stdin = None;
            let _ = worker.child.kill();
        }
        // Steps that were running are not waited for: an interrupted run
        // records none of them, and `resume` runs them again.
        usize::MAX
    }
}

impl Drop for Children<'_> {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            // End of input: a child finishes its step and exits.
            worker.stdin = None;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for worker in &mut self.workers {
            loop {
                match worker.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = worker.child.kill();
                        let _ = worker.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
    }
}

/// The child's side (`dynhost worker-process`): reads the locked plan, then
/// runs the steps that arrive on `input`, one at a time, writing their
/// items and ends to `output`, until `input` ends. An op's component is
/// loaded at its first step (one that cannot be loaded fails its steps).
///
/// # Errors
/// [`ProcsError::Serve`] if the plan cannot be read, a line is not a step
/// of it, or `output` cannot be written.
pub fn serve(
    config: &RuntimeConfig,
    run_id: &str,
    values: &Path,
    plan_file: &Path,
    input: impl BufRead,
    output: impl Write + Send + 'static,
) -> Result<(), ProcsError> {
    let serve_error = |e: String| ProcsError::Serve(e);
    let text = std::fs::read(plan_file)
        .map_err(|e| serve_error(format!("{}: {e}", plan_file.display())))?;
    let locked = Locked::from_json(&text).map_err(serve_error)?;
    let plan = Arc::new(locked.plan);
    let strings = OpStrings::of(&plan);
    let runtime = Runtime::new(config).map_err(|e| serve_error(e.to_string()))?;
    // Each op's component, loaded at its first step here (a child starts
    // sooner, and loads nothing for the ops that run on threads) as the
    // locked plan names it, by digest, or why it cannot run. Ops sharing a
    // file share its load.
    let mut components: Vec<Option<Result<OpComponent, String>>> = vec![None; plan.ops.len()];
    let mut by_file: HashMap<PathBuf, Result<OpComponent, String>> = HashMap::new();
    let out = Arc::new(Mutex::new(Gather {
        out: BufWriter::new(Box::new(output)),
        items: Vec::new(),
        bytes: 0,
    }));
    let mut blobs = DirBlobs {
        dir: values.to_path_buf(),
    };
    for line in input.split(b'\n') {
        let line = line.map_err(|e| serve_error(e.to_string()))?;
        if line.is_empty() {
            continue;
        }
        let msg: StepMsg = wire::decode(&line).map_err(|e| serve_error(e.to_string()))?;
        let request = msg
            .request(&plan, &mut blobs)
            .map_err(|e| serve_error(e.to_string()))?;
        let (step, attempt) = (request.step.clone(), request.attempt);
        let component = components[step.op].get_or_insert_with(|| {
            let op = &plan.ops[step.op];
            let digest = &locked.components[step.op].digest;
            let hash = digest.strip_prefix("sha256:").unwrap_or(digest);
            by_file
                .entry(op.component.clone())
                .or_insert_with(|| {
                    runtime.load_locked(&op.component, hash).map_err(|e| {
                        format!(
                            "a worker process cannot load `{}`'s component: {e}",
                            op.name
                        )
                    })
                })
                .clone()
        });
        let report = match component {
            Err(reason) => StepReport::failed(OpFailure::new(FailureKind::Host, reason.clone())),
            Ok(component) => {
                let sink = Box::new(ItemSink {
                    plan: plan.clone(),
                    items: wire::ItemNumbers::new(run_id, step.clone(), attempt),
                    blobs: DirBlobs {
                        dir: values.to_path_buf(),
                    },
                    out: out.clone(),
                });
                run_one(
                    &runtime,
                    &plan,
                    &strings,
                    component,
                    run_id,
                    &step,
                    request.inputs,
                    sink,
                )
            }
        };
        let end = FinishedMsg::new(run_id, &plan, &step, attempt, &report, &mut blobs)
            .map_err(serve_error)?;
        let mut gather = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        gather
            .write(Some(wire::encode(&end)))
            .map_err(|e| serve_error(e.to_string()))?;
    }
    Ok(())
}

/// A child's output: items gathered into a line until it is full or a step ends.
struct Gather {
    out: BufWriter<Box<dyn Write + Send>>,
    items: Vec<Vec<u8>>,
    bytes: usize,
}

impl Gather {
    /// Writes the gathered items and `end` (if any) as one line.
    fn write(&mut self, end: Option<Vec<u8>>) -> std::io::Result<()> {
        let ends: Vec<Vec<u8>> = end.into_iter().collect();
        let mut line = wire::batch(&[("items", &self.items), ("finished", &ends)]);
        line.push(b'\n');
        self.items.clear();
        self.bytes = 0;
        self.out.write_all(&line)?;
        self.out.flush()
    }
}

/// Writes a running step's items to the child's output.
struct ItemSink {
    plan: Arc<Plan>,
    items: wire::ItemNumbers,
    blobs: DirBlobs,
    out: Arc<Mutex<Gather>>,
}

impl EmitSink for ItemSink {
    fn emit(
        &mut self,
        output: usize,
        key: crate::key::MappingKey,
        value: Vec<u8>,
        metadata: Option<Box<str>>,
    ) -> Duration {
        match self
            .items
            .message(&self.plan, output, key, value, metadata, &mut self.blobs)
        {
            Ok(msg) => {
                let mut gather = self
                    .out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let msg = wire::encode(&msg);
                gather.bytes += msg.len();
                gather.items.push(msg);
                if gather.items.len() >= ITEMS_PER_LINE || gather.bytes >= LINE_BYTES {
                    // The coordinator's reader may be slow to take it: that
                    // wait is the host's, not the op's.
                    let started = Instant::now();
                    if let Err(e) = gather.write(None) {
                        tracing::error!("cannot write items: {e}");
                    }
                    return started.elapsed();
                }
            }
            Err(e) => tracing::error!("cannot send an item: {e}"),
        }
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_pass_through_files_named_by_their_digest_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = DirBlobs {
            dir: dir.path().to_path_buf(),
        };
        let value = vec![7u8; 100 << 10];
        let digest = blobs.put(&value).unwrap();
        assert_eq!(
            digest,
            format!("sha256:{}", crate::store::hash_bytes(&value))
        );
        // Stored once, read back whole by the other side.
        assert_eq!(blobs.put(&value).unwrap(), digest);
        assert_eq!(blobs.get(&digest).unwrap(), value);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A digest that is not one never becomes a path.
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:",
            "plan.json",
            &"a".repeat(65),
        ] {
            assert!(blobs.get(bad).is_err(), "{bad}");
        }
        let missing = format!("sha256:{}", "0".repeat(64));
        assert!(blobs.get(&missing).unwrap_err().contains("No such file"));
    }
}
