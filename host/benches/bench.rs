//! Side-by-side benchmarks for issue 4. Run: `cargo bench -p dynhost --bench bench`.
//!
//! Every figure is a ratio or a pair measured in the same run on the same
//! machine, never an absolute pass/fail time: the machine is shared and noisy.
//! 1. per-key CPU cost: a bare wasmtime loop vs dynhost running a mapped op;
//! 2. fan-out scale: keys/s and peak RSS for 10k, 100k and 1M keys (each in a
//!    fresh process, so peak RSS is that run's own);
//! 3. cold vs warm start: time to the first finished key, compiling vs cached;
//! 4. pipelining: first finished mapped key vs the emitter's total time;
//!
//! and more lines per issue since (typed values, services, the viewer, NATS).

#![expect(unsafe_code, reason = "getrusage for CPU time")]
#![expect(
    clippy::unwrap_used,
    reason = "bench binary: a panic is a failed bench"
)]

use dynhost::exec::{self, RunEvent, RunOptions};
use dynhost::{Plan, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The same allocator as the `dynhost` binary, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bare {
    // The trivial op is built against the first WIT (0.1.0).
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "dynamic-op",
    });
}

/// The same world with an async `run`, for the bare wasmtime-wasi-http host
/// (HTTP waits for I/O, so a host awaits it as dynhost does).
mod bare_async {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "dynamic-op",
        exports: { default: async },
    });
}

fn main() {
    dynhost::allocator::configure();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [cmd, n] = args.as_slice()
        && cmd == "fanout"
    {
        fanout_child(n.parse().unwrap());
        return;
    }
    if let [cmd, n, pad, budget_mib] = args.as_slice()
        && cmd == "spill"
    {
        spill_child(
            n.parse().unwrap(),
            pad.parse().unwrap(),
            budget_mib.parse().unwrap(),
        );
        return;
    }
    let trivial = build_trivial();
    let n: u64 = std::env::var("DYNHOST_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // `bench overhead`: only benchmark 1, to compare changes quickly.
    if args.first().is_some_and(|a| a == "overhead") {
        overhead(&trivial, n);
        return;
    }
    // `bench sandbox`: the sandbox alone next to bare wasmtime, one thread
    // each, rounds alternating (where a per-step cost comes from).
    if args.first().is_some_and(|a| a == "sandbox") {
        sandbox_vs_bare(&trivial, n);
        return;
    }
    // `bench nats`: only the scale-out lines (needs nats-server).
    if args.first().is_some_and(|a| a == "nats") {
        nats(&trivial);
        return;
    }
    // `bench ui`: only the viewer's page times.
    if args.first().is_some_and(|a| a == "ui") {
        ui_pages(&trivial);
        return;
    }
    // `bench services`: resource slots and outgoing HTTP (issue 16).
    if args.first().is_some_and(|a| a == "services") {
        services(&trivial);
        return;
    }
    // `bench seed`: the seed job on generated files next to the trivial fan-out.
    if args.first().is_some_and(|a| a == "seed") {
        seed(&trivial);
        return;
    }
    // `bench polyglot`: one op in three languages (compile, edit, per key).
    if args.first().is_some_and(|a| a == "polyglot") {
        polyglot();
        return;
    }
    // `bench scale`: only the fan-out rows (keys/s, peak RSS).
    if args.first().is_some_and(|a| a == "scale") {
        fanout();
        return;
    }
    // `bench store`: recording to the run store vs no store.
    if args.first().is_some_and(|a| a == "store") {
        store_cost(&trivial, n);
        return;
    }
    // `bench ui`: only the viewer's page times.
    if args.first().is_some_and(|a| a == "ui") {
        ui_pages(&trivial);
        return;
    }
    // `bench typed`: only the typed-values line.
    if args.first().is_some_and(|a| a == "typed") {
        typed(&trivial, n);
        return;
    }
    println!("dynhost benchmarks (cores: {})", cores());
    overhead(&trivial, n);
    fanout();
    spill();
    cold_warm(&trivial);
    pipelining(&trivial);
    typed(&trivial, n);
    store_cost(&trivial, n);
    seed(&trivial);
    services(&trivial);
    ui_pages(&trivial);
    nats(&trivial);
    if std::env::var_os("DYNHOST_SKIP_POLYGLOT").is_none() {
        polyglot();
    }
}

/// Benchmark 10 (issue 15, goal 4): what recording costs. The trivial
/// fan-out with the SQLite run store (a fresh file each round, as a first
/// run has) and without, rounds alternating; CPU of the whole process
/// (the store's threads included) and wall time, the CPU of the store's
/// writer and checkpointer threads alone and the coordinator's in both, and
/// their sum with the coordinator's extra as the store's own share
/// (steadier than the ratio: the workers' share moves with the machine's
/// load).
fn store_cost(trivial: &Path, n: u64) {
    use dynhost::store::{RunRecord, RunStore, SqliteStore};
    const ROUNDS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let plan = job(dir.path(), &fan_job(trivial, n, ""));
    let rt = runtime(&plan, None);
    let components = dynhost::load_components(&rt, &plan).unwrap();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let measure = |recorded: bool| {
        let store_dir = tempfile::tempdir().unwrap();
        let storage = if recorded {
            let mut store = SqliteStore::open(&store_dir.path().join("runs.db")).unwrap();
            store
                .begin_run(&RunRecord {
                    // The id the run records under, as the CLI does: a run
                    // the store did not begin takes the slow path a resume
                    // takes (each step's old items deleted, rows one by one).
                    id: options().run_id,
                    job: "bench".into(),
                    job_file: "job.toml".into(),
                    job_hash: "h".into(),
                    config: "{}".into(),
                    plan: String::new(),
                })
                .unwrap();
            exec::Storage {
                store: Some(Box::new(store)),
                ..exec::Storage::default()
            }
        } else {
            exec::Storage::default()
        };
        let cpu = cpu_time();
        let coordinator = thread_cpu_time();
        let start = Instant::now();
        let result = exec::run(&plan, &rt, &components, &options(), storage, &mut |_| {});
        let wall = start.elapsed();
        let coordinator = thread_cpu_time() - coordinator;
        let cpu = cpu_time() - cpu;
        assert!(result.report.is_success());
        assert!(result.store_error.is_none(), "{:?}", result.store_error);
        // Reading every step back, twice: the first read writes the run's
        // packed steps as rows (a cost moved out of the run, not removed).
        let mut reads = None;
        if let Some(store) = &result.store {
            let run = store.run(&options().run_id).unwrap();
            assert_eq!(
                run.succeeded,
                n + 2,
                "every step recorded under the run begun"
            );
            let read = || {
                let start = Instant::now();
                assert_eq!(store.steps(&options().run_id).unwrap().len() as u64, n + 2);
                start.elapsed().as_secs_f64()
            };
            reads = Some((read(), read()));
        }
        // The checkpointer thread lives as long as the store it serves
        // (this round's; earlier rounds' stores are gone).
        let checkpointer = result
            .store
            .as_ref()
            .map_or(0.0, |_| per(threads_cpu("dynhost-checkpo")));
        let writer = result.recorder.and_then(|r| r.cpu).map_or(0.0, per);
        (
            per(cpu),
            wall.as_secs_f64(),
            writer + checkpointer,
            per(coordinator),
            reads,
        )
    };
    println!("\n10. recording, N = {n}, {ROUNDS} rounds of no store then store (fresh store file)");
    let mut cpu_ratios = Vec::new();
    let mut wall_ratios = Vec::new();
    let mut writer_shares = Vec::new();
    let mut own_shares = Vec::new();
    for round in 1..=ROUNDS {
        let (bare_cpu, bare_wall, _, bare_coordinator, _) = measure(false);
        let (store_cpu, store_wall, writer_cpu, store_coordinator, reads) = measure(true);
        let (first_read, second_read) = reads.unwrap_or_default();
        // What the store itself took: its threads and the coordinator's
        // extra work, against the whole run without it. Steadier than the
        // ratios (the workers' CPU moves with the machine's load), but
        // blind to what recording costs the workers (caches, memory).
        let own = writer_cpu + (store_coordinator - bare_coordinator).max(0.0);
        println!(
            "   round {round}: no store {bare_cpu:.1} us/key CPU, {bare_wall:.2} s wall; \
             store {store_cpu:.1} us/key, {store_wall:.2} s; ratio CPU {:.2}, wall {:.2}; \
             writer and checkpointer threads {writer_cpu:.1} us/key, coordinator \
             {bare_coordinator:.1} -> {store_coordinator:.1}; the store's own {own:.1} us/key \
             ({:.0}%); after the run, reading every step: first {first_read:.2} s \
             (unpacks packed steps), again {second_read:.2} s",
            store_cpu / bare_cpu,
            store_wall / bare_wall,
            own / bare_cpu * 100.0
        );
        cpu_ratios.push(store_cpu / bare_cpu);
        wall_ratios.push(store_wall / bare_wall);
        writer_shares.push(writer_cpu);
        own_shares.push(own / bare_cpu);
    }
    for v in [
        &mut cpu_ratios,
        &mut wall_ratios,
        &mut writer_shares,
        &mut own_shares,
    ] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "   store/no store, median round: CPU {:.2}, wall {:.2}   (goal <= 1.15); \
         the store's writer and checkpointer threads: {:.1} us/key; the store's own CPU \
         (those and the coordinator's extra) {:.0}% of the run without it",
        cpu_ratios[ROUNDS / 2],
        wall_ratios[ROUNDS / 2],
        writer_shares[ROUNDS / 2],
        own_shares[ROUNDS / 2] * 100.0
    );
}

