//! `summarize_directory`: collects every file's size and returns the total
//! as JSON `{"files": n, "total_bytes": sum}`.

wit_bindgen::generate!({ path: "../../../wit", world: "dynamic-op" });

use dynhost::op::types::InputValue;
use exports::dynhost::op::op::{Context, Guest, Input};

struct Op;

impl Guest for Op {
    fn run(_ctx: Context, inputs: Vec<Input>) -> Result<Option<Vec<u8>>, String> {
        let Some(InputValue::Collected(sizes)) = inputs
            .into_iter()
            .find(|i| i.name == "sizes")
            .map(|i| i.value)
        else {
            return Err("expected a collected input named `sizes`".into());
        };
        let mut total: u64 = 0;
        for item in &sizes.items {
            let size: u64 = serde_json::from_slice(&item.value)
                .map_err(|e| format!("size of {:?} is not a number: {e}", item.keys))?;
            total += size;
        }
        let summary = serde_json::json!({ "files": sizes.items.len(), "total_bytes": total });
        serde_json::to_vec(&summary)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

export!(Op);
