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

fn main() -> ExitCode {
    dynhost::allocator::configure();
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
    /// Names the one test a child process started by [`alone`] runs.
    const ALONE_VAR: &str = "DYNHOST_TEST_ALONE";

    /// Whether the caller, the test `name`, should measure now: true in a
    /// child process that runs only that test; in the test harness's own
    /// process it starts that child, fails if the child fails, and returns
    /// false.
    ///
    /// The tests here read the whole process's memory (`/proc/self`), so in
    /// the harness's process the other tests' threads (their stacks, their
    /// allocations, a `smaps_rollup` walk racing their `mmap`s) landed in
    /// the measurement: CI once saw 2 MiB of "new huge pages" that no
    /// allocation of the test made. A process of its own holds nothing else.
    fn alone(name: &str) -> bool {
        if std::env::var_os(ALONE_VAR).is_some_and(|v| v == name) {
            return true;
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let output = std::process::Command::new(exe)
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(ALONE_VAR, name)
            .output()
            .expect("the test binary starts again");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{name} in a process of its own: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        false
    }

    /// A size in bytes from the `field:` line of `/proc/self/<file>`
    /// (which the kernel gives in KiB).
    fn proc_bytes(file: &str, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/self/{file}")).expect(file);
        let line = text
            .lines()
            .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
            .expect(field);
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a number");
        kib * 1024
    }

    /// This process's resident memory.
    fn rss_bytes() -> u64 {
        proc_bytes("status", "VmRSS")
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
        if !alone("tests::large_blocks_go_back_to_the_os_at_once_small_ones_are_reused") {
            return;
        }
        dynhost::allocator::configure();
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

    /// This process's anonymous memory in transparent huge pages.
    fn huge_page_bytes() -> u64 {
        proc_bytes("smaps_rollup", "AnonHugePages")
    }

    /// Memory the allocator hands out after `configure` is faulted in by
    /// 4 KiB pages, not 2 MiB ones zeroed whole. (mimalloc asks for huge
    /// pages on its arenas: on a kernel whose THP setting is `madvise` or
    /// `always` this fails without the setting; with THP `never` it holds
    /// either way.)
    #[test]
    fn allocations_get_no_transparent_huge_pages() {
        if !alone("tests::allocations_get_no_transparent_huge_pages") {
            return;
        }
        dynhost::allocator::configure();
        let before = huge_page_bytes();
        // Under the 64 MiB the arenas serve, in 1 MiB blocks as the
        // coordinator's tables grow.
        let blocks: Vec<Vec<u8>> = (0..48).map(|_| vec![1u8; 1 << 20]).collect();
        blocks.iter().for_each(|b| touch(b));
        let after = huge_page_bytes();
        assert_eq!(
            after.saturating_sub(before),
            0,
            "{} bytes of new huge pages",
            after.saturating_sub(before)
        );
    }
}
