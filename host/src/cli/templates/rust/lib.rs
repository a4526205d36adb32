//! A dynhost op in Rust: the whole pattern in one component. Without inputs
//! it reads words from the file `config.file` and emits one item per word;
//! mapped over those items, it returns each word in capitals (failing for
//! `config.fail_on`); collecting them, it joins them with spaces. Each item
//! carries its position as metadata (`dynhost show RUN 'words'` lists it).

wit_bindgen::generate!({ path: "wit", world: "dynamic-op" });

use dynhost::op::host::emit;
use dynhost::op::types::{InputValue, MetadataEntry, MetadataValue};
use exports::dynhost::op::op::{Context, Guest, Input};

struct Op;

impl Guest for Op {
    // Return `Ok(Some(bytes))` for a value, `Ok(None)` for "no value" (when
    // job.toml says `returns = { required = false }`: readers are skipped).
    // Fail a step by returning `Err(message)`: it fails as `op-error`.
    fn run(ctx: Context, inputs: Vec<Input>) -> Result<Option<Vec<u8>>, String> {
        let config: serde_json::Value =
            serde_json::from_str(&ctx.config).map_err(|e| e.to_string())?;
        match inputs.into_iter().next().map(|input| input.value) {
            None => {
                let file = config["file"].as_str().ok_or("config needs `file`")?;
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read `{file}`: {e}"))?;
                let words: Vec<&str> = text.split_whitespace().collect();
                for (position, word) in words.iter().enumerate() {
                    let value = serde_json::to_vec(word).map_err(|e| e.to_string())?;
                    let metadata = [MetadataEntry {
                        label: "position".into(),
                        value: MetadataValue::Integer(position as i64),
                    }];
                    emit("result", &key_for(word), &value, &metadata)?;
                }
                json(words.len().into())
            }
            Some(InputValue::Single(bytes)) => {
                let word: String = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                if config["fail_on"].as_str() == Some(word.as_str()) {
                    return Err(format!("cannot shout \"{word}\""));
                }
                json(word.to_uppercase().into())
            }
            Some(InputValue::Collected(collection)) => {
                let mut words = Vec::new();
                for item in collection.items {
                    let word: String =
                        serde_json::from_slice(&item.value).map_err(|e| e.to_string())?;
                    words.push(word);
                }
                json(words.join(" ").into())
            }
        }
    }
}

/// A value as the op's JSON result.
fn json(value: serde_json::Value) -> Result<Option<Vec<u8>>, String> {
    serde_json::to_vec(&value).map(Some).map_err(|e| e.to_string())
}

/// The mapping key for any text: valid (1–128 of `A-Za-z0-9_.-`), unique and
/// stable. Valid text is its own key; anything else is cleaned (other
/// characters become `_`) and given a short hash of the original, so two
/// texts that clean alike still get different keys.
fn key_for(name: &str) -> String {
    const MAX: usize = 128;
    let valid = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    if !name.is_empty() && name.len() <= MAX && name.chars().all(valid) && name != "." && name != ".." {
        return name.to_owned();
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("-{:012x}", hash & 0xffff_ffff_ffff);
    let cleaned: String = name
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .take(MAX - suffix.len())
        .collect();
    format!("{cleaned}{suffix}")
}

export!(Op);
