//! Tiered compilation for `--fast-compile`: the edit loop gets baseline
//! (Winch) code within a second, and the optimised (Cranelift) code is
//! compiled afterwards, in a background process, into the same compile
//! cache, so later runs (with or without the flag) run at full speed
//! without waiting for it. This is the shape of a JIT's tiers with a
//! process boundary instead of a thread: a run never waits for, or shares
//! a core with, the slow compile it does not need yet.

use dynhost::{Plan, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The runtime for a run. Without `--fast-compile` (or without a cache),
/// the one `config` asks for. With it, the optimised runtime when every
/// component's optimised code is already cached, else the baseline one plus
/// the optimised config for [`start_background`] once the run is over.
/// Also returns the config of the runtime chosen (worker processes build
/// the same).
pub(super) fn choose(
    config: &RuntimeConfig,
    plan: &Plan,
) -> anyhow::Result<(Runtime, RuntimeConfig, Option<RuntimeConfig>)> {
    if !config.fast_compile || config.cache_dir.is_none() {
        return Ok((Runtime::new(config)?, config.clone(), None));
    }
    let optimised = RuntimeConfig {
        fast_compile: false,
        ..config.clone()
    };
    let runtime = Runtime::new(&optimised)?;
    // Each file once: the template's three ops share one 19 MB component,
    // and each check reads and hashes it.
    if component_files(plan).iter().all(|c| runtime.is_cached(c)) {
        note!("--fast-compile: optimised code of every op is cached; running that");
        return Ok((runtime, optimised, None));
    }
    drop(runtime);
    Ok((Runtime::new(config)?, config.clone(), Some(optimised)))
}

/// The plan's component files, each once (ops may share one).
fn component_files(plan: &Plan) -> Vec<&Path> {
    let mut files: Vec<&Path> = plan.ops.iter().map(|op| op.component.as_path()).collect();
    files.sort();
    files.dedup();
    files
}

/// Starts `dynhost tier-up` on the plan's components, detached: its own
/// process group (a Ctrl-C at the terminal is not for it), no stdio (a
/// caller reading our output to its end does not wait for it). A failure to
/// start costs only the optimised code, so it is reported and ignored.
pub(super) fn start_background(optimised: &RuntimeConfig, plan: &Plan) {
    use std::os::unix::process::CommandExt as _;
    let components = component_files(plan);
    let started = std::env::current_exe()
        .map_err(anyhow::Error::from)
        .and_then(|exe| {
            Command::new(exe)
                .arg("tier-up")
                .arg("--runtime")
                .arg(serde_json::to_string(optimised)?)
                .args(components)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(anyhow::Error::from)
        });
    match started {
        Ok(_) => note!("compiling optimised code in the background for later runs"),
        Err(e) => note!("cannot start the background compile of optimised code: {e}"),
    }
}

/// `dynhost tier-up`: compiles `components` for `runtime` (JSON of a
/// [`RuntimeConfig`]) into its compile cache, at low priority. One at a
/// time per cache: when another is compiling, this one leaves (the next
/// `--fast-compile` run starts it again if the code is still missing).
pub(super) fn compile(runtime: &str, components: &[PathBuf]) -> anyhow::Result<()> {
    let config: RuntimeConfig = serde_json::from_str(runtime)?;
    let Some(dir) = &config.cache_dir else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("tier-up.lock"))?;
    if lock.try_lock().is_err() {
        return Ok(());
    }
    lower_priority();
    let runtime = Runtime::new(&config)?;
    for component in components {
        if let Err(e) = runtime.load(component) {
            tracing::warn!(component = %component.display(), "background compile failed: {e}");
        }
    }
    Ok(())
}

/// Nice 10, so the compile yields the cores to the user's next run.
#[expect(
    unsafe_code,
    reason = "nice(2) only changes this process's scheduling priority"
)]
fn lower_priority() {
    // SAFETY: `nice` has no memory effects; its result is not needed.
    unsafe {
        libc::nice(10);
    }
}

#[cfg(test)]
mod tests {
    /// A plan whose three ops share one file and a fourth has its own lists
    /// two files: `--fast-compile` checks (reads and hashes) each once, and
    /// the background compile is given each once.
    #[test]
    fn component_files_lists_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["shared.wasm", "own.wasm"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let job = dir.path().join("job.toml");
        let mut toml = String::from("name = \"t\"\n");
        for (op, file) in [
            ("a", "shared"),
            ("b", "shared"),
            ("c", "shared"),
            ("d", "own"),
        ] {
            toml.push_str(&format!("[ops.{op}]\ncomponent = \"{file}.wasm\"\n"));
        }
        std::fs::write(&job, toml).unwrap();
        let plan = dynhost::load_plan(&job).unwrap();
        assert_eq!(plan.ops.len(), 4);
        let files: Vec<String> = super::component_files(&plan)
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["own.wasm", "shared.wasm"]);
    }
}
