//! `dynhost run --watch`: build and run, then again whenever a file of the
//! project changes (like `cargo watch` or `spin watch`), until Ctrl-C.
//!
//! Each round is a fresh run (a new run id, so the history shows every
//! round); ops with `cache = true` reuse the stored results of any round
//! whose component, config and inputs were the same, so an edit re-runs
//! only what it changed. A round that fails to build or plan is reported
//! and the loop waits for the next change.

use signal_hook::consts::{SIGINT, SIGTERM};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// How often the project is looked at for changes.
const POLL: Duration = Duration::from_millis(300);

/// Directories that hold build outputs, dependencies or run data, not
/// sources: a change there must not start a round (a build writes them).
const IGNORED: &[&str] = &[
    "target",
    "node_modules",
    ".dynhost",
    ".git",
    "__pycache__",
    "gen",
];

/// What a file looked like: changed when its modification time or size did.
type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

/// Runs `round` now and after every change below `root`, until SIGINT or
/// SIGTERM (a signal during a round first stops that run cleanly, as
/// without `--watch`). `round` reports its own outcome.
///
/// # Errors
/// If the signal handlers cannot be installed.
pub fn watch(
    root: &Path,
    mut round: impl FnMut() -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_usize(signal, stop.clone(), signal as usize)?;
    }
    let stopped = || match stop.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(ExitCode::from(
            u8::try_from(128 + signal).unwrap_or(u8::MAX),
        )),
    };
    loop {
        let before = snapshot(root);
        if let Err(error) = round() {
            note!("error: {error:#}");
        }
        if let Some(code) = stopped() {
            return Ok(code);
        }
        note!("watching {} for changes (Ctrl-C to stop)…", root.display());
        // Sources written while the round ran count too.
        let mut seen = before;
        loop {
            std::thread::sleep(POLL);
            if let Some(code) = stopped() {
                return Ok(code);
            }
            let now = snapshot(root);
            if now != seen {
                // Let an editor or build finish writing before the next round.
                std::thread::sleep(POLL);
                let settled = snapshot(root);
                if settled == now {
                    let changed = changed(&seen, &settled);
                    note!("changed: {changed}; running again");
                    break;
                }
                seen = now;
            }
        }
    }
}

/// The first few changed paths, for the message.
fn changed(before: &Snapshot, after: &Snapshot) -> String {
    let mut paths: Vec<String> = after
        .iter()
        .filter(|(path, meta)| before.get(*path) != Some(meta))
        .map(|(path, _)| path.display().to_string())
        .chain(
            before
                .keys()
                .filter(|path| !after.contains_key(*path))
                .map(|path| format!("{} (removed)", path.display())),
        )
        .collect();
    let more = paths.len().saturating_sub(3);
    paths.truncate(3);
    if more > 0 {
        paths.push(format!("{more} more"));
    }
    paths.join(", ")
}

/// Every file below `root` outside [`IGNORED`] directories and what builds
/// write (`.wasm`, `.pyc`, `package-lock.json`).
fn snapshot(root: &Path) -> Snapshot {
    let mut files = Snapshot::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            if kind.is_dir() {
                if !IGNORED.iter().any(|i| name == *i) {
                    dirs.push(path);
                }
            } else if path.extension().is_none_or(|e| e != "wasm" && e != "pyc")
                && name != "package-lock.json"
                && let Ok(meta) = entry.metadata()
            {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.insert(path, (modified, meta.len()));
            }
        }
    }
    files
}
