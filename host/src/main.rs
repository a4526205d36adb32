//! The `dynhost` binary: parse arguments, run, report an error once, exit.

mod cli;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

/// mimalloc rather than the system allocator: a run allocates millions of
/// small per-key records on the coordinator thread and frees values made on
/// worker threads, which glibc malloc serves slower and with more
/// fragmentation (see the README's Performance section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3.x's `mi_option_e` (the crate
/// exports no constant for it in 3.x).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Until the guard is dropped, freed memory goes back to the OS at once, not
/// a second (ten seconds for its arenas) later. Held while a run runs,
/// after its components are loaded: a large run frees big buffers just
/// before it needs as much again elsewhere (a collect's packed input is
/// freed as the guest builds its own copy of it; an emitter's bookkeeping
/// as its keys' steps start), and delayed, both were resident at once: a
/// 10,000,000-key fan-out and collect peaked at 2.44 GB, 1.98 GB with this,
/// at no cost in speed the benchmarks could see. Compiling is another
/// matter: Cranelift and Winch free and reallocate all the time, and an
/// immediate purge cost a Python component's baseline compile ~15% more
/// CPU, so the delay is back when the run ends (`run --watch` compiles
/// again) (README, issue 15 goal 7).
pub(crate) fn return_freed_memory_at_once() -> PurgeAtOnce {
    let before = purge_delay(0);
    PurgeAtOnce(before)
}

/// See [`return_freed_memory_at_once`]; restores the delay it replaced.
pub(crate) struct PurgeAtOnce(std::ffi::c_long);

impl Drop for PurgeAtOnce {
    fn drop(&mut self) {
        purge_delay(self.0);
    }
}

/// Sets mimalloc's purge delay (milliseconds; 0: at once); returns the old one.
#[expect(
    unsafe_code,
    reason = "mi_option_get/set only read and store an option value"
)]
fn purge_delay(millis: std::ffi::c_long) -> std::ffi::c_long {
    // SAFETY: an option index mimalloc defines and values it documents; no
    // memory is touched.
    unsafe {
        let before = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, millis);
        before
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        // The reader went away (`dynhost runs | head`): what it wanted was
        // printed; say nothing more, like any Unix filter.
        Err(error) if closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // Written, not `eprintln!`ed: a closed stderr must not panic.
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "error: {error}");
            for cause in error.chain().skip(1) {
                let _ = writeln!(err, "  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    /// This process's resident memory, from `/proc/self/status`.
    fn rss_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a number");
        kib * 1024
    }

    #[test]
    fn freed_memory_goes_back_to_the_os_at_once() {
        let purge = super::return_freed_memory_at_once();
        let size = 256 << 20;
        let buffer = vec![1u8; size];
        let held = rss_bytes();
        assert_eq!(
            buffer
                .iter()
                .step_by(4096)
                .map(|&b| u64::from(b))
                .sum::<u64>(),
            (size / 4096) as u64
        );
        drop(buffer);
        let after = rss_bytes();
        assert!(
            held.saturating_sub(after) > 200 << 20,
            "RSS {held} -> {after} bytes after freeing 256 MiB"
        );
        // Once the guard is gone, freed memory is kept a while again.
        drop(purge);
        let buffer = vec![2u8; size];
        let held = rss_bytes();
        assert_eq!(buffer[size - 1], 2);
        drop(buffer);
        let after = rss_bytes();
        assert!(
            held.saturating_sub(after) < 64 << 20,
            "RSS {held} -> {after} bytes: purged at once after the guard was dropped"
        );
    }
}