/// CPU time of this process's threads whose name starts with `prefix`
/// (Linux: `/proc/self/task/*/comm` and `schedstat`; zero elsewhere).
fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = Duration::ZERO;
    for task in tasks.flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with(prefix));
        let nanos = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok());
        if let (true, Some(nanos)) = (named, nanos) {
            total += Duration::from_nanos(nanos);
        }
    }
    total
}

/// Typed values (issue 12): the same fan-out with the emitter's items
/// undeclared and declared `json` with a schema, rounds alternating; the
/// check runs on the worker for every item.
fn typed(trivial: &Path, n: u64) {
    const ROUNDS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let plain = job(dir.path(), &fan_job(trivial, n, ""));
    let typed_dir = tempfile::tempdir().unwrap();
    let declared = fan_job(trivial, n, "").replace(
        "[ops.work]",
        "outputs.result = { type = \"json\", schema = { type = \"integer\", minimum = 0 } }\n[ops.work]",
    );
    let typed_plan = job(typed_dir.path(), &declared);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let cpu = |plan: &Plan| {
        let rt = runtime(plan, None);
        let components = dynhost::load_components(&rt, plan).unwrap();
        let before = cpu_time();
        let report = exec::run(
            plan,
            &rt,
            &components,
            &options(),
            exec::Storage::default(),
            &mut |_| {},
        );
        assert!(report.report.is_success());
        cpu_time() - before
    };
    println!("\n6. typed values: N = {n} items, undeclared vs `json` + schema, {ROUNDS} rounds");
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let untyped = per(cpu(&plain));
        let typed = per(cpu(&typed_plan));
        println!("   round {round}: undeclared {untyped:.1} us/key, typed {typed:.1} us/key");
        ratios.push(typed / untyped);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "   ratio typed/undeclared, median round {:>6.2}",
        ratios[ROUNDS / 2]
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn build_trivial() -> PathBuf {
    build_guest("trivial")
}

/// Builds a test guest of `tests/guests` and returns its component.
fn build_guest(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
            "--target-dir",
        ])
        .arg(root().join("target/guests"))
        .current_dir(root().join("tests/guests"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "building the {name} guest failed");
    root().join(format!("target/guests/wasm32-wasip2/release/{name}.wasm"))
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// [`cpu_time`] plus that of the child processes that ended and were
/// waited for (`run --processes`' workers, once the run is over).
fn cpu_time_with_children() -> Duration {
    rusage(libc::RUSAGE_SELF) + rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; both `who`s used are valid.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time of the calling thread: in `exec::run`, the coordinator's.
fn thread_cpu_time() -> Duration {
    let mut ts = std::mem::MaybeUninit::<libc::timespec>::zeroed();
    // SAFETY: clock_gettime fills the struct it is given; the clock id is valid on Linux.
    let ts = unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, ts.as_mut_ptr());
        ts.assume_init()
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn job(dir: &Path, toml: &str) -> Plan {
    let path = dir.join("job.toml");
    std::fs::write(&path, toml).unwrap();
    dynhost::load_plan(&path).unwrap()
}

fn fan_job(trivial: &Path, n: u64, extra_emit_config: &str) -> String {
    let c = trivial.display();
    format!(
        r#"name = "bench"
[defaults]
max_emits = {max}
[ops.emit]
component = "{c}"
dynamic = true
config = {{ emit = {n}{extra_emit_config} }}
[ops.work]
component = "{c}"
inputs.v = {{ map = "emit" }}
[ops.all]
component = "{c}"
inputs.vs = {{ collect = "work" }}
"#,
        max = n.max(1)
    )
}

fn runtime(plan: &Plan, cache_dir: Option<PathBuf>) -> Runtime {
    runtime_with(plan, cache_dir, false)
}

/// [`runtime`], optionally compiling without optimizations (`--fast-compile`).
fn runtime_with(plan: &Plan, cache_dir: Option<PathBuf>, fast_compile: bool) -> Runtime {
    Runtime::new(&runtime_config(plan, cache_dir, fast_compile)).unwrap()
}

fn runtime_config(plan: &Plan, cache_dir: Option<PathBuf>, fast_compile: bool) -> RuntimeConfig {
    RuntimeConfig {
        max_instances: cores() as u32,
        max_memory_bytes: plan.max_memory_bytes(),
        cache_dir,
        max_wasm_stack_bytes: plan.stack_bytes(),
        enable_fuel: false,
        fast_compile,
    }
}

fn options() -> RunOptions {
    RunOptions {
        run_id: "bench".into(),
        max_concurrent: cores(),
        memory_budget_bytes: exec::DEFAULT_MEMORY_BUDGET,
        interrupt: None,
        shared_limits: None,
    }
}

/// Benchmark 1: the same trivial component N times, by a bare wasmtime loop
/// (pooling, keep-resident with PAGEMAP_SCAN, epoch deadline, fresh store per
/// call) and by dynhost as a mapped op (scheduling, sandbox, accounting).
fn overhead(trivial: &Path, n: u64) {
    /// Rounds of (bare, dynhost) measured back to back. The machine is shared
    /// and its speed drifts over seconds; pairing the two in each round and
    /// taking the median round keeps a slow stretch from landing on one side
    /// only. The ratio compares like with like: dynhost runs one worker per
    /// core, so the bare loop does too (on this VM two busy vCPUs sometimes
    /// slow each other down by ~40%, which a one-thread loop never sees; its
    /// figure is printed as well).
    const ROUNDS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let plan = job(dir.path(), &fan_job(trivial, n, ""));
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "\n1. per-key CPU cost, N = {n}, {ROUNDS} rounds of bare then dynhost ({} workers)",
        cores()
    );
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let bare_one = bare_loop(trivial, n, 1);
        let bare_cpu = bare_loop(trivial, n, cores());
        let rt = runtime(&plan, None);
        let components = dynhost::load_components(&rt, &plan).unwrap();
        let before = cpu_time();
        let coordinator_before = thread_cpu_time();
        let report = exec::run(
            &plan,
            &rt,
            &components,
            &options(),
            exec::Storage::default(),
            &mut |_| {},
        );
        let coordinator = thread_cpu_time() - coordinator_before;
        let dyn_cpu = cpu_time() - before;
        assert!(report.report.is_success());
        let busy = |name: &str| {
            report
                .report
                .ops
                .iter()
                .find(|o| o.op == name)
                .map_or(0.0, |o| o.busy.as_secs_f64() * 1e6 / n as f64)
        };
        let ratio = per(dyn_cpu) / per(bare_cpu);
        println!(
            "   round {round}: bare {:.1} us/key on 1 thread, {:.1} on {}; dynhost {:.1} us/key \
             (coordinator {:.1}, workers {:.1}; step wall per key: emit {:.1}, work {:.1}, \
             collect {:.1}); ratio {ratio:.2} (vs 1 thread {:.2})",
            per(bare_one),
            per(bare_cpu),
            cores(),
            per(dyn_cpu),
            per(coordinator),
            per(dyn_cpu - coordinator),
            busy("emit"),
            busy("work"),
            busy("all"),
            per(dyn_cpu) / per(bare_one),
        );
        rounds.push(ratio);
    }
    // Its own runtime, so neither measurement warms the other's pool.
    let sandbox_cpu = {
        let rt = runtime(&plan, None);
        let components = dynhost::load_components(&rt, &plan).unwrap();
        sandbox_loop(&plan, &rt, &components, n)
    };
    println!(
        "   dynhost sandbox only (Runtime::run_step in a loop, no executor): {:.1} us/key",
        per(sandbox_cpu)
    );
    rounds.sort_by(f64::total_cmp);
    println!(
        "   ratio dynhost/bare, median round {:>6.2}   (target <= 1.5; issue 15 goal 6: <= 1.2)",
        rounds[ROUNDS / 2]
    );
}

