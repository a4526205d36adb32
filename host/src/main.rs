//! The `dynhost` binary: parse arguments, run, report an error once, exit.

mod cli;

use clap::Parser;
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
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}
