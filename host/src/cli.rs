//! Command-line parsing and dispatch. Thin: every command is a few calls into
//! the library plus rendering by `report`.

mod report;

use clap::{Args, Parser, Subcommand};
use dynhost::{RunOptions, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Check a job without running it: file, graph and components.
    Validate(JobArgs),
    /// Run each op's `build` command.
    Build(JobArgs),
    /// Print the resolved plan as JSON.
    Plan(JobArgs),
}

#[derive(Debug, Args)]
struct JobArgs {
    /// The job file.
    job: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The job file.
    job: PathBuf,
    /// Print JSON events and results on stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// Steps running at once [default: number of cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_concurrent: Option<u32>,
    /// Run the ops' `build` commands first.
    #[arg(long)]
    build: bool,
    /// Compile components without the on-disk compile cache.
    #[arg(long)]
    no_cache: bool,
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
        Command::Run(args) => run_job(&args),
        Command::Validate(args) => {
            let plan = dynhost::load_plan(&args.job)?;
            let runtime = Runtime::new(&runtime_config(&plan, 1, false))?;
            dynhost::load_components(&runtime, &plan)?;
            eprintln!("{}: ok ({} ops)", args.job.display(), plan.ops.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => {
            build(&args.job)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            let plan = dynhost::load_plan(&args.job)?;
            report::print_json(&plan)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_job(args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.build {
        build(&args.job)?;
    }
    let plan = dynhost::load_plan(&args.job)?;
    let max_concurrent = match args.max_concurrent {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let runtime = Runtime::new(&runtime_config(&plan, max_concurrent, args.no_cache))?;
    let components = dynhost::load_components(&runtime, &plan)?;
    let options = RunOptions {
        run_id: new_run_id(),
        max_concurrent,
    };
    let mut view = report::Progress::new(args.json, &plan);
    let result = dynhost::exec::run(&plan, &runtime, &components, &options, &mut |event| {
        view.on_event(event)
    });
    view.finish();
    if args.json {
        report::print_run_json(&result)?;
    } else {
        report::print_summary(&result);
    }
    Ok(if result.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED_STEPS)
    })
}

fn build(job: &Path) -> anyhow::Result<()> {
    let spec = dynhost::spec::load(job)?;
    dynhost::build::build_components(&spec, &mut |op, command| {
        eprintln!("building `{op}`: {command}")
    })?;
    Ok(())
}

fn runtime_config(plan: &dynhost::Plan, max_instances: usize, no_cache: bool) -> RuntimeConfig {
    RuntimeConfig {
        max_instances: u32::try_from(max_instances).unwrap_or(u32::MAX),
        max_memory_bytes: plan.max_memory_bytes(),
        cache_dir: if no_cache { None } else { cache_dir() },
        max_wasm_stack_bytes: plan.stack_bytes(),
        enable_fuel: plan.ops.iter().any(|op| op.policy.limits.fuel.is_some()),
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
