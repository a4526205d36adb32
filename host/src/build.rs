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
/// # Errors
/// [`Error::Build`] for the first command that cannot start or exits non-zero.
pub fn build_components(
    spec: &JobSpec,
    dynhost_exe: Option<&Path>,
    on_command: &mut dyn FnMut(&str, &str),
) -> Result<(), Error> {
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