/// `Runtime::run_step` in a loop against the bare loop, both on one thread,
/// rounds alternating; prints the median ratio.
fn sandbox_vs_bare(trivial: &Path, n: u64) {
    const ROUNDS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let plan = job(dir.path(), &fan_job(trivial, n, ""));
    let rt = runtime(&plan, None);
    let components = dynhost::load_components(&rt, &plan).unwrap();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let bare = per(bare_loop(trivial, n, 1));
        let sandbox = per(sandbox_loop(&plan, &rt, &components, n));
        println!(
            "   round {round}: bare {bare:.1} us/key, sandbox {sandbox:.1}; ratio {:.2}",
            sandbox / bare
        );
        ratios.push(sandbox / bare);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "   ratio sandbox/bare (one thread), median round {:.2}",
        ratios[ROUNDS / 2]
    );
}

/// dynhost's sandbox without the executor: `Runtime::run_step` on the mapped
/// op N times from one thread, to tell the sandbox's cost from scheduling's.
fn sandbox_loop(
    plan: &Plan,
    rt: &Runtime,
    components: &[dynhost::OpComponent],
    n: u64,
) -> Duration {
    use dynhost::runtime::{EmitSink, InputData, StepCall};
    struct Discard;
    impl EmitSink for Discard {
        fn emit(
            &mut self,
            _output: usize,
            _key: dynhost::MappingKey,
            _value: Vec<u8>,
            _metadata: Option<Box<str>>,
        ) -> Duration {
            Duration::ZERO
        }
    }
    let work = plan.op_id("work").unwrap();
    let op = &plan.ops[work];
    let name: std::sync::Arc<str> = std::sync::Arc::from(op.name.as_str());
    let names = vec!["v".to_owned()];
    let before = cpu_time();
    for i in 0..n {
        let keys = [dynhost::MappingKey::parse(&format!("k{i}")).unwrap()];
        let call = StepCall {
            run_id: "bench",
            op: &name,
            keys: &keys,
            config_json: "{}",
            input_names: &names,
        };
        let input = InputData::Single(std::sync::Arc::from(i.to_string().into_bytes()));
        let report = rt.run_step(
            &components[work],
            &op.policy,
            &call,
            [input],
            Box::new(Discard),
        );
        assert!(report.outcome.is_ok());
    }
    cpu_time() - before
}

struct BareState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for BareState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The bare hosts' `dynhost:op/host`: emits and logs go nowhere.
macro_rules! discard_host {
    ($bindings:ident, $state:ty) => {
        impl $bindings::dynhost::op::types::Host for $state {}

        impl $bindings::dynhost::op::host::Host for $state {
            fn emit_dynamic(&mut self, _key: String, _value: Vec<u8>) -> Result<(), String> {
                Ok(())
            }
            fn emit_dynamic_to(
                &mut self,
                _output: String,
                _key: String,
                _value: Vec<u8>,
            ) -> Result<(), String> {
                Ok(())
            }
            fn log(&mut self, _level: $bindings::dynhost::op::types::Level, _message: String) {}
        }
    };
}

discard_host!(bare, BareState);

