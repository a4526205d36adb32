//! Ends blocking file-system calls of steps whose time is up.
//!
//! File-system calls run on the worker's own thread (wasmtime-wasi's
//! `allow_blocking_current_thread`): a `stat` then costs a system call, not
//! a hop to tokio's blocking pool and back (issue 15: ~4× less CPU on the
//! seed job). But a call that blocks — opening or reading a FIFO nobody
//! writes, inside a mount — then blocks the worker thread itself, where no
//! timer can run. So each worker thread publishes its step's deadline here,
//! and the epoch ticker, which wakes every 10 ms anyway, sends a thread whose
//! step is past its deadline (or whose run was interrupted) a signal whose
//! handler does nothing and is installed without `SA_RESTART`: the blocked
//! system call returns `EINTR`, WASI hands the op an error, and as soon as
//! wasm runs again the epoch deadline stops it. A step that was kicked
//! fails as `timeout` (or `interrupted`), whatever the op made of the error.
//!
//! The only unsafe code of the runtime: installing the handler and
//! `pthread_kill`, each on a thread id that is known to be alive (a thread
//! leaves the registry before it exits, under the lock the ticker holds
//! while it sends).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// How long past its deadline a step may stay blocked before it is kicked:
/// a step that is merely finishing is left alone.
const GRACE: Duration = Duration::from_millis(20);

/// The signal: a real-time one the C library does not reserve, so it can
/// mean nothing else in this process.
fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// The process's watched worker threads.
static REGISTRY: Mutex<Vec<Arc<Watch>>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// The time base for deadlines stored as nanoseconds in an atomic.
fn base() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// One worker thread's current step.
pub(crate) struct Watch {
    thread: libc::pthread_t,
    /// When the step must end (nanoseconds after [`base`]); 0: no step.
    deadline: AtomicU64,
    /// Set by the ticker when it sent the signal for this step.
    kicked: AtomicBool,
}

thread_local! {
    static THIS: Registered = Registered::new();
}

/// This thread's entry in the registry, removed when the thread ends.
struct Registered(Arc<Watch>);

impl Registered {
    fn new() -> Self {
        install();
        let watch = Arc::new(Watch {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            deadline: AtomicU64::new(0),
            kicked: AtomicBool::new(false),
        });
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(watch.clone());
        Self(watch)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Under the lock: once removed, the ticker never sends to this
        // thread again, so no signal can reach a thread id that was reused.
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| !Arc::ptr_eq(w, &self.0));
    }
}

extern "C" fn nothing(_: libc::c_int) {}

/// Installs the do-nothing handler once, without `SA_RESTART` (so blocked
/// calls return `EINTR` instead of resuming).
fn install() {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler
        // is an `extern "C" fn(c_int)` that touches nothing, so it is
        // async-signal-safe; the signal is one nothing else in the process uses.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = nothing as *const () as libc::sighandler_t;
            action.sa_flags = 0;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal(), &action, std::ptr::null_mut()) != 0 {
                tracing::warn!(
                    "cannot install the handler that ends blocked file calls at their time limit: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    });
}

/// Marks the calling thread as running a step until `deadline`; the guard
/// ends the watch and says whether the step was kicked.
pub(crate) fn watch(deadline: Instant) -> Guard {
    THIS.with(|this| {
        let watch = this.0.clone();
        watch.kicked.store(false, Ordering::Relaxed);
        watch.deadline.store(nanos(deadline), Ordering::Release);
        Guard(watch)
    })
}

/// Moves the calling thread's step deadline `by` later (time the host held
/// the step back), and forgets a signal sent meanwhile: the wait it
/// interrupted was the host's, not a blocked call of the op.
pub(crate) fn postpone(by: Duration) {
    THIS.with(|this| {
        let deadline = this.0.deadline.load(Ordering::Acquire);
        if deadline != 0 {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            this.0
                .deadline
                .store(deadline.saturating_add(by), Ordering::Release);
            this.0.kicked.store(false, Ordering::Release);
        }
    });
}

/// The watch of one step.
pub(crate) struct Guard(Arc<Watch>);

impl Guard {
    /// Whether the ticker had to signal the step's thread.
    pub fn kicked(&self) -> bool {
        self.0.kicked.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.deadline.store(0, Ordering::Release);
    }
}

/// Called by the epoch ticker: signals every thread whose step is past its
/// deadline (plus [`GRACE`]), or every thread running a step when the run
/// is interrupted. Repeats each tick while the step stays blocked.
pub(crate) fn kick_overdue(interrupted: bool) {
    let now = nanos(Instant::now());
    let grace = u64::try_from(GRACE.as_nanos()).unwrap_or(u64::MAX);
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    for watch in registry.iter() {
        let deadline = watch.deadline.load(Ordering::Acquire);
        if deadline != 0 && (interrupted || now > deadline.saturating_add(grace)) {
            watch.kicked.store(true, Ordering::Release);
            // SAFETY: the thread is alive: it leaves the registry (under
            // this lock) before it exits.
            unsafe {
                libc::pthread_kill(watch.thread, signal());
            }
        }
    }
}
