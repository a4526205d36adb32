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

/// `mi_option_arena_max_object_size` in mimalloc 3.x's `mi_option_e` (the
/// crate exports no constant for it in 3.x); its value is in KiB.
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;

/// Blocks larger than this (64 MiB) are mapped from the OS for themselves.
const LARGEST_ARENA_BLOCK_KIB: std::ffi::c_long = 64 << 10;

/// Large blocks go back to the OS the moment they are freed; small ones are
/// kept for reuse as mimalloc does by default (its purge delay, 10 ms).
///
/// A large run frees big buffers just before it needs as much again
/// elsewhere (a collect's packed input is freed as the guest builds its own
/// copy of it; an emitter's bookkeeping as its keys' steps start). Kept for
/// the purge delay, both were resident at once: a 10,000,000-key fan-out
/// and collect peaked at 2.44 GB (2.30 GB with a 100 ms delay). Mapped for
/// themselves, such blocks are unmapped at `free`: 1.95 GB. The earlier way
/// to that peak, a purge delay of 0 while a run ran, also returned every
/// freed 64 KiB page at once: the next allocation faulted fresh, zeroed
/// pages in, and each purge flushed the TLBs of every thread. That cost a
/// recorded run's coordinator ~0.7 us per key and a baseline compile of a
/// Python op ~15% more CPU (README, issue 15 goals 4 and 7).
#[expect(unsafe_code, reason = "mi_option_set only stores an option value")]
fn return_large_blocks_at_once() {
    // SAFETY: an option index mimalloc defines and a value it documents; no
    // memory is touched.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_MAX_OBJECT_SIZE, LARGEST_ARENA_BLOCK_KIB);
    }
}

fn main() -> ExitCode {
    return_large_blocks_at_once();
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

    /// Reads every page of `buffer` (so all of it is resident) and checks it.
    fn touch(buffer: &[u8]) {
        let pages = buffer
            .iter()
            .step_by(4096)
            .map(|&b| u64::from(b))
            .sum::<u64>();
        assert_eq!(pages, buffer.len().div_ceil(4096) as u64);
    }

    #[test]
    fn large_blocks_go_back_to_the_os_at_once_small_ones_are_reused() {
        super::return_large_blocks_at_once();
        let size = 256 << 20;
        let buffer = vec![1u8; size];
        touch(&buffer);
        let held = rss_bytes();
        drop(buffer);
        let after = rss_bytes();
        assert!(
            held.saturating_sub(after) > 200 << 20,
            "RSS {held} -> {after} bytes after freeing a 256 MiB block"
        );
        // 64 blocks of 1 MiB, freed: kept for reuse, not unmapped.
        let small: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 1 << 20]).collect();
        small.iter().for_each(|b| touch(b));
        let held = rss_bytes();
        drop(small);
        let after = rss_bytes();
        assert!(
            held.saturating_sub(after) < 48 << 20,
            "RSS {held} -> {after} bytes: small blocks were returned at once"
        );
    }
}
