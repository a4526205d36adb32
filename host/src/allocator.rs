//! The allocator's settings for a run, shared by the `dynhost` binary and
//! the benchmarks (both use mimalloc as their global allocator), so what is
//! measured is what runs.

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
pub fn return_large_blocks_at_once() {
    // SAFETY: an option index mimalloc defines and a value it documents; no
    // memory is touched.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_MAX_OBJECT_SIZE, LARGEST_ARENA_BLOCK_KIB);
    }
}
