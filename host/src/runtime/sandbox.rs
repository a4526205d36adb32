//! Turns a [`SandboxPolicy`] into the per-step store data: a WASI context that
//! grants only what the policy lists, a resource limiter, and capped capture
//! of stdout and stderr.

use super::StepCall;
use super::failure::{FailureKind, OpFailure, Tripped};
use super::host::EmitState;
use super::policy::SandboxPolicy;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::filesystem::Dir;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{FsPerms, OpenMode, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The op's mounts, each directory opened once per runtime (a run has one)
/// and shared by every step of every op that mounts it the same way (a step
/// gets its own descriptor on the shared handle: an `O_PATH` directory
/// carries no offset or other state, and every file call resolves beneath
/// it). Opening it per step cost two system calls a key (`open`, `close`) on
/// a file fan-out.
#[derive(Default)]
pub(crate) struct Mounts {
    /// (host directory, writable, handle): a job has a few mounts, so a
    /// step finds its own by comparing paths, allocating nothing.
    opened: Mutex<Vec<(std::path::PathBuf, bool, Dir)>>,
}

impl Mounts {
    /// The step's preopened directories, as (handle, guest path).
    ///
    /// # Errors
    /// A `host` failure naming a mount that cannot be opened (it is tried
    /// again for the next step).
    pub fn preopens(
        &self,
        mounts: &[super::policy::Mount],
    ) -> Result<Vec<(Dir, String)>, OpFailure> {
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        mounts
            .iter()
            .map(|mount| {
                let known = opened
                    .iter()
                    .find(|(host, writable, _)| *host == mount.host && *writable == mount.writable);
                let dir = match known {
                    Some((_, _, dir)) => dir.clone(),
                    None => {
                        let dir = open_mount(&mount.host, mount.writable).map_err(|e| {
                            OpFailure::new(
                                FailureKind::Host,
                                format!("cannot open mount `{}`: {e}", mount.host.display()),
                            )
                        })?;
                        opened.push((mount.host.clone(), mount.writable, dir.clone()));
                        dir
                    }
                };
                Ok((dir, mount.guest.clone()))
            })
            .collect()
    }
}

/// Opens a mount's directory as wasmtime-wasi's `preopened_dir` does (a
/// path-only handle on the directory), with the mount's permissions.
fn open_mount(host: &std::path::Path, writable: bool) -> std::io::Result<Dir> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(host)?;
    let (perms, mode) = if writable {
        (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE)
    } else {
        (FsPerms::ReadOnly, OpenMode::READ)
    };
    // File calls run on the worker's thread (see `wasi_ctx`).
    Ok(Dir::new(file, perms, mode, true))
}

/// The data of one step's `Store`: dropped with the store when the step ends.
pub(crate) struct StepState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub emits: EmitState,
    pub log: Capture,
    pub http: wasmtime_wasi_http::WasiHttpCtx,
    pub http_hooks: super::http::HttpHooks,
    /// When the step's WASI calls must stop waiting.
    pub limit: super::bounded::StepLimit,
    /// The op's mounts (see [`Mounts`]), handed out by `get-directories`.
    pub preopens: Vec<(Dir, String)>,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for StepState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// The values of the op's `secrets`, read from the host's environment now
/// (a worker reads its own), as (name the op sees, value).
pub(crate) fn secret_values(
    policy: &SandboxPolicy,
    op: &str,
) -> Result<Vec<(String, String)>, OpFailure> {
    policy
        .secrets
        .iter()
        .map(|(guest, host)| {
            std::env::var(host).map(|value| (guest.clone(), value)).map_err(|_| {
                OpFailure::new(
                    FailureKind::Host,
                    format!(
                        "op `{op}`: secret `{guest}` comes from the environment variable `{host}`, which is not set (or not UTF-8) in the process running the step; export it there"
                    ),
                )
            })
        })
        .collect()
}

/// `text` with every secret value replaced by `[redacted NAME]`, so what an
/// op prints (or puts in an error) never shows a secret in reports, the
/// store or the viewer. Values under 4 bytes are left alone: they would
/// blank out ordinary text and protect nothing.
pub(crate) fn redact(text: String, secrets: &[(String, String)]) -> String {
    if secrets.is_empty() || text.is_empty() {
        return text;
    }
    let mut text = text;
    for (name, value) in secrets {
        if value.len() >= 4 && text.contains(value.as_str()) {
            text = text.replace(value.as_str(), &format!("[redacted {name}]"));
        }
    }
    text
}

