//! A dynhost op in Rust. Without inputs it emits one item per word in
//! `config.words`; mapped over those items, it returns each word in capitals.

wit_bindgen::generate!({ path: "wit", world: "dynamic-op" });

use dynhost::op::host::emit_dynamic;
use dynhost::op::types::InputValue;
use exports::dynhost::op::op::{Context, Guest, Input};

struct Op;

impl Guest for Op {
    fn run(ctx: Context, inputs: Vec<Input>) -> Result<Vec<u8>, String> {
        let config: serde_json::Value = serde_json::from_str(&ctx.config).map_err(|e| e.to_string())?;
        match inputs.into_iter().next().map(|input| input.value) {
            None => {
                let words = config["words"].as_array().cloned().unwrap_or_default();
                for word in &words {
                    let word = word.as_str().ok_or("`words` must be strings")?;
                    emit_dynamic(word, &serde_json::to_vec(word).map_err(|e| e.to_string())?)?;
                }
                serde_json::to_vec(&words.len()).map_err(|e| e.to_string())
            }
            Some(InputValue::Single(bytes)) => {
                let word: String = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                serde_json::to_vec(&word.to_uppercase()).map_err(|e| e.to_string())
            }
            Some(InputValue::Collected(_)) => Err("expected a single input".into()),
        }
    }
}

export!(Op);
