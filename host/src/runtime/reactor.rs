//! One current-thread tokio runtime per thread that runs steps.
//!
//! A WASI call that waits (a sleep, a poll, a blocking read) is driven here
//! next to the step's time limit (see `bounded`; the epoch deadline fires
//! only while wasm runs). WASI's clocks and streams need a tokio runtime; a
//! current-thread one per worker costs no cross-thread wake-ups for calls
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
/// The future is polled once first with the runtime's handle entered but
/// outside `block_on`: a call that never waits (nearly all) finishes in that
/// poll and never pays for entering the scheduler. One that waits is then
/// driven by `block_on`, which polls it again with a real waker (a future
/// re-registers its waker on every poll, so the first poll's no-op waker is
/// never relied on).
///
/// # Errors
/// The reason, if the runtime cannot be built.
///
/// # Panics
/// If called from inside an async context (a step is never run from one,
/// and a WASI call never calls back into wasm).
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
        let _entered = runtime.enter();
        // Pinned in place: the (large) step future is never moved again.
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Ok(output);
        }
        Ok(runtime.block_on(future))
    })
}
