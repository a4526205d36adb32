//! The sandbox: one wasmtime [`Engine`] per process, one compiled component and
//! one pre-instantiated handle per op, one fresh [`Store`] per step.
//!
//! `runtime` knows nothing about job files or plans: it takes a component, a
//! [`SandboxPolicy`] and input bytes, and returns a [`StepReport`]. Generated
//! bindings and `wasmtime::Error` stay inside this module.

mod bindings;
mod bounded;
mod bytes;
pub mod cache;
mod call;
mod collected;
mod failure;
mod functions;
mod host;
mod http;
mod kick;
pub mod metadata;
pub mod outbound;
mod policy;
mod reactor;
mod sandbox;
mod signature;
pub mod types;

pub use collected::{CollectedItems, Keys};
pub use failure::{FailureKind, OpFailure};
pub use host::EmitSink;
pub use outbound::OutboundHost;
pub use policy::{Limits, Mount, SandboxPolicy};
pub use sandbox::TRUNCATED_MARKER;

use crate::key::{KeyPath, MappingKey};
use bindings::{v1, v2};
use sandbox::{Capture, MemoryLimiter, StepState};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// How often the epoch advances: the resolution of step timeouts. 10 ms costs
/// nothing measurable and makes a timeout overshoot by at most that much.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A component that does not implement the dynhost world, or cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be configured.
    #[error("cannot start the wasm engine: {reason}")]
    Engine {
        /// Why.
        reason: String,
    },
    /// The component file could not be read or compiled.
    #[error("cannot load component `{path}`: {reason}")]
    Load {
        /// The component.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a wasm component at all.
    #[error("`{path}` is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// What it is instead and how to get a component.
        reason: String,
    },
    /// The component does not implement `dynhost:op/dynamic-op`.
    #[error(
        "component `{path}` does not implement the world `dynhost:op/dynamic-op@{version}`: {reason}; build it against the WIT in `wit/`"
    )]
    WrongWorld {
        /// The component.
        path: PathBuf,
        /// The version of the world its `dynhost:op/op` export names (the
        /// current one if it has none).
        version: &'static str,
        /// The missing or mismatched import or export.
        reason: String,
    },
    /// The file no longer holds the bytes a run was started with.
    #[error(
        "`{path}` changed since the run started (it was rebuilt?), and its compiled form is not cached; run again"
    )]
    Changed {
        /// The component.
        path: PathBuf,
    },
}

/// How to size the engine.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RuntimeConfig {
    /// Instances alive at once (the executor's concurrency): sizes the pool.
    pub max_instances: u32,
    /// The largest memory limit of any op.
    pub max_memory_bytes: u64,
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// The wasm stack of every step (the largest any op needs).
    pub max_wasm_stack_bytes: u64,
    /// Whether any op has a `fuel` limit. Metering costs every op some speed,
    /// so the engine counts fuel only when a job asks for it.
    pub enable_fuel: bool,
    /// Compile without Cranelift's optimizations: a large component (an
    /// interpreter) compiles several times faster and runs slower. For the
    /// edit loop; compiled forms are cached apart from optimized ones.
    pub fast_compile: bool,
}

/// A compiled op, ready to instantiate once per step. Cheap to clone.
#[derive(Clone)]
pub struct OpComponent {
    /// Pre-instantiated, with its `run` export for the version of the world
    /// it was built for.
    run: call::RunExport,
    /// SHA-256 of the component file.
    pub hash: String,
}

/// One named input value of a step.
#[derive(Debug, Clone)]
pub enum InputData {
    /// A single value.
    Single(Arc<[u8]>),
    /// Collected elements (keys relative to the collecting op) and tolerated failures.
    Collected {
        /// Successful elements, in emission order (key strings, value
        /// bytes), packed and lowered into the guest straight from there.
        items: CollectedItems,
        /// Failed elements the collect tolerates.
        failed: Vec<(KeyPath, OpFailure)>,
    },
}

/// Everything one step call needs besides the component and policy. Borrowed:
/// the executor keeps the strings per worker thread, so a call copies nothing
/// and touches no reference count another thread also touches.
#[derive(Debug, Clone, Copy)]
pub struct StepCall<'a> {
    /// The run's id.
    pub run_id: &'a str,
    /// The op's name.
    pub op: &'a Arc<str>,
    /// The step's mapping keys, outermost first.
    pub keys: &'a [MappingKey],
    /// The op's config as JSON.
    pub config_json: &'a str,
    /// The names of the op's inputs, in the order of the values passed to
    /// [`Runtime::run_step`].
    pub input_names: &'a [String],
}

