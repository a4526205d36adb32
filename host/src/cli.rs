//! Command-line parsing and dispatch. Thin: every command is a few calls into
//! the library plus rendering by `report`.

/// `eprintln!` that never panics: a closed stderr (`dynhost runs 2>&1 | head
/// -1`) is no reason to die with a panic.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod describe;
mod history;
mod init;
mod interrupt;
mod locate;
mod report;
mod tier;
mod value;
mod watch;

use clap::{Args, Parser, Subcommand};
use dynhost::exec::Storage;
use dynhost::store::{RunRecord, RunStatus, RunStore, SqliteStore};
use dynhost::{RunOptions, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Run data jobs whose ops are WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "dynhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a job: every op, one fresh sandboxed instance per mapped key.
    Run(RunArgs),
    /// Check a job without running it: file, graph, config and components.
    Validate(ValidateArgs),
    /// Run each op's `build` command.
    Build(JobArgs),
    /// Print the resolved plan: ops in run order, inputs, limits, grants.
    Plan(PlanArgs),
    /// Create an op project: WIT, build command, a minimal op and a job.
    Init(InitArgs),
    /// Continue a run: reuse its succeeded steps, run the rest.
    Resume(ResumeArgs),
    /// List recorded runs, newest first.
    Runs(StoreArgs),
    /// Show a run per op, an op's values, or one step's inputs and output.
    Show(ShowArgs),
    /// Print one step's captured stdout, stderr and log.
    Logs(LogsArgs),
    /// Browse recorded runs in a web browser: runs, graphs, every key, live.
    Ui(UiArgs),
    /// Make components from C: the C bindings of dynhost's world, and a
    /// wasm32-wasi core module wrapped as a component.
    #[command(subcommand)]
    Componentize(ComponentizeCommand),
    /// Run steps for `dynhost run --nats` coordinators: pull steps from NATS
    /// JetStream and run each in the sandbox, until stopped.
    Worker(WorkerArgs),
    /// Compile components into the compile cache with the given runtime
    /// settings (started in the background by `run --fast-compile`).
    #[command(hide = true)]
    TierUp(TierUpArgs),
    /// Run the steps a `run --processes` coordinator writes to stdin, one
    /// at a time, writing their items and ends to stdout (started by it).
    #[command(hide = true)]
    WorkerProcess(WorkerProcessArgs),
}

/// `dynhost worker-process`.
#[derive(Debug, Args)]
struct WorkerProcessArgs {
    /// The runtime settings, as JSON.
    #[arg(long)]
    runtime: String,
    /// The run.
    #[arg(long)]
    run_id: String,
    /// The directory of large values, shared with the coordinator.
    #[arg(long)]
    values: PathBuf,
    /// The run's locked plan (JSON).
    plan: PathBuf,
}