/// The bare baseline: `threads` threads (one per core, as dynhost's workers)
/// share one engine and `InstancePre` and each instantiate and call the op in
/// a loop, N calls in all. Returns the process CPU time they used.
fn bare_loop(trivial: &Path, n: u64, threads: usize) -> Duration {
    use wasmtime::component::{Component, HasSelf, Linker};
    let engine = bare_engine(threads);
    let mut linker = Linker::<BareState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    bare::DynamicOp::add_to_linker::<BareState, HasSelf<BareState>>(&mut linker, |s| s).unwrap();
    let component = Component::from_file(&engine, trivial).unwrap();
    let pre = bare::DynamicOpPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let threads = threads.max(1) as u64;
    let before = cpu_time();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (engine, pre) = (&engine, &pre);
            scope.spawn(move || {
                for i in (t..n).step_by(threads as usize) {
                    let state = BareState {
                        wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
                        table: wasmtime::component::ResourceTable::new(),
                    };
                    let mut store = wasmtime::Store::new(engine, state);
                    store.set_epoch_deadline(1_000);
                    let instance = pre.instantiate(&mut store).unwrap();
                    let ctx = bare::exports::dynhost::op::op::Context {
                        run_id: "bench".into(),
                        op: "work".into(),
                        keys: vec![format!("k{i}")],
                        config: "{}".into(),
                    };
                    let input = bare::dynhost::op::types::Input {
                        name: "v".into(),
                        value: bare::dynhost::op::types::InputValue::Single(
                            i.to_string().into_bytes(),
                        ),
                    };
                    instance
                        .dynhost_op_op()
                        .call_run(&mut store, &ctx, &[input])
                        .unwrap()
                        .unwrap();
                }
            });
        }
    });
    cpu_time() - before
}

/// The bare baselines' engine: pooling with `threads` + 2 slots, memory kept
/// resident with PAGEMAP_SCAN when the kernel has it, epoch interruption:
/// what dynhost's runtime sets, without dynhost.
fn bare_engine(threads: usize) -> wasmtime::Engine {
    let slots = u32::try_from(threads).unwrap() + 2;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(16 * slots)
        .total_memories(2 * slots)
        .total_tables(4 * slots);
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(4 << 20);
    }
    let mut config = wasmtime::Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    wasmtime::Engine::new(&config).unwrap()
}

/// Benchmark 2: fan-out scale, each N in its own process.
fn fanout() {
    println!(
        "\n2. fan-out scale (emit N -> map -> collect, trivial ops, {} workers)",
        cores()
    );
    println!("   {:>9}  {:>12}  {:>14}", "keys", "keys/s", "peak RSS MiB");
    let mut sizes = vec![10_000u64, 100_000, 1_000_000];
    // Issue 15 goal 7; opt-in: ~2 minutes and ~5 GiB today.
    if std::env::var_os("DYNHOST_BENCH_10M").is_some() {
        sizes.push(10_000_000);
    }
    for n in sizes {
        child_row(&["fanout".into(), n.to_string()]);
    }
    println!("   (targets at 1,000,000: >= 100,000 keys/s, peak RSS <= 1024 MiB;");
    println!("    at 10,000,000 (DYNHOST_BENCH_10M=1): peak RSS <= 2048 MiB)");
}

fn fanout_child(n: u64) {
    let trivial = root().join("target/guests/wasm32-wasip2/release/trivial.wasm");
    let dir = tempfile::tempdir().unwrap();
    // The collect's list of N items must fit in its linear memory.
    let mib = (n / 4096).max(256);
    let toml = fan_job(&trivial, n, "").replace(
        "inputs.vs = { collect = \"work\" }",
        &format!("inputs.vs = {{ collect = \"work\" }}\nlimits.memory_mib = {mib}"),
    );
    let plan = job(dir.path(), &toml);
    let (_, elapsed) = timed_run(&plan, &options());
    let rss = dynhost::report::peak_rss_bytes().unwrap_or(0);
    println!(
        "   {n:>9}  {:>12.0}  {:>14.0}",
        n as f64 / elapsed.as_secs_f64(),
        rss as f64 / f64::from(1u32 << 20)
    );
}

/// Benchmark 2b: values larger than the memory budget. 100,000 keys with
/// 4 KiB items (400 MB of values) mapped to 8-byte results and collected,
/// once with every value in memory and once with a 64 MiB budget (the rest
/// spilled to disk), each in a fresh process.
fn spill() {
    const KEYS: u64 = 100_000;
    const PAD: u64 = 4096;
    println!("\n2b. values past the memory budget ({KEYS} keys, {PAD}-byte items, 8-byte results)");
    println!(
        "   {:>14}  {:>12}  {:>14}  {:>12}",
        "budget", "keys/s", "peak RSS MiB", "spilled MiB"
    );
    for budget in [u64::MAX >> 20, 64] {
        child_row(&[
            "spill".into(),
            KEYS.to_string(),
            PAD.to_string(),
            budget.to_string(),
        ]);
    }
}

/// Runs this bench binary with `args` in a fresh process (so its peak RSS is
/// that run's own) and prints the row it prints, or why it failed.
fn child_row(args: &[String]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        println!("{}", String::from_utf8_lossy(&out.stdout).trim_end());
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "   {} failed: {}",
            args.join(" "),
            stderr.lines().last().unwrap_or("")
        );
    }
}

/// Runs `plan` once with `options`, checks that it succeeded, and returns
/// its report and wall time (from the start of the run, components loaded).
fn timed_run(plan: &Plan, options: &RunOptions) -> (dynhost::RunReport, Duration) {
    let rt = runtime(plan, None);
    let components = dynhost::load_components(&rt, plan).unwrap();
    let start = Instant::now();
    let result = exec::run(
        plan,
        &rt,
        &components,
        options,
        exec::Storage::default(),
        &mut |_| {},
    );
    let elapsed = start.elapsed();
    assert!(result.report.is_success(), "{:?}", result.report.ops);
    (result.report, elapsed)
}

fn spill_child(n: u64, pad: u64, budget_mib: u64) {
    let trivial = root().join("target/guests/wasm32-wasip2/release/trivial.wasm");
    let dir = tempfile::tempdir().unwrap();
    let c = trivial.display();
    let toml = format!(
        r#"name = "spill"
[defaults]
max_emits = {n}
max_output_bytes = {total}
[ops.emit]
component = "{c}"
dynamic = true
config = {{ emit = {n}, pad = {pad} }}
[ops.work]
component = "{c}"
config = {{ keep = 8 }}
inputs.v = {{ map = "emit" }}
[ops.all]
component = "{c}"
inputs.vs = {{ collect = "work" }}
"#,
        total = n * (pad + 16)
    );
    let plan = job(dir.path(), &toml);
    let mut options = options();
    options.memory_budget_bytes = budget_mib.saturating_mul(1 << 20);
    let (report, elapsed) = timed_run(&plan, &options);
    let rss = dynhost::report::peak_rss_bytes().unwrap_or(0);
    let label = if budget_mib >= u64::MAX >> 20 {
        "none".to_owned()
    } else {
        format!("{budget_mib} MiB")
    };
    println!(
        "   {label:>14}  {:>12.0}  {:>14.0}  {:>12.0}",
        n as f64 / elapsed.as_secs_f64(),
        rss as f64 / f64::from(1u32 << 20),
        report.spilled_bytes as f64 / f64::from(1u32 << 20)
    );
}

/// Time from the start of a run (including loading components) to the first
/// finished mapped key.
fn first_key(trivial: &Path, cache: &Path) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let plan = job(dir.path(), &fan_job(trivial, 100, ""));
    let start = Instant::now();
    let rt = runtime(&plan, Some(cache.to_path_buf()));
    let components = dynhost::load_components(&rt, &plan).unwrap();
    let mut first = None;
    exec::run(
        &plan,
        &rt,
        &components,
        &options(),
        exec::Storage::default(),
        &mut |event| {
            if let RunEvent::StepFinished { op: "work", .. } = event {
                first.get_or_insert_with(|| start.elapsed());
            }
        },
    );
    first.unwrap()
}

