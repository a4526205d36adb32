//! The allocator's settings for a run, shared by the `dynhost` binary and
//! the benchmarks (both use mimalloc as their global allocator), so what is
//! measured is what runs.

/// `mi_option_arena_max_object_size` in mimalloc 3.x's `mi_option_e` (the
/// crate exports no constant for it in 3.x); its value is in KiB.
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;

/// `mi_option_allow_thp` in the same enum (two before the one above).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

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

/// No transparent huge pages for this process.
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so the
/// first touch of any 2 MiB of them has the kernel zero all 2 MiB, and
/// memory purged after its delay is zeroed again when touched. The
/// coordinator touches a little of much memory (per-key records, growing
/// tables): on the trivial fan-out that zeroing was ~40% of its time and
/// it sat on the run's serial part (the emitter's items, the collect). Off:
/// coordinator 2.1 → 0.9 µs/key, the trivial fan-out 1.32 → 1.19 times
/// bare wasmtime (72 paired rounds; README, issue 15). The option stops
/// new requests; `PR_SET_THP_DISABLE` also covers the arenas mimalloc made
/// before `main` (and every other mapping of the process). Child processes
/// inherit the flag; `dynhost build` gives the user's build commands the
/// setting dynhost was started with.
#[expect(
    unsafe_code,
    reason = "mi_option_set stores an option value; prctl reads or changes only this process's THP flag"
)]
fn no_transparent_huge_pages() {
    // SAFETY: as above; neither touches memory. A kernel without the
    // prctl returns an error, which changes nothing.
    unsafe {
        // What dynhost was started with, for its children (once: a second
        // call would read back its own setting).
        STARTED_WITH_THP_DISABLED
            .get_or_init(|| libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1);
        libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Whether the process that started dynhost had transparent huge pages
/// off already (`PR_GET_THP_DISABLE` before [`configure`] changed it).
static STARTED_WITH_THP_DISABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The allocator's settings for a run (`return_large_blocks_at_once`,
/// `no_transparent_huge_pages`): the `dynhost` binary and the benchmarks
/// call this first thing in `main`.
pub fn configure() {
    return_large_blocks_at_once();
    no_transparent_huge_pages();
}

/// Gives a child process (a user's build command) the transparent huge
/// page setting dynhost was started with: the flag [`configure`] sets is
/// inherited across `exec`. For `CommandExt::pre_exec`: one system call,
/// safe after `fork`. Never fails: a kernel that refuses leaves the child
/// as it was, which is no reason not to build.
pub fn restore_transparent_huge_pages_in_child() -> std::io::Result<()> {
    let disabled = STARTED_WITH_THP_DISABLED.get().copied().unwrap_or(false);
    #[expect(
        unsafe_code,
        reason = "prctl changes only the calling process's THP flag"
    )]
    // SAFETY: as above; async-signal-safe (a bare system call).
    unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            std::ffi::c_ulong::from(disabled),
            0,
            0,
            0,
        );
    }
    Ok(())
}
