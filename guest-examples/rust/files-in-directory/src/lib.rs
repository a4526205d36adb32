//! `files_in_directory`: emits one dynamic output per file in the directory
//! named by `config.path`, keyed by the file name cleaned to a valid mapping key.
//! The value is the file's path as a JSON string. Returns the number of files.

wit_bindgen::generate!({ path: "../../../wit", world: "dynamic-op" });

use dynhost::op::host::emit_dynamic;
use exports::dynhost::op::op::{Context, Guest, Input};

struct Op;

impl Guest for Op {
    fn run(ctx: Context, _inputs: Vec<Input>) -> Result<Vec<u8>, String> {
        let config: serde_json::Value =
            serde_json::from_str(&ctx.config).map_err(|e| format!("config is not JSON: {e}"))?;
        let dir = config["path"]
            .as_str()
            .ok_or("config needs `path` (a directory)")?;
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list `{dir}`: {e}"))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        // Directory order is not stable across file systems; sort so runs repeat.
        names.sort();
        for name in &names {
            let path = format!("{}/{}", dir.trim_end_matches('/'), name);
            let value = serde_json::to_vec(&path).map_err(|e| e.to_string())?;
            emit_dynamic(&clean(name), &value)?;
        }
        serde_json::to_vec(&names.len()).map_err(|e| e.to_string())
    }
}

/// Dagster's `_clean`: a file name becomes a mapping key by replacing every
/// character outside `[A-Za-z0-9_.-]` with `_`.
fn clean(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

export!(Op);