/// Benchmark 3: cold (compiles) vs warm (compile cache) start.
fn cold_warm(trivial: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let cold = first_key(trivial, cache.path());
    let warm = first_key(trivial, cache.path());
    println!("\n3. time to the first finished key (trivial Rust op)");
    println!(
        "   cold (compile)         {:>8.1} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "   warm (cache)           {:>8.1} ms",
        warm.as_secs_f64() * 1e3
    );
    println!(
        "   ratio cold/warm        {:>8.1}",
        cold.as_secs_f64() / warm.as_secs_f64()
    );
}

/// Benchmark 4: an emitter emits 10,000 keys slowly (100 us apart); when does
/// the first mapped key finish, compared with the emitter's own run time?
fn pipelining(trivial: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let plan = job(dir.path(), &fan_job(trivial, 10_000, ", sleep_us = 100"));
    let rt = runtime(&plan, None);
    let components = dynhost::load_components(&rt, &plan).unwrap();
    let start = Instant::now();
    let (mut emit_started, mut first, mut emit_done) = (None, None, None);
    exec::run(
        &plan,
        &rt,
        &components,
        &options(),
        exec::Storage::default(),
        &mut |event| match event {
            RunEvent::StepStarted { op: "emit", .. } => emit_started = Some(start.elapsed()),
            RunEvent::StepFinished { op: "work", .. } => {
                first.get_or_insert_with(|| start.elapsed());
            }
            RunEvent::StepFinished { op: "emit", .. } => emit_done = Some(start.elapsed()),
            _ => {}
        },
    );
    let (s, f, d) = (emit_started.unwrap(), first.unwrap(), emit_done.unwrap());
    println!("\n4. pipelining: emitter emits 10,000 keys 100 us apart");
    println!(
        "   first mapped key done  {:>8.1} ms after the emitter started",
        (f - s).as_secs_f64() * 1e3
    );
    println!(
        "   emitter finished       {:>8.1} ms after it started",
        (d - s).as_secs_f64() * 1e3
    );
    println!(
        "   ratio first/emitter    {:>8.4}",
        (f - s).as_secs_f64() / (d - s).as_secs_f64()
    );
}

