//! Ctrl-C and SIGTERM during a run: the first stops it cleanly (no new
//! steps, running steps interrupted and recorded, the run marked
//! `interrupted`, exit 130/143); a second exits at once.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Watches for SIGINT and SIGTERM while a run executes; dropped after it.
pub struct Watch {
    handle: Handle,
    received: Arc<AtomicI32>,
}

/// Starts watching; the first signal sets `interrupt`.
///
/// # Errors
/// If the signal handlers cannot be installed.
pub fn watch(interrupt: Arc<AtomicBool>) -> std::io::Result<Watch> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let received = Arc::new(AtomicI32::new(0));
    let seen = received.clone();
    std::thread::Builder::new()
        .name("dynhost-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if seen.swap(signal, Ordering::SeqCst) != 0 {
                    note!("dynhost: {} again: exiting now", name(signal));
                    std::process::exit(128 + signal);
                }
                interrupt.store(true, Ordering::SeqCst);
                note!(
                    "dynhost: {}: stopping the run; running steps are interrupted and recorded (send it again to exit at once)",
                    name(signal)
                );
            }
        })?;
    Ok(Watch { handle, received })
}

impl Watch {
    /// The signal that interrupted the run, if one did.
    pub fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// The signal's usual name.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
