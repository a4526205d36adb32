//! Copying the write-ahead log into the database from its own thread.
//!
//! SQLite's automatic checkpoint runs on the connection that commits, inside
//! the commit that crossed the limit: for a million-step run that is the
//! recorder's writer thread copying 64 MiB and waiting for two `fsync`s
//! (~0.25 s on this VM) every few seconds, long enough for the run's
//! coordinator to fill the recorder's queue (its lag bound of writes) and
//! stop handing out steps. Here the writer's commits only ask for a
//! checkpoint, and a thread with its own connection runs it (a passive
//! checkpoint: SQLite lets it run beside the writer's commits). The crash
//! guarantees are SQLite's either way: a checkpoint copies committed pages.

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// WAL pages (4 KiB) after a commit at which the checkpointer is asked to
/// run: the 64 MiB the automatic checkpoint used (hot B-tree pages a long
/// run rewrites in every commit are copied once per this many pages).
pub(super) const CHECKPOINT_PAGES: i32 = 16384;

/// Lets a WAL grow past [`CHECKPOINT_PAGES`] by this factor before the
/// committing connection checkpoints itself (after waiting for the
/// checkpointer's pass): a disk slower than the writer then slows the run
/// down, as the automatic checkpoint did, instead of growing the WAL.
const BACKSTOP_FACTOR: i32 = 4;

/// What the committing connection and the checkpointer thread share.
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Held for each checkpoint pass, by either side: one at a time.
    pass: Mutex<()>,
    /// Passes the thread ran (for tests and curiosity).
    passes: AtomicU64,
}

#[derive(Default)]
struct State {
    wanted: bool,
    stop: bool,
}

/// The checkpointer thread of one store handle; stops when dropped.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts a checkpointer for the database at `path` and hands its
    /// requests to `conn`'s commits (replacing the automatic checkpoint);
    /// `pages` is when to ask ([`CHECKPOINT_PAGES`]). `None` (the automatic
    /// checkpoint stays) when the second connection or the thread cannot be
    /// had.
    pub fn start(conn: &mut Connection, path: &Path, pages: i32) -> Option<Self> {
        let own = Connection::open(path).ok()?;
        own.busy_timeout(super::BUSY_TIMEOUT).ok()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            pass: Mutex::new(()),
            passes: AtomicU64::new(0),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dynhost-checkpoint".into())
            .spawn(move || run(&own, &theirs))
            .ok()?;
        let checkpointer = Self {
            shared: shared.clone(),
            thread: Some(thread),
        };
        let backstop = pages.saturating_mul(BACKSTOP_FACTOR);
        conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames: i32| {
            if frames >= backstop {
                // The thread is not keeping up: wait for its pass, then
                // copy what is left here (a busy reader may leave some).
                let _pass = lock(&shared.pass);
                if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    tracing::debug!("checkpoint on commit: {e}");
                }
            } else if frames >= pages {
                let mut state = lock(&shared.state);
                state.wanted = true;
                shared.wake.notify_one();
            }
            Ok(())
        }))
        .ok()?;
        Some(checkpointer)
    }

    /// Checkpoint passes the thread has run.
    #[cfg(test)]
    pub fn passes(&self) -> u64 {
        self.shared.passes.load(Ordering::Relaxed)
    }

    /// Stops the thread and waits for it; the commits' hook stays (so only
    /// its backstop checkpoints from then on).
    pub fn stop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The thread: a passive checkpoint per request, until stopped.
fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = lock(&shared.state);
            while !state.wanted && !state.stop {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.stop {
                return;
            }
            state.wanted = false;
        }
        let _pass = lock(&shared.pass);
        // Passive: copies what no reader still needs and never blocks the
        // writer; what it leaves, a later request copies.
        if let Err(e) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            tracing::debug!("background checkpoint: {e}");
        }
        shared.passes.fetch_add(1, Ordering::Relaxed);
    }
}