/// Benchmark 5: the same op (`dynhost init`'s template: emit words, then
/// capitalise each in a mapped step) in Rust, Python and JavaScript: compile
/// once (cold), load from the cache (warm), and CPU per mapped key.
fn polyglot() {
    const KEYS: usize = 300;
    println!("\n5. one op in three languages ({KEYS} mapped keys, dynhost init's template)");
    println!(
        "   {:<7} {:>10} {:>10} {:>12} {:>10} {:>10} {:>12} {:>12} {:>12}",
        "lang",
        "size MB",
        "cold ms",
        "warm ms",
        "edit ms",
        "us/key",
        "fast cold ms",
        "fast us/key",
        "procs us/key"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut breakdown = Vec::new();
    for lang in ["rust", "python", "js"] {
        let cli = env!("CARGO_BIN_EXE_dynhost");
        let status = Command::new(cli)
            .args(["init", "--lang", lang, lang])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let project = dir.path().join(lang);
        let built = Command::new(cli)
            .args(["build", "job.toml"])
            // The template's job names `target/...` in the project.
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(&project)
            .output()
            .unwrap();
        if !built.status.success() {
            println!(
                "   {lang:<7} build failed: {}",
                String::from_utf8_lossy(&built.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            continue;
        }
        // The templates read their words from data/words.txt (JavaScript:
        // from `config.words`).
        let words: Vec<String> = (0..KEYS).map(|i| format!("w{i}")).collect();
        std::fs::write(project.join("data/words.txt"), words.join("\n")).ok();
        let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
        let job_toml = std::fs::read_to_string(project.join("job.toml"))
            .unwrap()
            .replace(
                "words = [\"hello\", \"world!\"]",
                &format!("words = [{}]", quoted.join(", ")),
            );
        std::fs::write(project.join("job.toml"), job_toml).unwrap();
        let plan = dynhost::load_plan(&project.join("job.toml")).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let size = std::fs::metadata(&plan.ops[0].component).unwrap().len() as f64 / 1e6;
        let timed_load = || {
            let rt = runtime(&plan, Some(cache.path().to_path_buf()));
            let start = Instant::now();
            let components = dynhost::load_components(&rt, &plan).unwrap();
            (start.elapsed(), rt, components)
        };
        let (cold, _, _) = timed_load();
        let (warm, rt, components) = timed_load();
        // After an edit: new bytes (a custom section appended), so the
        // component cache misses, but the code is the same, so Cranelift's
        // function cache (filled by the cold compile) serves its functions.
        let edited = project.join("edited.wasm");
        let mut bytes = std::fs::read(&plan.ops[0].component).unwrap();
        bytes.extend_from_slice(&[0, 6, 4]);
        bytes.extend_from_slice(b"edit1");
        std::fs::write(&edited, &bytes).unwrap();
        let start = Instant::now();
        rt.load(&edited).unwrap();
        let after_edit = start.elapsed();
        // `--fast-compile`: the same component compiled without
        // optimizations, in its own cache, then its per-key cost.
        let fast_cache = tempfile::tempdir().unwrap();
        let fast_rt = runtime_with(&plan, Some(fast_cache.path().to_path_buf()), true);
        let start = Instant::now();
        let fast_components = dynhost::load_components(&fast_rt, &plan).unwrap();
        let cold_fast = start.elapsed();
        let before = cpu_time();
        exec::run(
            &plan,
            &fast_rt,
            &fast_components,
            &options(),
            exec::Storage::default(),
            &mut |_| {},
        );
        let cpu_fast = cpu_time() - before;
        // Where a mapped key's time goes: instantiating its fresh instance,
        // running it, tearing it down (per op: steps, and the three sums).
        let mut phases: std::collections::HashMap<String, (u32, [Duration; 3])> =
            std::collections::HashMap::new();
        let before = cpu_time();
        let result = exec::run(
            &plan,
            &rt,
            &components,
            &options(),
            exec::Storage::default(),
            &mut |event| {
                if let RunEvent::StepFinished { op, report, .. } = event {
                    let s = &report.stats;
                    let entry = phases.entry(op.to_owned()).or_default();
                    entry.0 += 1;
                    let instantiate = Duration::from_micros(s.instantiate_us.into());
                    entry.1[0] += instantiate;
                    entry.1[1] += s.wall.saturating_sub(instantiate);
                    entry.1[2] += Duration::from_micros(s.teardown_us.into());
                }
            },
        );
        let cpu = cpu_time() - before;
        // The same run with every step in a worker process per core
        // (`run --processes`), children's CPU included.
        let locked = dynhost::plan::lock::lock(&plan, &components).to_json();
        let before = cpu_time_with_children();
        let in_processes = dynhost::procs::run(
            &plan,
            &rt,
            &components,
            &options(),
            exec::Storage::default(),
            &mut |_| {},
            &dynhost::procs::ProcessOptions {
                exe: PathBuf::from(env!("CARGO_BIN_EXE_dynhost")),
                count: cores(),
                ops: vec![true; plan.ops.len()],
                locked_plan: locked,
                runtime: runtime_config(&plan, Some(cache.path().to_path_buf()), false),
            },
        )
        .unwrap();
        let cpu_processes = cpu_time_with_children() - before;
        assert!(
            in_processes.report.is_success(),
            "{lang} in processes: {:?}",
            in_processes.report.ops
        );
        if let Some((op, (steps, [inst, run, down]))) =
            phases.iter().max_by_key(|(_, (steps, _))| *steps)
        {
            let us = |d: &Duration| d.as_secs_f64() * 1e6 / f64::from(*steps);
            breakdown.push(format!(
                "   {lang:<7} `{op}`, {steps} steps: instantiate {:.0} us, run {:.0} us, teardown {:.0} us (wall per step)",
                us(inst),
                us(run),
                us(down)
            ));
        }
        assert!(
            result.report.is_success(),
            "{lang}: {:?}",
            result.report.ops
        );
        println!(
            "   {lang:<7} {size:>10.1} {:>10.0} {:>12.1} {:>10.0} {:>10.0} {:>12.0} {:>12.0} {:>12.0}",
            cold.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            after_edit.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e6 / KEYS as f64,
            cold_fast.as_secs_f64() * 1e3,
            cpu_fast.as_secs_f64() * 1e6 / KEYS as f64,
            cpu_processes.as_secs_f64() * 1e6 / KEYS as f64
        );
    }
    println!("   where a mapped key's time goes (issue 15, goal 2):");
    for line in breakdown {
        println!("{line}");
    }
}

/// A `nats-server -js` for the scale-out lines, stopped when dropped.
struct NatsServer {
    child: std::process::Child,
    url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Option<Self> {
        let store = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _store: store,
        })
    }

    fn options(&self, lease: Duration) -> dynhost::nats::NatsOptions {
        dynhost::nats::NatsOptions {
            url: self.url.clone(),
            creds: None,
            token: None,
            tls_ca: None,
            lease,
        }
    }

    /// `n` `dynhost worker` processes with `slots` steps each.
    fn workers(&self, n: usize, slots: usize, cache: &Path) -> Vec<KillOnDrop> {
        (0..n)
            .map(|i| {
                KillOnDrop(
                    Command::new(env!("CARGO_BIN_EXE_dynhost"))
                        .args(["worker", "--nats", &self.url, "--lease-secs", "2"])
                        .args(["--max-concurrent", &slots.to_string()])
                        .args(["--name", &format!("bench-{i}")])
                        .env("DYNHOST_CACHE_DIR", cache)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run through NATS; returns (wall, this process's CPU: the coordinator's).
fn nats_run(plan: &Plan, nats: &dynhost::nats::NatsOptions) -> (Duration, Duration) {
    let rt = runtime(plan, None);
    let components = dynhost::load_components(&rt, plan).unwrap();
    let locked = dynhost::plan::lock::lock(plan, &components).to_json();
    let cpu = cpu_time();
    let start = Instant::now();
    let result = dynhost::nats::run(
        plan,
        &rt,
        &components,
        &options(),
        exec::Storage::default(),
        &mut |_| {},
        &dynhost::nats::Remote {
            nats,
            locked_plan: &locked,
        },
    )
    .unwrap();
    assert!(result.report.is_success());
    (start.elapsed(), cpu_time() - cpu)
}

/// Benchmark 7 (issue 13): the coordinator's cost per step through NATS and
/// the keys/s one coordinator can feed; throughput with 1, 2 and 3 workers
/// on steps that wait (so two cores do not cap it); and the time from a
/// worker's SIGKILL to its step finishing elsewhere.
fn nats(trivial: &Path) {
    let Some(server) = NatsServer::start() else {
        println!("\n7. NATS scale-out: skipped (no nats-server; tests/toolchains.sh installs it)");
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lease = Duration::from_secs(2);
    println!(
        "\n7. NATS scale-out (nats-server on loopback; workers are `dynhost worker` processes)"
    );
    {
        let n = 3000;
        let plan = job(dir.path(), &fan_job(trivial, n, ""));
        let _workers = server.workers(3, 2, cache.path());
        nats_run(&plan, &server.options(lease)); // warm: workers compile once
        let (wall, cpu) = nats_run(&plan, &server.options(lease));
        let per = cpu.as_secs_f64() * 1e6 / n as f64;
        println!(
            "   coordinator CPU {per:.1} us/key (trivial op, N = {n}, 3 workers x 2): {:.0} keys/s end to end; one coordinator core feeds at most ~{:.0} keys/s",
            n as f64 / wall.as_secs_f64(),
            1e6 / per
        );
    }
    {
        let n = 120;
        let wait_us = 50_000;
        let text = fan_job(trivial, n, "").replace(
            "inputs.v = { map = \"emit\" }",
            &format!("inputs.v = {{ map = \"emit\" }}\nconfig = {{ wait_us = {wait_us} }}"),
        );
        let plan = job(dir.path(), &text);
        let mut base = 0.0;
        let mut line = String::new();
        for workers in 1..=3 {
            let _workers = server.workers(workers, 4, cache.path());
            nats_run(&plan, &server.options(lease));
            let (wall, _) = nats_run(&plan, &server.options(lease));
            let rate = n as f64 / wall.as_secs_f64();
            if workers == 1 {
                base = rate;
            }
            line.push_str(&format!(
                "{workers} worker(s) {rate:.1} keys/s ({:.0}% of linear); ",
                100.0 * rate / (base * workers as f64)
            ));
        }
        println!(
            "   scaling, {n} steps waiting {} ms, 4 slots per worker: {line}",
            wait_us / 1000
        );
    }
    {
        let text = fan_job(trivial, 1, "").replace(
            "inputs.v = { map = \"emit\" }",
            "inputs.v = { map = \"emit\" }\nconfig = { wait_us = 4000000 }",
        );
        let plan = job(dir.path(), &text);
        let mut doomed = server.workers(1, 1, cache.path());
        let options = server.options(lease);
        let handle = std::thread::spawn(move || nats_run(&plan, &options));
        // The step has run for about a second when its worker dies.
        std::thread::sleep(Duration::from_millis(2000));
        let killed = Instant::now();
        doomed.clear();
        let _survivor = server.workers(1, 1, cache.path());
        let _ = handle.join();
        println!(
            "   worker death: {:.1} s from SIGKILL to its 4 s step finishing on another worker (lease {} s, renewed every {:.1} s; ideal: lease + 4 s)",
            killed.elapsed().as_secs_f64(),
            lease.as_secs(),
            lease.as_secs_f64() / 3.0
        );
    }
}

/// The viewer (issue 14): server time per page for a run of 1,000 keys and
/// one of 1,000,000 in the same store, side by side (goal: under 100 ms a
/// page, and flat in the run's size). Steps are written straight into the
/// store (running a million keys is benchmark 2's job).
fn ui_pages(trivial: &Path) {
    use dynhost::store::{RunRecord, RunStatus, RunStore, SqliteStore, StepRecord, StepStatus};
    const LARGE: u64 = 1_000_000;
    const SMALL: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let plan = job(dir.path(), &fan_job(trivial, LARGE, ""));
    let rt = runtime(&plan, None);
    let components = dynhost::load_components(&rt, &plan).unwrap();
    let locked = dynhost::plan::lock::lock(&plan, &components).to_json();
    let db = dir.path().join("store/runs.db");
    let mut store = SqliteStore::open(&db).unwrap();
    let step =
        |op: &str, keys: dynhost::key::KeyPath, position: Option<u32>, failed: bool| StepRecord {
            op: op.into(),
            keys,
            position,
            status: if failed {
                StepStatus::Failed
            } else {
                StepStatus::Succeeded
            },
            attempts: 1,
            wall_secs: 0.0001,
            failure_kind: failed.then(|| "op-error".into()),
            failure_message: failed.then(|| "told to fail".into()),
            peak_memory_bytes: 1 << 20,
            emitted_items: 0,
            emitted_bytes: 0,
            fuel_used: None,
            input_hash: None,
            memo_key: None,
            memoized: false,
            output: Some(std::sync::Arc::from(&b"1"[..])),
            metadata: None,
            no_value: false,
            services: None,
            outputs: Vec::new(),
            items: Vec::new(),
            items_streamed: true,
            stdout: String::new(),
            stderr: String::new(),
            log: String::new(),
            inputs: None,
            executed: true,
        };
    let fill = Instant::now();
    for (id, n) in [("small", SMALL), ("large", LARGE)] {
        store
            .begin_run(&RunRecord {
                id: id.into(),
                job: "bench".into(),
                job_file: "job.toml".into(),
                job_hash: "0".into(),
                config: "{}".into(),
                plan: locked.clone(),
            })
            .unwrap();
        store
            .record(
                id,
                &[dynhost::store::Write::Step(Box::new(step(
                    "emit",
                    Default::default(),
                    None,
                    false,
                )))],
            )
            .unwrap();
        // The emitter's items (the emission order the op page follows).
        for first in (0..n).step_by(20_000) {
            let items = (first..(first + 20_000).min(n))
                .map(|i| dynhost::store::StoredItem {
                    output: "result".into(),
                    key: format!("k{i}"),
                    value: std::sync::Arc::from(&b"1"[..]),
                    metadata: None,
                })
                .collect();
            store
                .record(
                    id,
                    &[dynhost::store::Write::Items(dynhost::store::ItemsRecord {
                        op: "emit".into(),
                        keys: Default::default(),
                        first_seq: first,
                        items,
                    })],
                )
                .unwrap();
        }
        let mut batch = Vec::new();
        for i in 0..n {
            let failed = i % 1000 == 999;
            batch.push(dynhost::store::Write::Step(Box::new(step(
                "work",
                std::iter::once(dynhost::MappingKey::parse(&format!("k{i}")).unwrap()).collect(),
                Some(i as u32),
                failed,
            ))));
            if batch.len() == 20_000 {
                store.record(id, &batch).unwrap();
                batch.clear();
            }
        }
        store.record(id, &batch).unwrap();
        store.finish_run(id, RunStatus::Failed).unwrap();
    }
    drop(store);
    println!(
        "\n9. viewer page times (server + loopback HTTP, median of 15), store filled with {} steps in {:.1} s",
        LARGE + SMALL + 2,
        fill.elapsed().as_secs_f64()
    );
    let store = SqliteStore::open(&db).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        dynhost::ui::serve(
            store,
            "store".into(),
            "127.0.0.1:0".parse().unwrap(),
            |addr| tx.send(addr).unwrap(),
        )
        .unwrap();
    });
    let addr = rx.recv().unwrap();
    let fetch = |path: &str| -> Vec<u8> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{path}");
        reply
    };
    let get = |path: &str| -> Duration {
        let start = Instant::now();
        fetch(path);
        start.elapsed()
    };
    // A new run's steps are stored packed; the first look at an op page
    // writes them out, a slice per visit, answering with its progress.
    for id in ["small", "large"] {
        let start = Instant::now();
        let mut visits = 0;
        let mut slowest = Duration::ZERO;
        loop {
            let visit = Instant::now();
            let page = fetch(&format!("/runs/{id}/ops/work"));
            slowest = slowest.max(visit.elapsed());
            visits += 1;
            if !String::from_utf8_lossy(&page).contains("id=\"preparing\"") {
                break;
            }
        }
        println!(
            "   first look at the {id} run's op page: {:.2} s over {visits} visit(s), \
             slowest answer {:.0} ms (writes out the packed run)",
            start.elapsed().as_secs_f64(),
            slowest.as_secs_f64() * 1e3
        );
    }
    let median = |path: &str| -> f64 {
        let mut times: Vec<f64> = (0..15).map(|_| get(path).as_secs_f64() * 1e3).collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    println!("   page                         {SMALL:>7} keys  {LARGE:>9} keys   ratio");
    let pages: [(&str, &str); 6] = [
        ("run list", "/"),
        ("a run (graph, op counts)", "/runs/{id}"),
        ("an op, first page", "/runs/{id}/ops/work"),
        (
            "an op, page after key 900",
            "/runs/{id}/ops/work?after=900&after_keys=%5B%22k900%22%5D",
        ),
        ("an op, failed only", "/runs/{id}/ops/work?status=failed"),
        ("a step", "/runs/{id}/ops/work/step?keys=%5B%22k999%22%5D"),
    ];
    for (name, path) in pages {
        let small = median(&path.replace("{id}", "small"));
        let large = median(&path.replace("{id}", "large"));
        println!(
            "   {name:<28} {small:>8.2} ms  {large:>9.2} ms   {:>5.2}   (goal < 100 ms)",
            large / small
        );
    }
    let search = median("/runs/large/ops/work?q=k99999");
    println!("   an op, keys starting k99999  {search:>8.2} ms   (1M keys; a primary-key range)");
}

/// Issue 16: what a step pays for holding a resource slot (in memory, and
/// shared through files as runs of one store share it), and what one
/// outgoing HTTP request costs through dynhost next to a bare
/// wasmtime-wasi-http host calling the same component.
fn services(trivial: &Path) {
    const ROUNDS: usize = 5;
    let n: u64 = 100_000;
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n as f64;
    println!("\nservices: a resource slot per step, N = {n}, {ROUNDS} rounds (CPU us/key)");
    let dir = tempfile::tempdir().unwrap();
    let plain = job(dir.path(), &fan_job(trivial, n, ""));
    let gated = job(
        dir.path(),
        &fan_job(trivial, n, "").replace(
            "[ops.work]",
            "[resources.r]\nmax_concurrent = 1000\nrate = \"10000000/s\"\nburst = 1000\n[ops.work]\nresources = [\"r\"]",
        ),
    );
    let shared = tempfile::tempdir().unwrap();
    let run = |plan: &Plan, shared_limits: Option<PathBuf>| {
        let rt = runtime(plan, None);
        let components = dynhost::load_components(&rt, plan).unwrap();
        let before = cpu_time();
        let report = exec::run(
            plan,
            &rt,
            &components,
            &RunOptions {
                shared_limits,
                ..options()
            },
            exec::Storage::default(),
            &mut |_| {},
        );
        assert!(report.report.is_success());
        per(cpu_time() - before, n)
    };
    let mut deltas = Vec::new();
    for round in 1..=ROUNDS {
        // Alternate the order, so a drift in machine speed does not always
        // land on the same side.
        let (none, local, files) = if round % 2 == 0 {
            let files = run(&gated, Some(shared.path().to_path_buf()));
            let local = run(&gated, None);
            (run(&plain, None), local, files)
        } else {
            let none = run(&plain, None);
            let local = run(&gated, None);
            (none, local, run(&gated, Some(shared.path().to_path_buf())))
        };
        println!(
            "   round {round}: no resource {none:.1}, slot+token in memory {local:.1} ({:+.1}), shared through files {files:.1} ({:+.1})",
            local - none,
            files - none
        );
        deltas.push((local - none, files - none));
    }
    deltas.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (local, files) = deltas[ROUNDS / 2];
    println!(
        "   per-key cost of a resource never short of slots, median round: {local:+.1} us in memory, {files:+.1} us shared through files"
    );

    let fetch = build_guest("fetch");
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", server.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for conn in server.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let requests: u64 = 3_000;
    let url = format!("{origin}/x");
    let c = fetch.display();
    let t = trivial.display();
    let http_plan = job(
        dir.path(),
        &format!(
            r#"name = "http"
[defaults]
max_emits = {requests}
[ops.emit]
component = "{t}"
dynamic = true
config = {{ emit = {requests} }}
[ops.work]
component = "{c}"
inputs.v = {{ map = "emit" }}
config = {{ url = "{url}" }}
allowed_outbound_hosts = ["{origin}"]
"#
        ),
    );
    println!(
        "\n   one outgoing request per key to a loopback server, N = {requests}, one thread each (CPU us/key)"
    );
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let bare = per(bare_http_loop(&fetch, &url, requests), requests);
        let rt = runtime(&http_plan, None);
        let components = dynhost::load_components(&rt, &http_plan).unwrap();
        let before = cpu_time();
        let report = exec::run(
            &http_plan,
            &rt,
            &components,
            &RunOptions {
                max_concurrent: 1,
                ..options()
            },
            exec::Storage::default(),
            &mut |_| {},
        );
        assert!(report.report.is_success(), "{:?}", report.report.ops);
        let dynhost = per(cpu_time() - before, requests);
        println!(
            "   round {round}: bare wasmtime-wasi-http {bare:.1}, dynhost {dynhost:.1}; ratio {:.2}",
            dynhost / bare
        );
        ratios.push(dynhost / bare);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "   ratio dynhost/bare for a key that makes one request, median round {:.2}",
        ratios[ROUNDS / 2]
    );
}

struct BareHttpState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    http: wasmtime_wasi_http::WasiHttpCtx,
}

impl wasmtime_wasi::WasiView for BareHttpState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for BareHttpState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

discard_host!(bare_async, BareHttpState);

/// The baseline for one request per key: the `fetch` component called N
/// times from one thread by a minimal wasmtime-wasi-http host, async on a
/// current-thread tokio runtime like dynhost's workers (default hooks: no
/// allowlist, no accounting, no limits, no pooling).
fn bare_http_loop(fetch: &Path, url: &str, n: u64) -> Duration {
    use wasmtime::component::{Component, HasSelf, Linker};
    let engine = bare_engine(1);
    let mut linker = Linker::<BareHttpState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    bare_async::DynamicOp::add_to_linker::<BareHttpState, HasSelf<BareHttpState>>(
        &mut linker,
        |s| s,
    )
    .unwrap();
    let component = Component::from_file(&engine, fetch).unwrap();
    let pre = bare_async::DynamicOpPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let config = format!(r#"{{"url":"{url}"}}"#);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = cpu_time();
    runtime.block_on(async {
        for i in 0..n {
            let state = BareHttpState {
                wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
                table: wasmtime::component::ResourceTable::new(),
                http: wasmtime_wasi_http::WasiHttpCtx::new(),
            };
            let mut store = wasmtime::Store::new(&engine, state);
            store.set_epoch_deadline(1_000);
            let instance = pre.instantiate_async(&mut store).await.unwrap();
            let ctx = bare_async::exports::dynhost::op::op::Context {
                run_id: "bench".into(),
                op: "work".into(),
                keys: vec![format!("k{i}")],
                config: config.clone(),
            };
            instance
                .dynhost_op_op()
                .call_run(&mut store, &ctx, &[])
                .await
                .unwrap()
                .unwrap();
        }
    });
    cpu_time() - before
}

/// Issue 15, goal 1: the seed job (one `stat` per file through WASI) over
/// 10,000 generated files, next to the trivial fan-out of as many keys, both
/// without a store, CPU per key; the difference is what file access costs.
fn seed(trivial: &Path) {
    const ROUNDS: usize = 3;
    let n: u64 = 10_000;
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(root().join("target/guests"))
        .current_dir(root().join("guest-examples"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "building the seed ops failed");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for i in 0..n {
        std::fs::write(
            data.join(format!("file-{i:05}.txt")),
            "x".repeat((i % 97) as usize),
        )
        .unwrap();
    }
    let ops = root().join("target/guests/wasm32-wasip2/release");
    let seed_job = std::fs::read_to_string(root().join("guest-examples/seed/job.toml"))
        .unwrap()
        .replace(
            "../../target/guests/wasm32-wasip2/release",
            &ops.display().to_string(),
        )
        .replace(
            "host = \"sample\"",
            &format!("host = \"{}\"", data.display()),
        );
    let seed_plan = job(
        dir.path(),
        &format!("{seed_job}\n[defaults]\nmax_emits = {n}\n"),
    );
    let trivial_plan = job(dir.path(), &fan_job(trivial, n, ""));
    let cpu = |plan: &Plan| {
        let rt = runtime(plan, None);
        let components = dynhost::load_components(&rt, plan).unwrap();
        let before = cpu_time();
        let report = exec::run(
            plan,
            &rt,
            &components,
            &options(),
            exec::Storage::default(),
            &mut |_| {},
        );
        assert!(report.report.is_success(), "{:?}", report.report.ops);
        (cpu_time() - before).as_secs_f64() * 1e6 / n as f64
    };
    println!(
        "\n7. seed job over {n} generated files vs the trivial fan-out, {ROUNDS} rounds (CPU us/key, no store)"
    );
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let trivial = cpu(&trivial_plan);
        let seed = cpu(&seed_plan);
        println!(
            "   round {round}: trivial {trivial:.1}, seed job {seed:.1} (+{:.1} for the file access)",
            seed - trivial
        );
        rounds.push(seed);
    }
    rounds.sort_by(f64::total_cmp);
    println!(
        "   seed job, median round {:.1} us/key   (goal <= 25)",
        rounds[ROUNDS / 2]
    );
}