/// Per-step accounting.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepStats {
    /// Wall time from instantiation to return.
    pub wall: Duration,
    /// Peak linear memory and tables of the instance.
    pub peak_memory_bytes: u64,
    /// Items emitted.
    pub emitted_items: u64,
    /// Bytes emitted.
    pub emitted_bytes: u64,
    /// Bytes returned.
    pub output_bytes: u64,
    /// Instructions used, when the op has a `fuel` limit.
    pub fuel_used: Option<u64>,
    /// Outgoing HTTP requests made (allowed ones).
    pub http_requests: u64,
    /// Request body bytes sent.
    pub http_sent_bytes: u64,
    /// Response body bytes received.
    pub http_received_bytes: u64,
    /// Time the step was ready but waited for `max_concurrent` or a
    /// resource (set by the coordinator, which does the waiting).
    pub waited: Duration,
    /// Microseconds of `wall` spent making the step's fresh store and
    /// instance (WASI context, linking, memory image, the component's start
    /// code): where a large
    /// interpreter's per-key time goes, next to `run` itself. (Microseconds
    /// in a `u32`, not `Duration`s: every finished step carries these, and
    /// the event that does is kept small.)
    pub instantiate_us: u32,
    /// Microseconds to tear the instance down after `wall` (its memory
    /// reset for the next step).
    pub teardown_us: u32,
}

/// Whole microseconds, saturating (71 minutes).
pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// What a step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The op's return value, or why the step failed. Empty when
    /// [`StepReport::no_value`].
    pub outcome: Result<Vec<u8>, OpFailure>,
    /// The op returned "no value" (`none`, WIT 0.2.0) on a result declared
    /// optional: the ops that read it are skipped.
    pub no_value: bool,
    /// Metadata the op attached to its result, as a JSON array.
    pub metadata: Option<Box<str>>,
    /// The op's named plain outputs, in the order of the policy's
    /// `plain_outputs` (empty when it declares none).
    pub outputs: Vec<NamedValue>,
    /// Captured stdout, cut at the log limit.
    pub stdout: String,
    /// Captured stderr, cut at the log limit.
    pub stderr: String,
    /// Messages from `host.log`, cut at the log limit.
    pub log: String,
    /// Accounting.
    pub stats: StepStats,
}

/// One named plain output of a step (WIT 0.2.0 `set-output`).
#[derive(Debug, Clone, Default)]
pub struct NamedValue {
    /// The output's name.
    pub name: String,
    /// Its value; `None` if the op did not set it.
    pub value: Option<Vec<u8>>,
    /// Its metadata, a JSON array.
    pub metadata: Option<Box<str>>,
}

impl StepReport {
    /// A step that failed before or outside its call into wasm.
    pub fn failed(failure: OpFailure) -> Self {
        Self {
            outcome: Err(failure),
            no_value: false,
            metadata: None,
            outputs: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            log: String::new(),
            stats: StepStats::default(),
        }
    }
}

/// The engine, linker and epoch ticker shared by every step of a process.
pub struct Runtime {
    engine: Engine,
    /// Set once the run is interrupted: running steps stop at their next
    /// epoch tick (or, blocked in WASI, within 50 ms: see `bounded`).
    interrupted: Arc<AtomicBool>,
    linker: Linker<StepState>,
    cache: Option<cache::CompileCache>,
    /// Compiled functions, reused when a changed component is compiled.
    functions: Option<Arc<functions::FunctionCache>>,
    ticker: Option<EpochTicker>,
    fuel_enabled: bool,
    /// The wasm stack every step may use, on its thread's native stack.
    wasm_stack: u64,
    /// Mount directories, opened once.
    mounts: sandbox::Mounts,
}

