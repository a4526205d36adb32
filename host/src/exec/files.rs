//! Values written out as files (`values_dir` on an op, Dagster's
//! `io_manager_key` for a file system): each succeeded step's value at
//! `DIR/OP/KEY` (`DIR/OP/OUTER/INNER` when nested, `DIR/OP` outside any
//! map), for tools outside dynhost; a named plain output `NAME` beside it at
//! `DIR/OP.NAME/KEY` (op names have no `.`, so the two never meet). The run store stays the source of truth
//! for resume; a resumed or reused step writes its file again, so the
//! directory is whole after every run. Writes go through a temporary file
//! and a rename, so a reader never sees half a value.

use crate::key::MappingKey;
use std::path::{Path, PathBuf};

/// Where a step's value goes. Keys are valid file names by their rule
/// (`A-Za-z0-9_-.`, never `.` or `..`), so no key can leave `dir`.
pub(crate) fn value_path(dir: &Path, op: &str, keys: &[MappingKey]) -> PathBuf {
    let mut path = dir.join(op);
    for key in keys {
        path.push(key.as_str());
    }
    path
}

/// Writes a step's result (unless it has none) and its named plain outputs
/// that were set.
///
/// # Errors
/// As [`write_value`], for the first that fails.
pub(crate) fn write_values(
    dir: &Path,
    op: &str,
    keys: &[MappingKey],
    result: Option<&[u8]>,
    named: &[(&str, &[u8])],
) -> Result<(), String> {
    if let Some(bytes) = result {
        write_value(dir, op, keys, bytes)?;
    }
    for (name, bytes) in named {
        write_value(dir, &format!("{op}.{name}"), keys, bytes)?;
    }
    Ok(())
}

/// Writes `bytes` at [`value_path`].
///
/// # Errors
/// A message naming the file and the cause.
pub(crate) fn write_value(
    dir: &Path,
    op: &str,
    keys: &[MappingKey],
    bytes: &[u8],
) -> Result<(), String> {
    let path = value_path(dir, op, keys);
    let fail = |e: std::io::Error| {
        format!(
            "cannot write the value to `{}`: {e}; check the op's `values_dir`",
            path.display()
        )
    };
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(fail)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(fail)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(fail)?;
    tmp.persist(&path).map_err(|e| fail(e.error))?;
    Ok(())
}
