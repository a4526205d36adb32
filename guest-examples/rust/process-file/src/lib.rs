//! `process_file`: mapped once per file; reads the file at the path given by
//! its `path` input and returns its size in bytes as a JSON number, with the
//! path as metadata on the result (shown by `dynhost show RUN 'process_file[KEY]'`).

wit_bindgen::generate!({ path: "../../../wit", world: "dynamic-op" });

use dynhost::op::host::add_output_metadata;
use dynhost::op::types::{InputValue, MetadataEntry, MetadataValue};
use exports::dynhost::op::op::{Context, Guest, Input};

struct Op;

impl Guest for Op {
    fn run(_ctx: Context, inputs: Vec<Input>) -> Result<Option<Vec<u8>>, String> {
        let Some(InputValue::Single(bytes)) = inputs
            .into_iter()
            .find(|i| i.name == "path")
            .map(|i| i.value)
        else {
            return Err("expected a single input named `path`".into());
        };
        let path: String = serde_json::from_slice(&bytes)
            .map_err(|e| format!("`path` is not a JSON string: {e}"))?;
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("cannot stat `{path}`: {e}"))?
            .len();
        add_output_metadata(
            "result",
            &[MetadataEntry {
                label: "path".into(),
                value: MetadataValue::Path(path),
            }],
        )?;
        serde_json::to_vec(&size)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

export!(Op);
