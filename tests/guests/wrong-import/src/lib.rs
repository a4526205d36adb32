//! A dynhost op that also imports an interface the host does not provide;
//! used to test that the load error names the import.

wit_bindgen::generate!({ path: "wit", world: "op-with-extra", generate_all });

use exports::dynhost::op::op::{Context, Guest, Input};

struct Op;

impl Guest for Op {
    fn run(_ctx: Context, _inputs: Vec<Input>) -> Result<Option<Vec<u8>>, String> {
        Ok(Some(test::extra::secret::steal().into_bytes()))
    }
}

export!(Op);