/// `dynhost tier-up`.
#[derive(Debug, Args)]
struct TierUpArgs {
    /// The runtime settings, as JSON.
    #[arg(long)]
    runtime: String,
    /// The component files.
    components: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ComponentizeCommand {
    /// Write `dynamic_op.h`, `dynamic_op.c` and `dynamic_op_component_type.o`
    /// for the `dynamic-op` world of the WIT in WIT_DIR into OUT_DIR.
    Bindings {
        /// The WIT directory (`wit/` of an op project).
        wit: PathBuf,
        /// Where to write the bindings.
        out: PathBuf,
    },
    /// Wrap a wasm32-wasi reactor module (built with the bindings) as a
    /// component, adapting WASI preview 1 to 0.2.
    New {
        /// The core module (`clang --target=wasm32-wasi -mexec-model=reactor`).
        core: PathBuf,
        /// The component to write.
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The op's language.
    #[arg(long, value_enum)]
    lang: init::Lang,
    /// The project (and directory) name.
    name: String,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The run store directory [default: $DYNHOST_HOME, else the nearest
    /// .dynhost/ here or above, else ~/.local/share/dynhost].
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct UiArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The port to listen on (0: any free port).
    #[arg(long, default_value_t = 8321)]
    port: u16,
    /// The address to listen on. The viewer has no login: keep it on
    /// loopback unless the network is yours alone.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
}

#[derive(Debug, Args)]
struct ResumeArgs {
    /// The run to continue: its id, a unique prefix, `latest` or
    /// `latest:JOB_FILE`.
    run: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    exec: ExecArgs,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The run: its id, a unique prefix, `latest` or `latest:JOB_FILE`.
    run: String,
    /// An op (its values, per key in emission order) or one step, as
    /// `op[key]` (its inputs and output).
    target: Option<String>,
    /// List the steps with this status.
    #[arg(long, value_parser = ["succeeded", "failed", "skipped"])]
    status: Option<String>,
    /// Print long values whole instead of cutting them.
    #[arg(long)]
    full: bool,
    /// Write the value's bytes to stdout and nothing else (one op value or step).
    #[arg(long, conflicts_with_all = ["full", "status"])]
    raw: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
struct LogsArgs {
    /// The run: its id, a unique prefix, `latest` or `latest:JOB_FILE`.
    run: String,
    /// The step, as `op[key]`.
    step: String,
    #[command(flatten)]
    store: StoreArgs,
}

/// Config overrides, for `run`, `resume`, `validate` and `plan`.
#[derive(Debug, Args, Clone, Default)]
struct ConfigArgs {
    /// A TOML, JSON or YAML (`.yaml`/`.yml`) file of `[ops.NAME.config]` tables merged over the
    /// job's (repeatable).
    #[arg(long = "config", value_name = "FILE")]
    config_files: Vec<PathBuf>,
    /// One config value: `ops.NAME.config.KEY=VALUE` (repeatable; VALUE is a
    /// TOML value, or text).
    #[arg(long = "set", value_name = "ops.NAME.config.KEY=VALUE")]
    sets: Vec<String>,
}

impl ConfigArgs {
    fn overrides(&self) -> dynhost::spec::Overrides {
        dynhost::spec::Overrides {
            files: self.config_files.clone(),
            sets: self.sets.clone(),
            // Read here, at the edge: `${env.NAME}` in mount host paths.
            env: std::env::vars().collect(),
        }
    }
}

/// How to execute, shared by `run` and `resume`.
#[derive(Debug, Args)]
struct ExecArgs {
    /// Print JSON events and results on stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// Steps running at once [default: number of cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_concurrent: Option<u32>,
    /// Compile components without the on-disk compile cache.
    #[arg(long)]
    no_cache: bool,
    /// MiB of step values kept in memory; beyond it values are spilled to a
    /// temporary file and read back when a step needs them.
    #[arg(long, default_value_t = dynhost::exec::DEFAULT_MEMORY_BUDGET >> 20)]
    memory_budget_mib: u64,
    /// Without a terminal (CI logs, pipes), print a progress line per op this
    /// often, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = progress_secs)]
    progress_secs: f64,
    /// No progress lines (failures and the summary are still printed).
    #[arg(long, short)]
    quiet: bool,
    /// Compile components with wasmtime's baseline compiler (Winch): a
    /// Python or JavaScript op compiles 3-5x faster and runs slower (for
    /// the edit loop). The optimised code is then compiled in the
    /// background into the cache, and used by later runs once it is there.
    #[arg(long)]
    fast_compile: bool,
    /// Run every op's steps in N worker processes of dynhost instead of
    /// threads of this one; 0: every op on threads. By default, ops whose
    /// component embeds an interpreter (Python, JavaScript: 8 MB or more)
    /// run in one worker process per `--max-concurrent`: their fresh
    /// instances write many pages, and threads sharing one address space
    /// pay for each other's page faults. Small ops are faster on threads
    /// (a step in a process crosses a pipe).
    #[arg(long, value_name = "N", conflicts_with = "nats",
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    processes: Option<u32>,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    nats: NatsArgs,
}

/// Where steps run when not on this machine's threads.
#[derive(Debug, Args)]
struct NatsArgs {
    /// Send steps to `dynhost worker`s through the NATS JetStream server at
    /// URL (`nats://host:4222`); this process stays the coordinator.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// A NATS credentials file (`.creds`).
    #[arg(long, value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// A NATS token (better: a credentials file; a token on the command
    /// line is visible to other users of the machine).
    #[arg(long, value_name = "TOKEN")]
    nats_token: Option<String>,
    /// A CA certificate for TLS to the NATS server.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

impl NatsArgs {
    fn options(&self) -> Option<dynhost::nats::NatsOptions> {
        Some(dynhost::nats::NatsOptions {
            url: self.nats.clone()?,
            creds: self.nats_creds.clone(),
            token: self.nats_token.clone(),
            tls_ca: self.tls_ca.clone(),
            lease: dynhost::nats::DEFAULT_LEASE,
        })
    }
}

/// `dynhost worker`.
#[derive(Debug, Args)]
struct WorkerArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Steps running at once [default: number of cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_concurrent: Option<u32>,
    /// This worker's name, shown by the server [default: worker-PID].
    #[arg(long)]
    name: Option<String>,
    /// A tag of this worker (repeatable, at most 4): it also runs the steps
    /// of ops whose `placement` lists only tags it has.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Seconds this worker holds a step without renewing its lease before
    /// the step goes to another worker (renewed every third of it).
    #[arg(long, default_value_t = 30.0, value_parser = progress_secs)]
    lease_secs: f64,
}

fn progress_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.1 => Ok(secs),
        _ => Err(format!("`{text}`: give seconds, at least 0.1")),
    }
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// The job file.
    job: PathBuf,
    /// The plan as JSON, for tools.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Draw the graph instead: Graphviz DOT, an SVG picture, or a Mermaid
    /// flowchart (the same drawing as `dynhost ui`).
    #[arg(long, value_enum)]
    format: Option<GraphFormat>,
    #[command(flatten)]
    config: ConfigArgs,
}

/// `dynhost plan --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GraphFormat {
    Dot,
    Svg,
    Mermaid,
}

#[derive(Debug, Args)]
struct JobArgs {
    /// The job file.
    job: PathBuf,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The job file.
    job: PathBuf,
    /// Also check that every op can run on remote workers (`run --nats`).
    #[arg(long)]
    remote: bool,
    /// Also check, against the workers connected to this NATS server, that
    /// every op's `placement` is served (implies `--remote`).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The job file.
    job: PathBuf,
    #[command(flatten)]
    exec: ExecArgs,
    /// Run the ops' `build` commands first.
    #[arg(long)]
    build: bool,
    /// Re-execute these steps and everything downstream of them, e.g.
    /// `process_file[a,b]` (repeatable), reusing the rest from `--from`
    /// (default: the latest run of this job file).
    #[arg(long)]
    only: Vec<String>,
    /// Re-execute just these steps (repeatable); what reads them is reused
    /// when their new value is the same, and runs again when it differs.
    #[arg(long)]
    step: Vec<String>,
    /// Allow `--from` to name a run of another job file.
    #[arg(long)]
    from_other_job: bool,
    /// Build and run, then again whenever a file beside the job changes,
    /// until Ctrl-C; ops with `cache = true` reuse unchanged steps.
    #[arg(long, conflicts_with_all = ["only", "step", "from"])]
    watch: bool,
    /// The run to reuse succeeded steps from (an id, a unique prefix,
    /// `latest` or `latest:JOB_FILE`).
    #[arg(long)]
    from: Option<String>,
    /// Do not record the run.
    #[arg(long)]
    no_store: bool,
    /// The run store directory [default: $DYNHOST_HOME, else the nearest
    /// .dynhost/ at or above the job file, else ~/.local/share/dynhost].
    #[arg(long)]
    store: Option<PathBuf>,
}

/// Exit status for a run with failed or skipped steps.
const EXIT_FAILED_STEPS: u8 = 1;

/// Runs the parsed command.
///
/// # Errors
/// Anything that makes the job unrunnable; `main` prints it and exits 2.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_tracing();
    match cli.command {
        Command::Run(args) if args.watch => {
            let root = std::path::absolute(&args.job)?
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let round = RunArgs {
                build: true,
                watch: false,
                ..args
            };
            watch::watch(&root, || run_job(&round))
        }
        Command::Run(args) => run_job(&args),
        Command::Validate(args) => {
            let plan = dynhost::load_plan_with(&args.job, &args.config.overrides())?;
            if args.remote || args.nats.is_some() {
                for (op, local) in plan.ops.iter().zip(dynhost::nats::local_ops(&plan)) {
                    if local {
                        note!(
                            "op `{}` mounts a directory not marked `shared`: with `--nats` it runs on this machine, not on workers",
                            op.name
                        );
                    }
                }
            }
            if let Some(url) = &args.nats {
                let options = dynhost::nats::NatsOptions {
                    url: url.clone(),
                    creds: None,
                    token: None,
                    tls_ca: None,
                    lease: dynhost::nats::DEFAULT_LEASE,
                };
                dynhost::nats::check_placement(&options, &plan)?;
            }
            let runtime = Runtime::new(&runtime_config(&plan, 1, false, false))?;
            dynhost::load_components_with(&runtime, &plan, &mut say_compiling)?;
            note!("{}: ok ({} ops)", args.job.display(), plan.ops.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => {
            build(&args.job)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            let plan = dynhost::load_plan_with(&args.job, &args.config.overrides())?;
            if let Some(format) = args.format {
                let format = match format {
                    GraphFormat::Dot => dynhost::graph::Format::Dot,
                    GraphFormat::Svg => dynhost::graph::Format::Svg,
                    GraphFormat::Mermaid => dynhost::graph::Format::Mermaid,
                };
                let picture = dynhost::graph::draw(&plan, format, None)?;
                println!("{picture}");
            } else if args.json {
                report::print_json(&plan)?;
            } else {
                describe::print(&plan)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume(args) => resume(&args),
        Command::Init(args) => {
            init::init(args.lang, &args.name, Path::new("."))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ui(args) => {
            let location = locate::locate(args.store.store.as_deref(), Path::new("."))?;
            let store =
                locate::open_existing(&location)?.ok_or_else(|| locate::no_store(&location))?;
            let dir = std::path::absolute(&location.dir).unwrap_or(location.dir.clone());
            let addr = std::net::SocketAddr::new(args.bind, args.port);
            dynhost::ui::serve(store, dir.display().to_string(), addr, |bound| {
                // The one line a script waits for; stdout, flushed at once.
                println!(
                    "dynhost ui: http://{bound}/ (store {}; Ctrl-C to stop)",
                    dir.display()
                );
                let _ = std::io::Write::flush(&mut std::io::stdout());
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(args) => {
            let location = locate::locate(args.store.as_deref(), Path::new("."))?;
            match locate::open_existing(&location)? {
                Some(store) => history::runs(&store),
                None => {
                    note!(
                        "no runs recorded yet in {} ({})",
                        location.dir.display(),
                        location.reason
                    );
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Show(args) => history::show(
            &read_store(args.store.store.as_deref())?,
            &history::ShowArgs {
                run: &run_ref(&args.run),
                target: args.target.as_deref(),
                status: args.status.as_deref(),
                full: args.full,
                raw: args.raw,
            },
        ),
        Command::Componentize(ComponentizeCommand::Bindings { wit, out }) => {
            dynhost::componentize::bindings(&wit, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Componentize(ComponentizeCommand::New { core, out }) => {
            dynhost::componentize::wrap(&core, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::TierUp(args) => {
            tier::compile(&args.runtime, &args.components)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::WorkerProcess(args) => {
            let config: RuntimeConfig = serde_json::from_str(&args.runtime)?;
            dynhost::procs::serve(
                &config,
                &args.run_id,
                &args.values,
                &args.plan,
                std::io::stdin().lock(),
                std::io::stdout(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let mut nats = args
                .nats
                .options()
                .ok_or_else(|| anyhow::anyhow!("`dynhost worker` needs `--nats URL`"))?;
            nats.lease = Duration::from_secs_f64(args.lease_secs);
            if args.tags.len() > dynhost::nats::MAX_TAGS {
                anyhow::bail!(
                    "a worker carries at most {} tags (`--tag`), not {}",
                    dynhost::nats::MAX_TAGS,
                    args.tags.len()
                );
            }
            if let Some(bad) = args.tags.iter().find(|t| {
                t.is_empty()
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            }) {
                anyhow::bail!("tag `{bad}` must be 1 or more of `A-Z a-z 0-9 _ -`");
            }
            let max_concurrent = match args.max_concurrent {
                Some(n) => n as usize,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            dynhost::nats::work(&dynhost::nats::WorkerOptions {
                nats,
                max_concurrent,
                name: args
                    .name
                    .unwrap_or_else(|| format!("worker-{}", std::process::id())),
                cache_dir: cache_dir()
                    .unwrap_or_else(std::env::temp_dir)
                    .join("worker"),
                tags: args.tags,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs(args) => history::logs(
            &read_store(args.store.store.as_deref())?,
            &run_ref(&args.run),
            &args.step,
        ),
    }
}

fn run_job(args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.build {
        build(&args.job)?;
    }
    let plan = dynhost::load_plan_with(&args.job, &args.exec.config.overrides())?;
    let job_file = std::path::absolute(&args.job)?;
    let run = RunRecord {
        id: new_run_id(),
        job: plan.job_name.clone(),
        job_file: job_file.display().to_string(),
        job_hash: dynhost::store::hash_bytes(&std::fs::read(&args.job)?),
        config: effective_config(&plan),
        plan: String::new(),
    };
    if args.no_store {
        if !args.only.is_empty() || !args.step.is_empty() || args.from.is_some() {
            anyhow::bail!(
                "`--only`, `--step` and `--from` reuse a recorded run; drop `--no-store`"
            );
        }
        return execute(&plan, &args.exec, &run, || Ok((None, Storage::default())));
    }
    // The store is opened once the components load, so a job with a broken
    // component leaves no `.dynhost/` behind.
    execute(&plan, &args.exec, &run, || {
        let location = locate::locate(
            args.store.as_deref(),
            job_file.parent().unwrap_or(Path::new(".")),
        )?;
        let store = locate::open_for_writing(&location)?;
        let selecting = !args.only.is_empty() || !args.step.is_empty();
        let prior = if selecting || args.from.is_some() {
            let from = match &args.from {
                Some(id) => store.run(&run_ref(id))?,
                None => store.run(&latest_run(&store, &run.job_file)?)?,
            };
            if from.job_file != run.job_file && !args.from_other_job {
                anyhow::bail!(
                    "run `{}` is of job file `{}`, not `{}`; its steps may mean something else here. Pass --from-other-job to reuse them anyway",
                    from.id,
                    from.job_file,
                    run.job_file
                );
            }
            let mut prior = store.successes(&from.id)?;
            if selecting {
                let stored = store.step_keys(&from.id)?;
                let chosen = args
                    .only
                    .iter()
                    .map(|text| (text, true))
                    .chain(args.step.iter().map(|text| (text, false)));
                for (text, with_downstream) in chosen {
                    let flag = if with_downstream { "--only" } else { "--step" };
                    let fail = |e: String| anyhow::anyhow!("{flag} `{text}`: {e}");
                    let selection = dynhost::resume::parse_selection(text).map_err(fail)?;
                    dynhost::resume::check_selection(&plan, &selection, &stored).map_err(|e| {
                        anyhow::anyhow!("{flag} `{text}`: {e} (in run `{}`)", from.id)
                    })?;
                    prior = dynhost::resume::without_selection(
                        &plan,
                        prior,
                        &selection,
                        with_downstream,
                    )
                    .map_err(fail)?;
                }
            }
            prior
        } else {
            Vec::new()
        };
        Ok((
            Some(store),
            Storage {
                prior,
                record_reused: true,
                ..Storage::default()
            },
        ))
    })
}

/// `dynhost resume RUN`: the run's job file as it is now, its stored
/// successes reused, everything else run; recorded under the same run id.
fn resume(args: &ResumeArgs) -> anyhow::Result<ExitCode> {
    let store = read_store(args.store.store.as_deref())?;
    let stored = store.run(&run_ref(&args.run))?;
    if let Some(pid) = stored.owner_pid {
        anyhow::bail!(
            "run `{}` is still running in process {pid}; wait for it to end, or stop it (`kill -INT {pid}`) before resuming",
            stored.id
        );
    }
    let job = PathBuf::from(&stored.job_file);
    let plan = dynhost::load_plan_with(&job, &args.exec.config.overrides())?;
    let prior = store.successes(&stored.id)?;
    let run = RunRecord {
        id: stored.id.clone(),
        job: plan.job_name.clone(),
        job_file: stored.job_file.clone(),
        job_hash: dynhost::store::hash_bytes(&std::fs::read(&job)?),
        config: effective_config(&plan),
        plan: String::new(),
    };
    execute(&plan, &args.exec, &run, || {
        Ok((
            Some(store),
            Storage {
                prior,
                record_reused: false,
                ..Storage::default()
            },
        ))
    })
}

fn latest_run(store: &SqliteStore, job_file: &str) -> anyhow::Result<String> {
    let runs = store.runs()?;
    runs.into_iter()
        .find(|r| r.job_file == job_file)
        .map(|r| r.id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no recorded run of `{job_file}` to reuse; run it once, or pass `--from RUN`"
            )
        })
}

/// Loads components, records the run, executes it and reports.
fn execute(
    plan: &dynhost::Plan,
    args: &ExecArgs,
    run: &RunRecord,
    open_storage: impl FnOnce() -> anyhow::Result<(Option<SqliteStore>, Storage)>,
) -> anyhow::Result<ExitCode> {
    let max_concurrent = match args.max_concurrent {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let (runtime, chosen, tier_up) = tier::choose(
        &runtime_config(plan, max_concurrent, args.no_cache, args.fast_compile),
        plan,
    )?;
    let components = dynhost::load_components_with(&runtime, plan, &mut say_compiling)?;
    let run = &RunRecord {
        plan: dynhost::plan::lock::lock(plan, &components).to_json(),
        ..run.clone()
    };
    let (store, mut storage) = open_storage()?;
    // Resource limits are shared by every run of this store.
    let shared_limits = match &store {
        Some(store) if !plan.resources.is_empty() => {
            let dir = store.path().with_file_name("resources");
            std::fs::create_dir_all(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create `{}` (where runs sharing this store share `[resources]` limits): {e}; make its directory writable, or run with --no-store",
                    dir.display()
                )
            })?;
            Some(dir)
        }
        _ => None,
    };
    let mut view = report::Progress::new(
        &report::ProgressOptions {
            json: args.json,
            plain_every: (!args.quiet).then(|| Duration::from_secs_f64(args.progress_secs)),
        },
        plan,
    );
    view.started(
        &run.id,
        &run.job,
        &run.job_file,
        store.as_ref().map(SqliteStore::path),
    );
    if let Some(mut store) = store {
        store.begin_run(run)?;
        if plan.ops.iter().any(|op| op.cache) {
            storage.lookup = Some(Box::new(SqliteStore::open(store.path())?));
        }
        storage.store = Some(Box::new(store));
    }
    let options = RunOptions {
        run_id: run.id.clone(),
        max_concurrent,
        memory_budget_bytes: args.memory_budget_mib.saturating_mul(1 << 20),
        interrupt: Some(runtime.interrupter()),
        shared_limits,
    };
    let watch = interrupt::watch(runtime.interrupter())?;
    let in_processes = match args.processes {
        Some(0) => None,
        Some(count) => Some((count as usize, vec![true; plan.ops.len()])),
        // Worker processes pay off with two or more workers (one has no
        // other CPU to disturb) and a compile cache (without one, each child
        // would compile the interpreter again).
        None if args.nats.nats.is_none() && max_concurrent > 1 && chosen.cache_dir.is_some() => {
            let ops = dynhost::procs::interpreter_ops(plan);
            ops.contains(&true).then_some((max_concurrent, ops))
        }
        None => None,
    };
    let result = match (args.nats.options(), in_processes) {
        (None, Some((count, ops))) => dynhost::procs::run(
            plan,
            &runtime,
            &components,
            &options,
            storage,
            &mut |event| view.on_event(event),
            &dynhost::procs::ProcessOptions {
                exe: std::env::current_exe()?,
                count,
                ops,
                locked_plan: run.plan.clone(),
                runtime: chosen,
            },
        )?,
        (Some(nats), _) => dynhost::nats::run(
            plan,
            &runtime,
            &components,
            &options,
            storage,
            &mut |event| view.on_event(event),
            &dynhost::nats::Remote {
                nats: &nats,
                locked_plan: &run.plan,
            },
        )?,
        (None, None) => dynhost::exec::run(
            plan,
            &runtime,
            &components,
            &options,
            storage,
            &mut |event| view.on_event(event),
        ),
    };
    view.finish();
    let signal = watch.received();
    drop(watch);
    if let (Some(optimised), None) = (&tier_up, signal) {
        tier::start_background(optimised, plan);
    }
    let recorded = result.store.is_some();
    if let Some(mut store) = result.store {
        let status = match (signal, result.report.is_success()) {
            (Some(_), _) => RunStatus::Interrupted,
            (None, true) => RunStatus::Succeeded,
            (None, false) => RunStatus::Failed,
        };
        store.finish_run(&run.id, status)?;
    }
    if args.json {
        report::print_run_json(&result.report)?;
    } else {
        report::print_summary(&result.report);
    }
    if let Some(error) = result.store_error {
        return Err(error.into());
    }
    if let Some(signal) = signal {
        let id = &run.id;
        if recorded {
            note!(
                "run {id} was interrupted by {}; continue it with:\n  dynhost resume {id}",
                interrupt::name(signal)
            );
        } else {
            note!(
                "run {id} was interrupted by {} (not recorded: --no-store)",
                interrupt::name(signal)
            );
        }
        return Ok(ExitCode::from(
            u8::try_from(128 + signal).unwrap_or(u8::MAX),
        ));
    }
    Ok(if result.report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED_STEPS)
    })
}

/// The config each op runs with (defaults and overrides applied), as one
/// JSON object by op name: recorded with the run, shown by `show`.
fn effective_config(plan: &dynhost::Plan) -> String {
    let ops: serde_json::Map<String, serde_json::Value> = plan
        .ops
        .iter()
        .map(|op| {
            let config = serde_json::from_str(&op.config_json).unwrap_or_default();
            (op.name.clone(), config)
        })
        .collect();
    serde_json::Value::Object(ops).to_string()
}

/// Says which component is compiling: a large one (an interpreter) takes
/// seconds to tens of seconds, once, and a blank terminal looks hung.
/// After an edit most of a large component's functions come from earlier
/// compiles; saying how many tells why this compile was quick (or not).
fn say_compiling(event: dynhost::runtime::Compiling<'_>) {
    use dynhost::runtime::Compiling;
    let name = |path: &Path| {
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    match event {
        Compiling::Started { path, size } => note!(
            "compiling {} ({:.1} MB; once: the compiled form is cached)…",
            name(path),
            size as f64 / 1e6
        ),
        Compiling::Done {
            path,
            secs,
            reused,
            functions,
        } if reused > 0 => note!(
            "compiled {} in {secs:.1} s, reusing {reused} of {functions} functions",
            name(path)
        ),
        Compiling::Done { .. } => {}
    }
}

/// The store of a command that reads runs (or resumes one), found from the
/// current directory; never created.
fn read_store(flag: Option<&Path>) -> anyhow::Result<SqliteStore> {
    let location = locate::locate(flag, Path::new("."))?;
    locate::open_existing(&location)?.ok_or_else(|| locate::no_store(&location))
}

/// A run as the user named it, with `latest:FILE` made absolute (the store
/// keeps job files as absolute paths).
fn run_ref(text: &str) -> String {
    match text.strip_prefix("latest:") {
        Some(file) => {
            let path = std::path::absolute(file).unwrap_or_else(|_| PathBuf::from(file));
            format!("latest:{}", path.display())
        }
        None => text.to_owned(),
    }
}

fn build(job: &Path) -> anyhow::Result<()> {
    let spec = dynhost::spec::load(job)?;
    // Build commands find this dynhost as `$DYNHOST` (for `componentize`),
    // whether or not it is on PATH.
    let exe = std::env::current_exe().ok();
    // One lock per user (beside the compiled-component cache): concurrent
    // builds of any jobs take turns, since jobs share build outputs.
    let lock = cache_dir().map(|dir| dir.join("build.lock"));
    dynhost::build::build_components(
        &spec,
        exe.as_deref(),
        lock.as_deref(),
        &mut |op, command| {
            note!("building `{op}`: {command}");
        },
    )?;
    Ok(())
}

fn runtime_config(
    plan: &dynhost::Plan,
    max_instances: usize,
    no_cache: bool,
    fast_compile: bool,
) -> RuntimeConfig {
    RuntimeConfig {
        max_instances: u32::try_from(max_instances).unwrap_or(u32::MAX),
        max_memory_bytes: plan.max_memory_bytes(),
        cache_dir: if no_cache { None } else { cache_dir() },
        max_wasm_stack_bytes: plan.stack_bytes(),
        enable_fuel: plan.ops.iter().any(|op| op.policy.limits.fuel.is_some()),
        fast_compile,
    }
}

/// `DYNHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/dynhost`, else `~/.cache/dynhost`.
/// Read here, at the edge, so the library never reads the environment.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DYNHOST_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("dynhost"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("dynhost"))
}

/// A sortable, unique-enough id: UTC time plus process id.
fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{:06}-{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DYNHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
