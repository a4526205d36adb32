//! `files_in_directory`: emits one dynamic output per file in the directory
//! named by `config.path`, keyed by [`key_for`] (valid, unique and stable for
//! any file name). The value is the file's path as a JSON string. Returns the
//! number of files.
//!
//! Like Dagster's `os.walk`: symbolic links to files count as files (a broken
//! one is emitted too, and its `process_file` step fails, as `getsize` does
//! in Dagster). Subdirectories are skipped with a warning in the step's log,
//! or walked with `config.recursive = true`. Nothing is dropped silently: an
//! entry that cannot be read (WASI cannot represent a file name that is not
//! UTF-8) fails the op, naming the directory, unless
//! `config.skip_unreadable = true`, which logs a warning and lists the rest.

wit_bindgen::generate!({ path: "../../../wit", world: "dynamic-op" });

use dynhost::op::host::{emit_dynamic, log};
use dynhost::op::types::Level;
use exports::dynhost::op::op::{Context, Guest, Input};
use std::collections::BTreeSet;
use wasi::filesystem::preopens::get_directories;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, DescriptorType, OpenFlags, PathFlags};

struct Op;

/// What the op was asked to do.
struct Walk {
    recursive: bool,
    skip_unreadable: bool,
}

impl Guest for Op {
    fn run(ctx: Context, _inputs: Vec<Input>) -> Result<Option<Vec<u8>>, String> {
        let config: serde_json::Value =
            serde_json::from_str(&ctx.config).map_err(|e| format!("config is not JSON: {e}"))?;
        let dir = config["path"]
            .as_str()
            .ok_or("config needs `path` (a directory)")?;
        let walk = Walk {
            recursive: config["recursive"].as_bool().unwrap_or(false),
            skip_unreadable: config["skip_unreadable"].as_bool().unwrap_or(false),
        };
        let root = dir.trim_end_matches('/');
        let mut files = BTreeSet::new();
        walk.list(&open_dir(root)?, root, "", &mut files)?;
        // Sorted (a BTreeSet), so runs repeat whatever the directory order.
        for relative in &files {
            let value =
                serde_json::to_vec(&format!("{root}/{relative}")).map_err(|e| e.to_string())?;
            emit_dynamic(&key_for(relative), &value)?;
        }
        serde_json::to_vec(&files.len())
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// Opens `path`, which must lie in a directory mounted for the op.
///
/// The listing below uses WASI's directory stream directly rather than
/// `std::fs::read_dir`: std's listing ends at the first entry it cannot
/// read (a name that is not UTF-8), while the stream goes on past it, so
/// such an entry can be reported and skipped without losing the rest.
fn open_dir(path: &str) -> Result<Descriptor, String> {
    for (dir, mount) in get_directories() {
        let mount = mount.trim_end_matches('/');
        if path == mount {
            return Ok(dir);
        }
        if let Some(rest) = path.strip_prefix(mount).and_then(|r| r.strip_prefix('/')) {
            return dir
                .open_at(
                    PathFlags::SYMLINK_FOLLOW,
                    rest,
                    OpenFlags::DIRECTORY,
                    DescriptorFlags::READ,
                )
                .map_err(|e| format!("cannot open `{path}`: {e}"));
        }
    }
    Err(format!(
        "`{path}` is not in a directory mounted for this op; add it to the op's `mounts` in job.toml"
    ))
}

impl Walk {
    /// Adds the files of `dir` (shown as `shown`) to `files`, as paths
    /// relative to the walk's root (`relative` is `dir`'s), walking into
    /// subdirectories if `recursive`.
    fn list(
        &self,
        dir: &Descriptor,
        shown: &str,
        relative: &str,
        files: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        let entries = dir
            .read_directory()
            .map_err(|e| format!("cannot list `{shown}`: {e}"))?;
        let mut listed = 0;
        loop {
            let entry = match entries.read_directory_entry() {
                Ok(Some(entry)) => entry,
                Ok(None) => return Ok(()),
                Err(e) if self.skip_unreadable => {
                    log(
                        Level::Warn,
                        &format!(
                            "`{shown}`: skipped an entry that cannot be read ({e}); a name that is not UTF-8 cannot pass through WASI"
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    return Err(format!(
                        "`{shown}`: an entry cannot be read after {listed} were listed ({e}); a file name that is not UTF-8 cannot pass through WASI. Rename it, or set `skip_unreadable = true` in the op's config to go on without it"
                    ));
                }
            };
            listed += 1;
            let name = entry.name;
            let path = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            // A link counts as what it points to; a broken one as a file.
            let (is_dir, is_link) = match entry.type_ {
                DescriptorType::Directory => (true, false),
                DescriptorType::SymbolicLink => (
                    dir.stat_at(PathFlags::SYMLINK_FOLLOW, &name)
                        .is_ok_and(|s| s.type_ == DescriptorType::Directory),
                    true,
                ),
                _ => (false, false),
            };
            if !is_dir {
                files.insert(path);
            } else if self.recursive && !is_link {
                let sub = dir
                    .open_at(
                        PathFlags::empty(),
                        &name,
                        OpenFlags::DIRECTORY,
                        DescriptorFlags::READ,
                    )
                    .map_err(|e| format!("cannot open `{shown}/{name}`: {e}"))?;
                self.list(&sub, &format!("{shown}/{name}"), &path, files)?;
            } else {
                log(
                    Level::Warn,
                    &format!(
                        "skipped directory `{shown}/{name}`; set `recursive = true` in the op's config to include it"
                    ),
                );
            }
        }
    }
}

/// The mapping key for any name: valid, unique and stable.
///
/// A name that is already a valid key (1–128 characters from
/// `A-Za-z0-9_.-`, not `.` or `..`) is its own key. Any other name is
/// cleaned as Dagster's `_clean` does (every other character becomes `_`),
/// cut to fit, and given a short hash of the original name, so two names that
/// clean alike (`a b.txt`, `a+b.txt`) still get different keys, and a name's
/// key never depends on which other files exist (so a resume finds it again).
fn key_for(name: &str) -> String {
    const MAX: usize = 128;
    let valid = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    if !name.is_empty()
        && name.len() <= MAX
        && name.chars().all(valid)
        && name != "."
        && name != ".."
    {
        return name.to_owned();
    }
    let suffix = format!("-{:012x}", fnv1a(name.as_bytes()) & 0xffff_ffff_ffff);
    let cleaned: String = name
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .take(MAX - suffix.len())
        .collect();
    format!("{cleaned}{suffix}")
}

/// FNV-1a, 64 bits: stable across runs, platforms and versions (unlike
/// `std`'s hasher), which a key must be.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

export!(Op);
