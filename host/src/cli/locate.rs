//! Where the run history lives, found the same way by every command.
//!
//! One rule, so that `dynhost runs`, `show`, `logs` and `resume` find from
//! any directory every run that `dynhost run` recorded:
//!
//! 1. `--store DIR`;
//! 2. else `$DYNHOST_HOME`;
//! 3. else the nearest `.dynhost/` directory, looking in the job file's
//!    directory (`run`) or the current directory (everything else) and then
//!    in each parent, like git finds `.git/` — a project keeps its own
//!    history by creating `.dynhost/` at its root;
//! 4. else the user's store, `$XDG_DATA_HOME/dynhost` (default
//!    `~/.local/share/dynhost`), shared by every job that has no project
//!    store.
//!
//! Only `run` and `resume` write; the other commands never create a store.
//! The environment is read here, at the edge; the library only gets paths.

use dynhost::store::SqliteStore;
use std::path::{Path, PathBuf};

/// The project store's directory name.
const PROJECT_DIR: &str = ".dynhost";

/// The store's file inside its directory.
const FILE: &str = "runs.db";

/// Where a command's store is, and why it is there (for messages).
pub struct Location {
    pub dir: PathBuf,
    pub reason: &'static str,
}

impl Location {
    /// The store file.
    pub fn file(&self) -> PathBuf {
        self.dir.join(FILE)
    }
}

/// The store directory for a command that starts looking in `start`.
///
/// # Errors
/// When no rule gives a directory (no `.dynhost/` up the tree, and neither
/// `XDG_DATA_HOME` nor `HOME` is set).
pub fn locate(flag: Option<&Path>, start: &Path) -> anyhow::Result<Location> {
    if let Some(dir) = flag {
        return Ok(Location {
            dir: dir.to_path_buf(),
            reason: "--store",
        });
    }
    if let Some(home) = std::env::var_os("DYNHOST_HOME").filter(|h| !h.is_empty()) {
        return Ok(Location {
            dir: PathBuf::from(home),
            reason: "$DYNHOST_HOME",
        });
    }
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    if let Some(dir) = start
        .ancestors()
        .map(|dir| dir.join(PROJECT_DIR))
        .find(|dir| dir.is_dir())
    {
        return Ok(Location {
            dir,
            reason: "the nearest .dynhost/",
        });
    }
    user_store().map(|dir| Location {
        dir,
        reason: "the user store (no .dynhost/ here or above)",
    })
}

/// `$XDG_DATA_HOME/dynhost`, else `~/.local/share/dynhost`.
fn user_store() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("dynhost"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/dynhost")),
        None => anyhow::bail!(
            "no run store: no .dynhost/ directory here or above, and neither XDG_DATA_HOME nor HOME is set; pass --store DIR or set DYNHOST_HOME"
        ),
    }
}

/// Opens (creating if needed) the store a run records into.
pub fn open_for_writing(location: &Location) -> anyhow::Result<SqliteStore> {
    Ok(SqliteStore::open(&location.file())?)
}

/// Opens an existing store for a command that only reads (or resumes), or
/// says where it looked. Never creates a file.
pub fn open_existing(location: &Location) -> anyhow::Result<Option<SqliteStore>> {
    let file = location.file();
    if !file.is_file() {
        return Ok(None);
    }
    Ok(Some(SqliteStore::open(&file)?))
}

/// The error for a command that needs a run when there is no store at all.
pub fn no_store(location: &Location) -> anyhow::Error {
    anyhow::anyhow!(
        "no runs recorded in {} ({}); run a job first, or pass --store DIR / set DYNHOST_HOME to the store that has the run",
        location.dir.display(),
        location.reason
    )
}
