//! The only `bindgen!`s in dynhost: host-side types for both versions of the
//! `dynhost:op` world. Both are linked, so a component built against 0.1.0
//! runs next to one built against 0.2.0 (`wit/op.wit`); which one a
//! component is, its `dynhost:op/op@…` export says.
//!
//! Imports are `trappable` so that `emit-dynamic` can stop a guest that breaks
//! a limit, instead of trusting it to honour an error result. Exports are
//! `async`: a step is a future, so its time limit can end it even while it is
//! blocked inside a WASI call (a sleep, a poll, a read of a FIFO), where the
//! epoch deadline alone never fires.

/// `dynhost:op@0.1.0`: `run` returns bytes; no metadata.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "dynamic-op",
        imports: { default: trappable },
        exports: { default: async },
    });
}

/// `dynhost:op@0.2.0`: metadata on items and results, an optional result.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "dynamic-op",
        imports: { default: trappable },
        exports: { default: async },
    });
}