impl Runtime {
    /// Configures the engine: component model, epoch interruption for
    /// timeouts, and a pooling allocator sized for `max_instances`.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] if wasmtime rejects the configuration.
    pub fn new(config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine {
            reason: e.to_string(),
        };
        let mut wasm = Config::new();
        let wasm_stack = usize::try_from(config.max_wasm_stack_bytes).unwrap_or(usize::MAX);
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(wasm_stack)
            // Steps are synchronous calls on the worker's own stack (see
            // `native_stack_bytes`); wasmtime still wants the async stack at
            // least as large as the wasm stack.
            .async_stack_size(wasm_stack.saturating_add(HOST_STACK_BYTES))
            // A runaway recursion has millions of frames; the top ones tell the story.
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32))
            .wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable)
            .consume_fuel(config.enable_fuel);
        if config.fast_compile {
            // Winch, wasmtime's baseline compiler: one pass, no
            // optimisation; an 18 MB Python component compiles in 1.7-2.0 s
            // instead of 5.5-6.3 s (Cranelift without optimisations barely
            // helps: most of the time is not in the optimiser).
            wasm.strategy(wasmtime::Strategy::Winch);
            // Winch still compiles every trampoline (and a componentize-py
            // component has thousands, between its ~40 core modules) with
            // Cranelift: a third of the compile. They are a few
            // instructions each; compile them in one pass.
            wasm.cranelift_opt_level(wasmtime::OptLevel::None)
                .cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
        }
        // Cranelift's per-function cache, beside the compiled components:
        // after an edit only the functions that changed are compiled again.
        // (Winch has no such cache; it is fast enough without.)
        let functions = match &config.cache_dir {
            Some(dir) if !config.fast_compile => {
                let functions = Arc::new(functions::FunctionCache::new(dir));
                wasm.enable_incremental_compilation(functions.clone())
                    .map_err(engine_error)?;
                Some(functions)
            }
            _ => None,
        };
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(config)));
        let engine = Engine::new(&wasm).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        bounded::add_to_linker(&mut linker).map_err(engine_error)?;
        host::add_to_linker(&mut linker).map_err(engine_error)?;
        // Always linked, so any op can import it; each request is refused
        // unless the op's policy allows its destination.
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).map_err(engine_error)?;
        let interrupted: Arc<AtomicBool> = Arc::default();
        let ticker = Some(EpochTicker::start(engine.clone(), interrupted.clone()));
        Ok(Self {
            engine,
            interrupted,
            linker,
            cache: config.cache_dir.clone().map(cache::CompileCache::new),
            functions,
            ticker,
            fuel_enabled: config.enable_fuel,
            wasm_stack: config.max_wasm_stack_bytes,
            mounts: sandbox::Mounts::default(),
        })
    }

    /// The native stack a thread that runs this runtime's steps needs (see
    /// [`thread_stack_bytes`]).
    pub fn native_stack_bytes(&self) -> usize {
        thread_stack_bytes(self.wasm_stack)
    }

    /// The run's interruption flag for a step's store to keep: a handle
    /// owned by this thread, so taking one per step counts references on
    /// this thread's cache line, not on the flag's, which every worker
    /// would otherwise write twice a step (a line bounced between cores on
    /// every step of a fan-out).
    fn thread_flag(&self) -> Arc<bounded::RunFlag> {
        thread_local! {
            static FLAG: std::cell::RefCell<Option<Arc<bounded::RunFlag>>> =
                const { std::cell::RefCell::new(None) };
        }
        FLAG.with(|cached| {
            let mut cached = cached.borrow_mut();
            match &*cached {
                Some(flag) if Arc::ptr_eq(&flag.0, &self.interrupted) => flag.clone(),
                _ => {
                    let flag = Arc::new(bounded::RunFlag(self.interrupted.clone()));
                    *cached = Some(flag.clone());
                    flag
                }
            }
        })
    }

    /// A handle that interrupts every running and later step when set (a
    /// signal handler holds it). Steps stop with kind `interrupted`.
    pub fn interrupter(&self) -> Arc<AtomicBool> {
        self.interrupted.clone()
    }

    /// Compiles (or loads from the cache) the component at `path` and checks
    /// that it implements the dynhost world.
    ///
    /// # Errors
    /// [`RuntimeError::Load`] for an unreadable or invalid file,
    /// [`RuntimeError::WrongWorld`] naming the import or export that is wrong.
    pub fn load(&self, path: &Path) -> Result<OpComponent, RuntimeError> {
        self.load_with(path, &mut |_| {})
    }

    /// Whether the component at `path` is in the compile cache for this
    /// runtime's engine, so loading it would not compile. False without a
    /// cache or when the file cannot be read. Reads and hashes the file.
    pub fn is_cached(&self, path: &Path) -> bool {
        let (Some(cache), Ok(bytes)) = (&self.cache, std::fs::read(path)) else {
            return false;
        };
        cache.contains(&self.engine, &cache::component_hash(&bytes))
    }

    /// [`Runtime::load`], calling `on_compile` just before a component is
    /// compiled (not when it comes from the compile cache) and when it is
    /// done: compiling a large component takes seconds, and users should see
    /// why.
    ///
    /// # Errors
    /// As [`Runtime::load`].
    pub fn load_with(
        &self,
        path: &Path,
        on_compile: &mut dyn FnMut(Compiling<'_>),
    ) -> Result<OpComponent, RuntimeError> {
        let load_error = |reason: String| RuntimeError::Load {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        let hash = cache::component_hash(&bytes);
        if let Some(reason) = not_a_component(&bytes) {
            return Err(RuntimeError::NotAComponent {
                path: path.to_owned(),
                reason,
            });
        }
        let started = std::cell::Cell::new(None);
        let mut before_compile = || {
            started.set(Some(std::time::Instant::now()));
            on_compile(Compiling::Started {
                path,
                size: bytes.len(),
            });
        };
        let component = match &self.cache {
            Some(cache) => cache.load(&self.engine, &hash, &bytes, before_compile),
            None => {
                before_compile();
                Component::new(&self.engine, &bytes)
            }
        };
        let reused = self.functions.as_ref().map(|functions| {
            functions.flush();
            functions.take_counts()
        });
        let component = component.map_err(|e| load_error(error_chain(&e)))?;
        if let Some(at) = started.get() {
            let (reused, functions) = reused.unwrap_or_default();
            on_compile(Compiling::Done {
                path,
                secs: at.elapsed().as_secs_f64(),
                reused,
                functions,
            });
        }
        self.prepare(path, &component, hash)
    }

    /// The component whose file had SHA-256 `hash` (hex) when a run's plan
    /// was locked: its compiled form from the cache, without reading
    /// `path` (so a worker process runs what the run started with, as the
    /// run's threads do, even if the file was rebuilt since), else `path`
    /// loaded and checked against `hash`.
    ///
    /// # Errors
    /// As [`Runtime::load`], and [`RuntimeError::Changed`] when `path` no
    /// longer holds those bytes.
    pub fn load_locked(&self, path: &Path, hash: &str) -> Result<OpComponent, RuntimeError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.cached(&self.engine, hash))
        {
            return self.prepare(path, &component, hash.to_owned());
        }
        let component = self.load(path)?;
        if component.hash != hash {
            return Err(RuntimeError::Changed {
                path: path.to_owned(),
            });
        }
        Ok(component)
    }

    /// Checks a compiled component against the dynhost world and finds its
    /// `run`.
    fn prepare(
        &self,
        path: &Path,
        component: &Component,
        hash: String,
    ) -> Result<OpComponent, RuntimeError> {
        let version = signature::op_version(&self.engine, component);
        let wrong = |e: wasmtime::Error| RuntimeError::WrongWorld {
            path: path.to_owned(),
            version: version.as_str(),
            reason: error_chain(&e),
        };
        let instance_pre = self.linker.instantiate_pre(component).map_err(wrong)?;
        // bindgen's check that every export of the world is there.
        match version {
            signature::Version::V1 => {
                v1::DynamicOpPre::new(instance_pre.clone()).map_err(wrong)?;
            }
            signature::Version::V2 => {
                v2::DynamicOpPre::new(instance_pre.clone()).map_err(wrong)?;
            }
        }
        let world_error = |reason| RuntimeError::WrongWorld {
            path: path.to_owned(),
            version: version.as_str(),
            reason,
        };
        signature::check_run(&self.engine, component, version).map_err(world_error)?;
        let run = call::RunExport::find(instance_pre, version).ok_or_else(|| {
            world_error(format!(
                "it has no `run` in its `dynhost:op/op@{}` export",
                version.as_str()
            ))
        })?;
        Ok(OpComponent { run, hash })
    }

    /// Runs one step in a fresh store: instantiates the op, calls `run`, and
    /// drops the instance. Never returns `Err`: every failure is in the report.
    pub fn run_step(
        &self,
        op: &OpComponent,
        policy: &SandboxPolicy,
        call: &StepCall<'_>,
        inputs: impl IntoIterator<Item = InputData>,
        sink: Box<dyn EmitSink>,
    ) -> StepReport {
        let limits = &policy.limits;
        let [stdout, stderr, log] = Capture::three(limits.max_log_bytes);
        let start = Instant::now();
        let secrets = match sandbox::secret_values(policy, call.op) {
            Ok(secrets) => secrets,
            Err(failure) => return StepReport::failed(failure),
        };
        let report = |outcome: Result<Vec<u8>, OpFailure>, no_value, metadata, outputs, stats| {
            let redact = |text: String| sandbox::redact(text, &secrets);
            StepReport {
                outcome: outcome.map_err(|mut f| {
                    f.message = redact(std::mem::take(&mut f.message));
                    f
                }),
                no_value,
                metadata,
                outputs,
                stdout: redact(stdout.text()),
                stderr: redact(stderr.text()),
                log: redact(log.text()),
                stats,
            }
        };
        let wasi = match sandbox::wasi_ctx(policy, call, &stdout, &stderr, &secrets) {
            Ok(wasi) => wasi,
            Err(failure) => {
                return report(Err(failure), false, None, Vec::new(), StepStats::default());
            }
        };
        let preopens = match self.mounts.preopens(&policy.mounts) {
            Ok(preopens) => preopens,
            Err(failure) => {
                return report(Err(failure), false, None, Vec::new(), StepStats::default());
            }
        };
        let deadline = start + limits.timeout;
        let state = StepState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit_bytes: limits.memory_bytes,
                current_bytes: 0,
                peak_bytes: 0,
            },
            emits: host::EmitState::new(sink, call.op, policy),
            log: log.clone(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::HttpHooks::new(
                call.op,
                &policy.outbound,
                limits.max_http_requests,
                &log,
            ),
            limit: bounded::StepLimit {
                deadline,
                interrupted: self.thread_flag(),
            },
            preopens,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // wasmtime refuses to copy more than 128 MiB from the guest in one
        // call by default; size that budget from the op's own limits, so
        // every value the limits allow can pass and a larger one fails as
        // `output-limit` (see `failure::classify`), not as a bare trap.
        store.set_hostcall_fuel(hostcall_budget(limits));
        // Look at every tick: stop for an interruption at once, and for the
        // time limit once it has passed on the wall clock (not by counting
        // ticks: a step back from a long blocking call has missed many).
        // The callback reads the deadline and the flag from the step's own
        // state: a closure that captures nothing is boxed without an
        // allocation and takes no reference count per step.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            let limit = &store.data().limit;
            if limit.interrupted.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::new(failure::InterruptedError));
            }
            if Instant::now() >= limit.deadline {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            Ok(wasmtime::UpdateDeadline::Continue(1))
        });
        let metered = self.fuel_enabled;
        if metered {
            // Unmetered ops in a metered engine get all the fuel there is.
            let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        // The epoch deadline stops wasm code that runs too long; a WASI call
        // that waits (a sleep, a poll, a blocking read) is bounded by the
        // state's `limit` (see `bounded`), and one blocked in the kernel (a
        // FIFO) is signalled out of it (see `kick`).
        let watch = kick::watch(deadline);
        let mut instantiate = Duration::ZERO;
        let result = if self.interrupted.load(Ordering::Relaxed) {
            Err(CallError::Interrupted)
        } else {
            call::run(&mut store, &op.run, call, inputs, || {
                instantiate = start.elapsed();
            })
        };
        // One clock read ends the step's wall time and starts its teardown's.
        let ended = Instant::now();
        // A step whose thread had to be signalled out of a blocking file
        // call ran past its time (or its run was interrupted), whatever it
        // did with the error it got.
        let result = match (watch.kicked(), result) {
            (true, _) if self.interrupted.load(Ordering::Relaxed) => Err(CallError::Interrupted),
            (true, _) => Err(CallError::Blocked),
            (false, result) => result,
        };
        drop(watch);
        let fuel_used = match (metered, limits.fuel) {
            (true, Some(budget)) => Some(budget.saturating_sub(store.get_fuel().unwrap_or(0))),
            _ => None,
        };
        let state = store.data_mut();
        let (http_requests, http_sent_bytes, http_received_bytes) = state.http_hooks.totals();
        let over_http_limit = state.http_hooks.over_limit > 0;
        let metadata = state.emits.result_metadata.take();
        let outputs = std::mem::take(&mut state.emits.plain);
        let plain_bytes = state.emits.plain_bytes;
        let unset = policy
            .plain_required
            .iter()
            .zip(&outputs)
            .position(|(required, named)| *required && named.value.is_none());
        let mut no_value = false;
        let mut stats = StepStats {
            wall: ended.saturating_duration_since(start),
            peak_memory_bytes: state.limiter.peak_bytes,
            emitted_items: state.emits.items,
            emitted_bytes: state.emits.bytes,
            output_bytes: 0,
            fuel_used,
            http_requests,
            http_sent_bytes,
            http_received_bytes,
            waited: Duration::ZERO,
            instantiate_us: micros(instantiate),
            teardown_us: 0,
        };
        let sticky = state.emits.failure.take().or_else(|| {
            over_http_limit.then(|| {
                let max = limits.max_http_requests.unwrap_or_default();
                OpFailure::new(
                    FailureKind::OutputLimit,
                    format!(
                        "op `{}` tried more than max_http_requests = {max} HTTP requests in one step; raise `max_http_requests` in the op's `limits` (or `[defaults]`) in job.toml",
                        call.op
                    ),
                )
            })
        });
        // Everything needed is out of the store: tear the instance down
        // (its memory slot is reset for the next step) before judging the
        // result, so `teardown_us` counts only that.
        drop(store);
        stats.teardown_us = micros(ended.elapsed());
        let outcome = match (result, sticky) {
            (_, Some(failure)) => Err(failure),
            (Ok(Ok(_)), None) if unset.is_some() => {
                let name = &policy.plain_outputs[unset.unwrap_or_default()];
                Err(OpFailure::new(
                    FailureKind::OpError,
                    format!(
                        "op `{}` did not set its output `{name}`; set it with `set-output`, or declare `outputs.{name}.required = false` in job.toml",
                        call.op
                    ),
                ))
            }
            (Ok(Ok(None)), None) if policy.result_required => Err(OpFailure::new(
                FailureKind::OpError,
                format!(
                    "op `{}` returned no value (`none`), but its result is required; return a value, or declare `returns = {{ required = false }}` on the op in job.toml",
                    call.op
                ),
            )),
            (Ok(Ok(None)), None) => {
                no_value = true;
                Ok(Vec::new())
            }
            (Ok(Ok(Some(bytes))), None) => {
                stats.output_bytes = bytes.len() as u64 + plain_bytes;
                if stats.emitted_bytes + stats.output_bytes > limits.max_output_bytes {
                    Err(host::output_limit(
                        call.op,
                        "max_output_bytes",
                        limits.max_output_bytes,
                        "bytes",
                    ))
                } else if let Err(reason) = policy.result_type.check(&bytes) {
                    Err(OpFailure::new(
                        FailureKind::TypeCheck,
                        format!(
                            "op `{}` returned a value that {reason}; fix the op or its `returns` type/schema in job.toml",
                            call.op
                        ),
                    ))
                } else {
                    Ok(bytes)
                }
            }
            (Ok(Err(message)), None) => Err(OpFailure::new(FailureKind::OpError, message)),
            (Err(CallError::Run(error)), None) => Err(failure::classify(&error, limits)),
            (Err(CallError::Instantiate(error)), None) => {
                Err(failure::classify_instantiate(&error, limits))
            }
            (Err(CallError::Blocked), None) => Err(failure::timeout(limits)),
            (Err(CallError::Interrupted), None) => Err(failure::interrupted()),
        };
        let outcome = outcome.map_err(|f| failure::with_stderr_hint(f, &stderr.text()));
        let (metadata, outputs) = if outcome.is_ok() {
            (metadata, outputs)
        } else {
            (None, Vec::new())
        };
        report(outcome, no_value, metadata, outputs, stats)
    }
}

