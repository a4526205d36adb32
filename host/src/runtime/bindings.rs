//! The only `bindgen!`s in dynhost: host-side types for both versions of the
//! `dynhost:op` world. Both are linked, so a component built against 0.1.0
//! runs next to one built against 0.2.0 (`wit/op.wit`); which one a
//! component is, its `dynhost:op/op@…` export says.
//!
//! Imports are `trappable` so that `emit-dynamic` can stop a guest that breaks
//! a limit, instead of trusting it to honour an error result. Exports are
//! synchronous: a step is a plain call (no fiber); its time limit reaches it
//! inside a WASI call through `bounded`.

/// `dynhost:op@0.1.0`: `run` returns bytes; no metadata.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "dynamic-op",
        imports: { default: trappable },
    });
}

/// `dynhost:op@0.2.0`: metadata on items and results, an optional result.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "dynamic-op",
        imports: { default: trappable },
    });
}