/// Builds a WASI context that grants only what `policy` lists. Network access
/// is off entirely (TCP, UDP and name lookup), not just filtered. Mounts are
/// not in it: `get-directories` hands out the shared ones ([`Mounts`]).
pub(crate) fn wasi_ctx(
    policy: &SandboxPolicy,
    call: &StepCall<'_>,
    stdout: &Capture,
    stderr: &Capture,
    secrets: &[(String, String)],
) -> Result<WasiCtx, OpFailure> {
    let mut builder = WasiCtxBuilder::new();
    if policy.deterministic {
        deterministic(&mut builder, call);
    }
    builder.stdout(stdout.clone()).stderr(stderr.clone());
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // File calls on this thread, not tokio's blocking pool: a `stat`
        // costs a system call instead of two thread hops (issue 15). One
        // that blocks past the time limit is kicked out (runtime::kick).
        .allow_blocking_current_thread(true);
    for (key, value) in policy.env.iter().chain(secrets) {
        builder.env(key, value);
    }
    Ok(builder.build())
}

/// Pins clocks and seeds randomness from the op and keys, so a rerun of the
/// same step sees the same time and the same random numbers.
fn deterministic(builder: &mut WasiCtxBuilder, call: &StepCall<'_>) {
    use rand::SeedableRng;
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(call.op.as_bytes());
    for key in call.keys {
        hasher.update([0]);
        hasher.update(key.as_str().as_bytes());
    }
    let seed: [u8; 32] = hasher.finalize().into();
    builder.secure_random(rand::rngs::StdRng::from_seed(seed));
    let mut insecure = seed;
    insecure[0] ^= 1;
    builder.insecure_random(rand::rngs::StdRng::from_seed(insecure));
    builder.insecure_random_seed(u128::from_le_bytes(
        seed[..16].try_into().unwrap_or([0; 16]),
    ));
    builder.wall_clock(FixedClock);
    builder.monotonic_clock(FixedClock);
}

/// A clock that always reads `DETERMINISTIC_EPOCH` (wall) or zero (monotonic).
struct FixedClock;

/// The wall time deterministic ops see: 2000-01-01T00:00:00Z.
pub const DETERMINISTIC_EPOCH: std::time::Duration = std::time::Duration::from_secs(946_684_800);

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }
    fn now(&self) -> std::time::Duration {
        DETERMINISTIC_EPOCH
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Enforces `memory_bytes` across all memories and tables of an instance, and
/// records the peak for accounting. Growth past the limit traps at once with a
/// [`Tripped`] marker, so the failure is classified as `memory-limit` rather
/// than as whatever the guest's allocator does on failure.
pub(crate) struct MemoryLimiter {
    pub limit_bytes: u64,
    pub current_bytes: u64,
    pub peak_bytes: u64,
}

impl MemoryLimiter {
    fn grow(&mut self, current: usize, desired: usize, what: &str) -> wasmtime::Result<bool> {
        let next = self.current_bytes + (desired.saturating_sub(current)) as u64;
        if next > self.limit_bytes {
            let mib = self.limit_bytes >> 20;
            return Err(wasmtime::Error::new(Tripped(OpFailure::new(
                FailureKind::MemoryLimit,
                format!(
                    "{what} grew past the `memory_mib` limit of {mib} MiB; raise `limits.memory_mib` on the op if it needs more"
                ),
            ))));
        }
        self.current_bytes = next;
        self.peak_bytes = self.peak_bytes.max(next);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired, "linear memory")
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let size = std::mem::size_of::<usize>();
        self.grow(current * size, desired * size, "a table")
    }
}

/// Appended once when captured output is cut at its limit.
pub const TRUNCATED_MARKER: &str = "\n[dynhost: output truncated at the `max_log_bytes` limit]\n";

/// Captured text (stdout, stderr or log lines) kept up to a byte limit; what
/// comes after is counted and dropped, never buffered, so a guest writing
/// gigabytes costs the host nothing but the time.
///
/// A step's three captures (stdout, stderr, log) share one allocation: one
/// per step instead of three.
#[derive(Clone)]
pub(crate) struct Capture {
    inner: Arc<[Mutex<CaptureBuf>; 3]>,
    /// Which of the three this is.
    stream: usize,
}