/// Bytes the guest may pass to the host in one call: the largest value the
/// limits allow, plus room for the key, output name and result wrapper, and
/// never less than wasmtime's default (so a value somewhat over a limit still
/// reaches the host, which names the exact limit it broke).
fn hostcall_budget(limits: &Limits) -> usize {
    const SLACK: u64 = 1 << 20;
    const WASMTIME_DEFAULT: u64 = 128 << 20;
    let largest = limits.max_value_bytes.max(limits.max_output_bytes);
    let budget = largest.saturating_add(SLACK).max(WASMTIME_DEFAULT);
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// Where a step's call into wasm failed.
enum CallError {
    /// Instantiation failed: the pool is exhausted, or the component's start
    /// code broke a limit.
    Instantiate(wasmtime::Error),
    /// `run` trapped or was interrupted.
    Run(wasmtime::Error),
    /// The time limit passed while the step was blocked in a file call.
    Blocked,
    /// The run was interrupted before the step started, or while it was
    /// blocked in a file call.
    Interrupted,
}

/// Why `bytes` cannot be a component, judged from the 8-byte header: the wasm
/// magic, then version 1 for a core module or a component's layer/version.
fn not_a_component(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 8 || bytes[..4] != *b"\0asm" {
        return Some("the file does not start with the wasm header `\\0asm`; point `component` at a `.wasm` file".into());
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Some("it is a core wasm module; build for `wasm32-wasip2`, or wrap it with `wasm-tools component new`".into());
    }
    None
}

fn error_chain(error: &wasmtime::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Pool sizes: one slot per concurrent instance, with room for components
/// made of many core modules (componentize-py produces dozens).
fn pool(config: &RuntimeConfig) -> PoolingAllocationConfig {
    /// Core instances one component may create (a Python component: ~40).
    const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
    /// Memories and tables one component may create.
    const MEMORIES_PER_COMPONENT: u32 = 4;
    const TABLES_PER_COMPONENT: u32 = 8;
    let instances = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances * MEMORIES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(instances * TABLES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        // Interpreters compiled to wasm have large function tables.
        .table_elements(200_000)
        .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
        // Steps run no fibers (see `bounded`).
        .total_stacks(0);
    // Keeping a few MiB of each slot resident and resetting it in place saves
    // page faults on every instantiation, but only pays off with PAGEMAP_SCAN
    // (Linux >= 6.7), which finds the dirty pages; without it, resetting the
    // resident part costs more than it saves (measured in issue 4).
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);
    } else {
        tracing::info!(
            "PAGEMAP_SCAN is not available (needs Linux 6.7+): instance slots are reset with madvise"
        );
    }
    pool
}

/// What [`Runtime::load_with`] says about a component it compiles (one
/// taken from the compile cache says nothing).
#[derive(Debug, Clone, Copy)]
pub enum Compiling<'a> {
    /// About to compile the component at `path`, `size` bytes.
    Started {
        /// The component file.
        path: &'a Path,
        /// Its size in bytes.
        size: usize,
    },
    /// Compiled in `secs`: `reused` of its `functions` came from the
    /// function cache (both 0 without one).
    Done {
        /// The component file.
        path: &'a Path,
        /// Seconds the compile took.
        secs: f64,
        /// Functions copied from earlier compiles.
        reused: usize,
        /// Functions compiled or copied.
        functions: usize,
    },
}

/// The native stack a thread that runs steps with `wasm_stack` bytes of wasm
/// stack needs: a step runs on its caller's stack, so it holds the wasm stack
/// limit plus wasmtime's and WASI's host frames. A thread with less would
/// overflow its guard page (killing the process) before wasmtime's own stack
/// check could trap the step.
pub fn thread_stack_bytes(wasm_stack: u64) -> usize {
    usize::try_from(wasm_stack)
        .unwrap_or(usize::MAX)
        .saturating_add(2 * HOST_STACK_BYTES)
}

/// Native stack a step needs beyond the wasm stack: wasmtime's and WASI's
/// host frames.
const HOST_STACK_BYTES: usize = 1 << 20;

/// Bytes of each memory and table slot kept resident between instances.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Also kicks steps blocked in a file call past their deadline out of
    /// it (see `kick`), at the same pace.
    fn start(engine: Engine, interrupted: Arc<AtomicBool>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dynhost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    kick::kick_overdue(interrupted.load(Ordering::Relaxed));
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(ticker) = &mut self.ticker {
            ticker.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = ticker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
