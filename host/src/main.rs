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
