//! `dynhost build`: runs each op's declared `build` command, as `spin build`
//! does, so one command goes from sources to results. Works on the spec, not
//! the plan, because the plan requires the components that this creates.

use crate::Error;
use crate::spec::JobSpec;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs every distinct `build` command of `spec` once, in op-name order, from
/// the job file's directory, with output on stderr (stdout carries results),
/// and `DYNHOST` set to `dynhost_exe` when given (so a build can run
/// `$DYNHOST componentize` whether or not dynhost is on PATH).
/// `on_command` is told each command before it runs.
///
/// With `lock`, the commands run holding an exclusive `flock` on that file
/// (created if missing), so two `dynhost run --build` at once take turns:
/// build scripts commonly write their output in place and install their
/// toolchain on first use (`npm ci`), and a second build racing the first
/// would load a half-written component or a half-installed toolchain. The
/// kernel drops the lock if dynhost dies. A lock file that cannot be opened
/// is not an error (the builds then run unserialised, as they did before).
///
/// # Errors
/// [`Error::Build`] for the first command that cannot start or exits non-zero.
pub fn build_components(
    spec: &JobSpec,
    dynhost_exe: Option<&Path>,
    lock: Option<&Path>,
    on_command: &mut dyn FnMut(&str, &str),
) -> Result<(), Error> {
    let _held = lock.and_then(hold_lock);
    let dir = spec
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut done: Vec<&str> = Vec::new();
    for (name, op) in &spec.ops {
        let Some(command) = op.build.as_deref() else {
            continue;
        };
        if done.contains(&command) {
            continue;
        }
        done.push(command);
        on_command(name, command);
        let failed = |reason: String| Error::Build {
            file: spec.file.clone(),
            op: name.clone(),
            command: command.to_owned(),
            reason,
        };
        let mut sh = Command::new("sh");
        if let Some(exe) = dynhost_exe {
            sh.env("DYNHOST", exe);
        }
        restore_huge_pages(&mut sh);
        let status = sh
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| failed(format!("could not start: {e}")))?;
        if !status.success() {
            return Err(failed(format!(
                "failed with {status}; fix the build, then run again"
            )));
        }
    }
    Ok(())
}

/// The user's build command runs as it would from their shell: with the
/// transparent huge page setting dynhost was started with, not the one it
/// set for itself ([`crate::allocator::configure`]), a flag children inherit.
#[expect(
    unsafe_code,
    reason = "pre_exec runs one async-signal-safe system call in the child"
)]
fn restore_huge_pages(command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the hook only calls prctl, which is safe between fork and exec.
    unsafe {
        command.pre_exec(crate::allocator::restore_transparent_huge_pages_in_child);
    }
}

/// An exclusive lock on `path`, held until the file is dropped; `None` when
/// the file cannot be created or locked.
fn hold_lock(path: &Path) -> Option<std::fs::File> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    file.lock().ok()?;
    Some(file)
}
