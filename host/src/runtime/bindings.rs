//! The only `bindgen!` in dynhost: host-side types for the `dynhost:op` world.
//!
//! Imports are `trappable` so that `emit-dynamic` can stop a guest that breaks
//! a limit, instead of trusting it to honour an error result.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "dynamic-op",
    imports: { default: trappable },
});

pub use self::dynhost::op::types::{Collection, FailedItem, Input, InputValue, Item, Level};
pub use self::exports::dynhost::op::op::Context;
