//! A component with the dynhost interface names whose `run` takes only
//! `ctx`: loading (and so `validate`) must refuse it, naming `run`.

wit_bindgen::generate!({ path: "wit", world: "dynamic-op" });

use exports::dynhost::op::op::{Context, Guest};

struct Op;

impl Guest for Op {
    fn run(ctx: Context) -> Result<Vec<u8>, String> {
        Ok(ctx.op.into_bytes())
    }
}

export!(Op);
