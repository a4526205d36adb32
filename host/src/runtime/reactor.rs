//! One current-thread tokio runtime per thread that runs steps.
//!
//! A step is an async wasmtime call so that its time limit can cancel it
//! while it waits in a WASI call (the epoch deadline fires only while wasm
//! runs). WASI's clocks and blocking file calls need a tokio runtime; a
//! current-thread one per worker costs no cross-thread wake-ups for steps
//! that never wait, and is built once per thread, not per step.

use std::cell::RefCell;
use std::future::Future;

thread_local! {
    static REACTOR: RefCell<Reactor> = const { RefCell::new(Reactor(None)) };
}

/// The thread's runtime, shut down without waiting when the thread ends: a
/// step cancelled in a blocking read (a FIFO nobody writes) leaves a blocked
/// thread in the runtime's blocking pool, which must not hold the worker.
struct Reactor(Option<tokio::runtime::Runtime>);

impl Drop for Reactor {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` to completion on this thread's runtime.
///
/// # Errors
/// The reason, if the runtime cannot be built.
///
/// # Panics
/// If called from inside an async context (a step is never run from one).
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
    REACTOR.with(|cell| {
        let mut reactor = cell.borrow_mut();
        if reactor.0.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("dynhost-blocking")
                .build()
                .map_err(|e| e.to_string())?;
            reactor.0 = Some(runtime);
        }
        let runtime = reactor.0.as_ref().ok_or("no runtime")?;
        Ok(runtime.block_on(future))
    })
}
