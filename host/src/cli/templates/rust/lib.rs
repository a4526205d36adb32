//! A dynhost op in Rust: the whole pattern in one component. Without inputs
//! it reads words from the file `config.file` and emits one item per word;
//! mapped over those items, it returns each word in capitals (failing for
//! `config.fail_on`); collecting them, it joins them with spaces.

wit_bindgen::generate!({ path: "wit", world: "dynamic-op" });

use dynhost::op::host::emit_dynamic;
use dynhost::op::types::InputValue;
use exports::dynhost::op::op::{Context, Guest, Input};

struct Op;

impl Guest for Op {
    // Fail a step by returning `Err(message)`: it fails as `op-error`.
    fn run(ctx: Context, inputs: Vec<Input>) -> Result<Vec<u8>, String> {
        let config: serde_json::Value =
            serde_json::from_str(&ctx.config).map_err(|e| e.to_string())?;
        match inputs.into_iter().next().map(|input| input.value) {
            None => {
                let file = config["file"].as_str().ok_or("config needs `file`")?;
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read `{file}`: {e}"))?;
                let words: Vec<&str> = text.split_whitespace().collect();
                for word in &words {
                    let value = serde_json::to_vec(word).map_err(|e| e.to_string())?;
                    emit_dynamic(&key_for(word), &value)?;
                }
                serde_json::to_vec(&words.len()).map_err(|e| e.to_string())
            }
            Some(InputValue::Single(bytes)) => {
                let word: String = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                if config["fail_on"].as_str() == Some(word.as_str()) {
                    return Err(format!("cannot shout \"{word}\""));
                }
                serde_json::to_vec(&word.to_uppercase()).map_err(|e| e.to_string())
            }
            Some(InputValue::Collected(collection)) => {
                let mut words = Vec::new();
                for item in collection.items {
                    let word: String =
                        serde_json::from_slice(&item.value).map_err(|e| e.to_string())?;
                    words.push(word);
                }
                serde_json::to_vec(&words.join(" ")).map_err(|e| e.to_string())
            }
        }
    }
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
