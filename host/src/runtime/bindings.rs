//! The only `bindgen!` in dynhost: host-side types for the `dynhost:op` world.
//!
//! Imports are `trappable` so that `emit-dynamic` can stop a guest that breaks
//! a limit, instead of trusting it to honour an error result. Exports are
//! `async`: a step is a future, so its time limit can end it even while it is
//! blocked inside a WASI call (a sleep, a poll, a read of a FIFO), where the
//! epoch deadline alone never fires.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "dynamic-op",
    imports: { default: trappable },
    exports: { default: async },
});

pub use self::dynhost::op::types::{Collection, FailedItem, Input, InputValue, Item, Level};
pub use self::exports::dynhost::op::op::Context;