struct CaptureBuf {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl Capture {
    /// A step's stdout, stderr and log, each kept up to `limit` bytes.
    pub fn three(limit: u64) -> [Self; 3] {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let buf = || {
            Mutex::new(CaptureBuf {
                bytes: Vec::new(),
                limit,
                dropped: 0,
            })
        };
        let inner = Arc::new([buf(), buf(), buf()]);
        [0, 1, 2].map(|stream| Self {
            inner: inner.clone(),
            stream,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CaptureBuf> {
        self.inner[self.stream]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, data: &[u8]) {
        let mut buf = self.lock();
        let room = buf.limit.saturating_sub(buf.bytes.len());
        let take = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..take]);
        buf.dropped += (data.len() - take) as u64;
    }

    /// The captured text, with [`TRUNCATED_MARKER`] if anything was dropped.
    pub fn text(&self) -> String {
        let buf = self.lock();
        if buf.bytes.is_empty() && buf.dropped == 0 {
            // Most steps print nothing: three of these per step.
            return String::new();
        }
        let mut text = String::from_utf8_lossy(&buf.bytes).into_owned();
        if buf.dropped > 0 {
            text.push_str(TRUNCATED_MARKER);
        }
        text
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 16)
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(host: &std::path::Path, guest: &str, writable: bool) -> super::super::policy::Mount {
        super::super::policy::Mount {
            host: host.to_owned(),
            guest: guest.into(),
            writable,
            shared: false,
        }
    }

    #[test]
    fn a_mount_is_opened_once_per_directory_and_permission() {
        let dir = tempfile::tempdir().unwrap();
        let mounts = Mounts::default();
        let first = mounts.preopens(&[mount(dir.path(), "/a", false)]).unwrap();
        let again = mounts
            .preopens(&[
                mount(dir.path(), "/b", false),
                mount(dir.path(), "/c", true),
            ])
            .unwrap();
        assert_eq!(first[0].1, "/a");
        assert_eq!((again[0].1.as_str(), again[1].1.as_str()), ("/b", "/c"));
        assert!(Arc::ptr_eq(&first[0].0.dir, &again[0].0.dir), "shared");
        assert!(
            !Arc::ptr_eq(&first[0].0.dir, &again[1].0.dir),
            "own handle when writable"
        );
        assert!(matches!(again[0].0.perms, FsPerms::ReadOnly));
        assert!(matches!(again[1].0.perms, FsPerms::ReadWrite));
    }

    #[test]
    fn a_mount_that_cannot_be_opened_fails_the_step_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let mounts = Mounts::default();
        let Err(failure) = mounts.preopens(&[mount(&gone, "/data", false)]) else {
            panic!("a missing directory was mounted");
        };
        assert_eq!(failure.kind, FailureKind::Host);
        assert!(
            failure.message.contains("cannot open mount"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("gone"), "{}", failure.message);
        // Not remembered: once the directory exists, the next step gets it.
        std::fs::create_dir(&gone).unwrap();
        assert_eq!(
            mounts
                .preopens(&[mount(&gone, "/data", false)])
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn capture_keeps_the_limit_and_marks_the_cut() {
        let [capture, ..] = Capture::three(4);
        capture.push(b"ab");
        capture.push(b"cdef");
        assert_eq!(capture.text(), format!("abcd{TRUNCATED_MARKER}"));
        let [small, ..] = Capture::three(10);
        small.push(b"ok");
        assert_eq!(small.text(), "ok");
    }

    #[test]
    fn limiter_trips_with_a_typed_failure() {
        let mut limiter = MemoryLimiter {
            limit_bytes: 100,
            current_bytes: 0,
            peak_bytes: 0,
        };
        assert!(limiter.grow(0, 60, "linear memory").unwrap());
        let err = limiter.grow(60, 120, "linear memory").unwrap_err();
        let Tripped(failure) = err.downcast_ref::<Tripped>().unwrap();
        assert_eq!(failure.kind, FailureKind::MemoryLimit);
        assert_eq!(limiter.peak_bytes, 60);
    }
}
