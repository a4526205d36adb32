//! WASI's blocking calls, bounded by the step's time limit.
//!
//! Steps are plain synchronous wasmtime calls: no fiber per instantiation
//! and per call, which an async call pays on every key (issue 10: ~1 µs a
//! key, most of what dynhost adds to a bare instantiate-and-call). But
//! wasmtime-wasi's synchronous bindings block in a WASI call (a sleep, a
//! poll, a blocking read) with no deadline, and run every file call on a
//! shared runtime's `block_on` (~10 µs more a key on the seed job).
//!
//! So the interfaces whose calls wait — `wasi:io/poll`, `wasi:io/streams`
//! and `wasi:filesystem/types` — are linked again over the synchronous ones,
//! implemented by [`Bounded`]: each call drives wasmtime-wasi's own async
//! implementation through [`wait`], which polls it once on the spot (a call
//! that does not wait, nearly all of them, ends there) and otherwise blocks
//! on the worker's reactor until the call ends, the step's deadline passes
//! or the run is interrupted; the last two trap the step (`timeout`,
//! `interrupted`). A file call that blocks in the kernel (a FIFO) is ended
//! by `kick`'s signal, as before.
//!
//! The trait impls below follow wasmtime-wasi 48's own synchronous shims
//! (`src/p2/host/{io,filesystem/sync}.rs`, `src/p2/poll.rs`; Apache-2.0 WITH
//! LLVM-exception) with its `in_tokio` replaced by [`wait`]; keep them in
//! step with the pinned version when upgrading wasmtime.

use super::bytes::{FromGuest, ToGuest};
use super::reactor;
use super::sandbox::StepState;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use sync_poll::Pollable;
use wasmtime::Result;
use wasmtime::StoreContextMut;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types as async_filesystem;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::io::streams::{
    Host as AsyncHost, HostInputStream as AsyncHostInputStream,
    HostOutputStream as AsyncHostOutputStream,
};
use wasmtime_wasi::p2::bindings::sync::filesystem::types as sync_filesystem;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::bindings::sync::io::streams::{self, InputStream, OutputStream};
use wasmtime_wasi::p2::{DynPollable, FsError, FsResult, StreamError, StreamResult};

/// When a step's waiting must end.
pub(crate) struct StepLimit {
    pub deadline: Instant,
    /// The run's interruption flag, through this worker thread's own handle
    /// (see `Runtime::thread_flag`).
    pub interrupted: Arc<RunFlag>,
}

/// The run's interruption flag, held through a handle of one worker thread
/// (see `Runtime::thread_flag`): an `Arc` around the shared `Arc`, so a step
/// taking its own copy counts on the thread's reference count, not on the
/// flag's.
#[derive(Default)]
pub(crate) struct RunFlag(pub Arc<AtomicBool>);

impl std::ops::Deref for RunFlag {
    type Target = AtomicBool;

    fn deref(&self) -> &AtomicBool {
        &self.0
    }
}

/// How often a step blocked in a host call looks for an interruption.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// Why a wait was cut short.
enum Cut {
    /// The step's time limit passed.
    Deadline,
    /// The run was interrupted.
    Interrupted,
}

impl Cut {
    /// The trap that ends the step; `failure::classify` names it.
    fn error(self) -> wasmtime::Error {
        match self {
            Self::Deadline => wasmtime::Trap::Interrupt.into(),
            Self::Interrupted => wasmtime::Error::new(super::failure::InterruptedError),
        }
    }
}

/// Ends when a step waiting in a host call must stop: its time limit
/// passed, or the run was interrupted. It wakes only if the step is still
/// waiting after [`INTERRUPT_POLL`].
async fn cut(limit: &StepLimit) -> Cut {
    let deadline = tokio::time::Instant::from_std(limit.deadline);
    loop {
        if limit.interrupted.load(Ordering::Relaxed) {
            return Cut::Interrupted;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Cut::Deadline;
        }
        tokio::time::sleep((deadline - now).min(INTERRUPT_POLL)).await;
    }
}

/// A result type a WASI call can be ended with.
trait Stopped {
    fn stopped(error: wasmtime::Error) -> Self;
}

impl<T> Stopped for Result<T> {
    fn stopped(error: wasmtime::Error) -> Self {
        Err(error)
    }
}

impl<T> Stopped for FsResult<T> {
    fn stopped(error: wasmtime::Error) -> Self {
        Err(FsError::trap(error))
    }
}

impl<T> Stopped for StreamResult<T> {
    fn stopped(error: wasmtime::Error) -> Self {
        Err(StreamError::Trap(error))
    }
}

/// Runs one WASI call's future to its end, or traps the step when its
/// deadline passes or the run is interrupted first. The call is polled
/// before the limit, so a call that never waits never touches a timer.
fn wait<R: Stopped>(limit: &StepLimit, call: impl Future<Output = R>) -> R {
    let mut call = std::pin::pin!(call);
    let cut = cut(limit);
    let mut cut = std::pin::pin!(cut);
    let either = std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(result) = call.as_mut().poll(cx) {
            return std::task::Poll::Ready(Ok(result));
        }
        cut.as_mut().poll(cx).map(Err)
    });
    match reactor::block_on(either) {
        Ok(Ok(result)) => result,
        Ok(Err(cut)) => R::stopped(cut.error()),
        Err(reason) => R::stopped(wasmtime::format_err!(
            "cannot start the step's I/O reactor: {reason}"
        )),
    }
}

/// Whether `path` is one plain name beneath a directory (no `/`, not `.` or
/// `..`): looking it up without following links cannot leave the directory.
fn plain_name(path: &str) -> bool {
    !path.is_empty() && path != "." && path != ".." && !path.contains('/')
}

/// What the bounded interfaces see of a step: its files and resources, and
/// its limit.
pub(crate) struct Bounded<'a> {
    view: WasiFilesystemCtxView<'a>,
    limit: &'a StepLimit,
    preopens: &'a [(Dir, String)],
}

struct HasBounded;

impl HasData for HasBounded {
    type Data<'a> = Bounded<'a>;
}

fn bounded(state: &mut StepState) -> Bounded<'_> {
    Bounded {
        view: WasiFilesystemCtxView {
            ctx: state.wasi.filesystem(),
            table: &mut state.table,
        },
        limit: &state.limit,
        preopens: &state.preopens,
    }
}

/// Links synchronous WASI with its waiting calls bounded: all of
/// wasmtime-wasi's synchronous interfaces, then poll, streams and
/// filesystem types again over them, and the step's shared mounts as its
/// preopens (`sandbox::Mounts`).
///
/// # Errors
/// If wasmtime refuses a definition.
pub(crate) fn add_to_linker(linker: &mut Linker<StepState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    sync_poll::add_to_linker::<StepState, HasBounded>(linker, bounded)?;
    streams::add_to_linker::<StepState, HasBounded>(linker, bounded)?;
    sync_filesystem::add_to_linker::<StepState, HasBounded>(linker, bounded)?;
    preopens::add_to_linker::<StepState, HasBounded>(linker, bounded)?;
    link_byte_calls(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The stream and file calls that move bytes, linked once more with their
/// bytes crossing in one copy (`runtime::bytes`; the generated linking
/// copies them one element at a time in unoptimised builds: a gigabyte
/// written to stdout took 17 s of a debug build's step). Each calls the
/// [`Bounded`] method the generated linking would, and converts its error
/// the same way; the signatures are the WIT's (`wasi:io@0.2.12`,
/// `wasi:filesystem@0.2.12`, which serve every 0.2.x import; keep the
/// version in step with wasmtime-wasi, or these stop shadowing and bytes
/// cross element by element again).
fn link_byte_calls(linker: &mut Linker<StepState>) -> Result<()> {
    type Store<'a> = StoreContextMut<'a, StepState>;
    type Stream<T> = Result<(std::result::Result<T, streams::StreamError>,)>;
    type File<T> = Result<(std::result::Result<T, sync_filesystem::ErrorCode>,)>;
    fn stream<T>(host: &mut Bounded<'_>, result: StreamResult<T>) -> Stream<T> {
        match result {
            Ok(value) => Ok((Ok(value),)),
            Err(e) => Ok((Err(streams::Host::convert_stream_error(host, e)?),)),
        }
    }
    fn file<T>(host: &mut Bounded<'_>, result: FsResult<T>) -> File<T> {
        match result {
            Ok(value) => Ok((Ok(value),)),
            Err(e) => Ok((Err(sync_filesystem::Host::convert_error_code(host, e)?),)),
        }
    }

    let mut io = linker.instance("wasi:io/streams@0.2.12")?;
    io.func_wrap(
        "[method]output-stream.write",
        |mut store: Store<'_>, (out, bytes): (Resource<OutputStream>, FromGuest)| -> Stream<()> {
            let mut host = bounded(store.data_mut());
            let result = streams::HostOutputStream::write(&mut host, out, bytes.0);
            stream(&mut host, result)
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Store<'_>, (out, bytes): (Resource<OutputStream>, FromGuest)| -> Stream<()> {
            let mut host = bounded(store.data_mut());
            let result =
                streams::HostOutputStream::blocking_write_and_flush(&mut host, out, bytes.0);
            stream(&mut host, result)
        },
    )?;
    io.func_wrap(
        "[method]input-stream.read",
        |mut store: Store<'_>,
         (from, len): (Resource<InputStream>, u64)|
         -> Stream<ToGuest<Vec<u8>>> {
            let mut host = bounded(store.data_mut());
            let result = streams::HostInputStream::read(&mut host, from, len).map(ToGuest);
            stream(&mut host, result)
        },
    )?;
    io.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store: Store<'_>,
         (from, len): (Resource<InputStream>, u64)|
         -> Stream<ToGuest<Vec<u8>>> {
            let mut host = bounded(store.data_mut());
            let result = streams::HostInputStream::blocking_read(&mut host, from, len).map(ToGuest);
            stream(&mut host, result)
        },
    )?;
    let mut fs = linker.instance("wasi:filesystem/types@0.2.12")?;
    fs.func_wrap(
        "[method]descriptor.write",
        |mut store: Store<'_>,
         (fd, bytes, offset): (Resource<sync_filesystem::Descriptor>, FromGuest, u64)|
         -> File<u64> {
            let mut host = bounded(store.data_mut());
            let result = sync_filesystem::HostDescriptor::write(&mut host, fd, bytes.0, offset);
            file(&mut host, result)
        },
    )?;
    fs.func_wrap(
        "[method]descriptor.read",
        |mut store: Store<'_>,
         (fd, len, offset): (Resource<sync_filesystem::Descriptor>, u64, u64)|
         -> File<(ToGuest<Vec<u8>>, bool)> {
            let mut host = bounded(store.data_mut());
            let result = sync_filesystem::HostDescriptor::read(&mut host, fd, len, offset)
                .map(|(bytes, end)| (ToGuest(bytes), end));
            file(&mut host, result)
        },
    )?;
    Ok(())
}

impl preopens::Host for Bounded<'_> {
    fn get_directories(&mut self) -> Result<Vec<(Resource<Descriptor>, String)>> {
        self.preopens
            .iter()
            .map(|(dir, guest)| {
                let fd = self.view.table.push(Descriptor::Dir(dir.clone()))?;
                Ok((fd, guest.clone()))
            })
            .collect()
    }
}

impl sync_poll::Host for Bounded<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> Result<Vec<u32>> {
        wait(self.limit, async {
            async_poll::Host::poll(&mut *self.view.table, pollables).await
        })
    }
}

impl sync_poll::HostPollable for Bounded<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> Result<bool> {
        wait(self.limit, async {
            async_poll::HostPollable::ready(&mut *self.view.table, pollable).await
        })
    }
    fn block(&mut self, pollable: Resource<DynPollable>) -> Result<()> {
        wait(self.limit, async {
            async_poll::HostPollable::block(&mut *self.view.table, pollable).await
        })
    }
    fn drop(&mut self, pollable: Resource<DynPollable>) -> Result<()> {
        async_poll::HostPollable::drop(&mut *self.view.table, pollable)
    }
}

impl streams::Host for Bounded<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        Ok(AsyncHost::convert_stream_error(&mut *self.view.table, err)?.into())
    }
}

impl streams::HostOutputStream for Bounded<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        wait(self.limit, async {
            AsyncHostOutputStream::drop(&mut *self.view.table, stream).await
        })
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        AsyncHostOutputStream::check_write(&mut *self.view.table, stream)
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        AsyncHostOutputStream::write(&mut *self.view.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        wait(self.limit, async {
            AsyncHostOutputStream::blocking_write_and_flush(&mut *self.view.table, stream, bytes)
                .await
        })
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        wait(self.limit, async {
            AsyncHostOutputStream::blocking_write_zeroes_and_flush(
                &mut *self.view.table,
                stream,
                len,
            )
            .await
        })
    }

    fn subscribe(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Resource<Pollable>> {
        AsyncHostOutputStream::subscribe(&mut *self.view.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        AsyncHostOutputStream::write_zeroes(&mut *self.view.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        AsyncHostOutputStream::flush(&mut *self.view.table, Resource::new_borrow(stream.rep()))
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        wait(self.limit, async {
            AsyncHostOutputStream::blocking_flush(
                &mut *self.view.table,
                Resource::new_borrow(stream.rep()),
            )
            .await
        })
    }

    fn splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        AsyncHostOutputStream::splice(&mut *self.view.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        wait(self.limit, async {
            AsyncHostOutputStream::blocking_splice(&mut *self.view.table, dst, src, len).await
        })
    }
}

impl streams::HostInputStream for Bounded<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        wait(self.limit, async {
            AsyncHostInputStream::drop(&mut *self.view.table, stream).await
        })
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        AsyncHostInputStream::read(&mut *self.view.table, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        wait(self.limit, async {
            AsyncHostInputStream::blocking_read(&mut *self.view.table, stream, len).await
        })
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        AsyncHostInputStream::skip(&mut *self.view.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        wait(self.limit, async {
            AsyncHostInputStream::blocking_skip(&mut *self.view.table, stream, len).await
        })
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        AsyncHostInputStream::subscribe(&mut *self.view.table, stream)
    }
}

impl sync_filesystem::Host for Bounded<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<sync_filesystem::ErrorCode> {
        Ok(async_filesystem::Host::convert_error_code(&mut self.view, err)?.into())
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<streams::Error>,
    ) -> wasmtime::Result<Option<sync_filesystem::ErrorCode>> {
        Ok(async_filesystem::Host::filesystem_error_code(&mut self.view, err)?.map(|e| e.into()))
    }
}

impl sync_filesystem::HostDescriptor for Bounded<'_> {
    fn advise(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        offset: sync_filesystem::Filesize,
        len: sync_filesystem::Filesize,
        advice: sync_filesystem::Advice,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::advise(&mut self.view, fd, offset, len, advice.into())
                .await
        })
    }

    fn sync_data(&mut self, fd: Resource<sync_filesystem::Descriptor>) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::sync_data(&mut self.view, fd).await
        })
    }

    fn get_flags(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::DescriptorFlags> {
        Ok(wait(self.limit, async {
            async_filesystem::HostDescriptor::get_flags(&mut self.view, fd).await
        })?
        .into())
    }

    fn get_type(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::DescriptorType> {
        Ok(wait(self.limit, async {
            async_filesystem::HostDescriptor::get_type(&mut self.view, fd).await
        })?
        .into())
    }

    fn set_size(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        size: sync_filesystem::Filesize,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::set_size(&mut self.view, fd, size).await
        })
    }

    fn set_times(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        atim: sync_filesystem::NewTimestamp,
        mtim: sync_filesystem::NewTimestamp,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::set_times(
                &mut self.view,
                fd,
                atim.into(),
                mtim.into(),
            )
            .await
        })
    }

    fn read(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        len: sync_filesystem::Filesize,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::read(&mut self.view, fd, len, offset).await
        })
    }

    fn write(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        buf: Vec<u8>,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<sync_filesystem::Filesize> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::write(&mut self.view, fd, buf, offset).await
        })
    }

    fn read_directory(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<Resource<sync_filesystem::DirectoryEntryStream>> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::read_directory(&mut self.view, fd).await
        })
    }

    fn sync(&mut self, fd: Resource<sync_filesystem::Descriptor>) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::sync(&mut self.view, fd).await
        })
    }

    fn create_directory_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::create_directory_at(&mut self.view, fd, path).await
        })
    }

    fn stat(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::DescriptorStat> {
        Ok(wait(self.limit, async {
            async_filesystem::HostDescriptor::stat(&mut self.view, fd).await
        })?
        .into())
    }

    fn stat_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
    ) -> FsResult<sync_filesystem::DescriptorStat> {
        // A plain name that is not a symbolic link reads the same whether
        // links are followed or not: ask without following first (one
        // `statx`, where following costs `openat2` + `statx` + `close` to stay
        // beneath the directory), and follow only for a link.
        let follow = sync_filesystem::PathFlags::SYMLINK_FOLLOW;
        if path_flags.contains(follow) && plain_name(&path) {
            let rep = fd.rep();
            let stat = wait(self.limit, async {
                async_filesystem::HostDescriptor::stat_at(
                    &mut self.view,
                    Resource::new_borrow(rep),
                    (path_flags & !follow).into(),
                    path.clone(),
                )
                .await
            })?;
            if stat.type_ != async_filesystem::DescriptorType::SymbolicLink {
                return Ok(stat.into());
            }
        }
        Ok(wait(self.limit, async {
            async_filesystem::HostDescriptor::stat_at(&mut self.view, fd, path_flags.into(), path)
                .await
        })?
        .into())
    }

    fn set_times_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
        atim: sync_filesystem::NewTimestamp,
        mtim: sync_filesystem::NewTimestamp,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::set_times_at(
                &mut self.view,
                fd,
                path_flags.into(),
                path,
                atim.into(),
                mtim.into(),
            )
            .await
        })
    }

    fn link_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        // TODO delete the path flags from this function
        old_path_flags: sync_filesystem::PathFlags,
        old_path: String,
        new_descriptor: Resource<sync_filesystem::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::link_at(
                &mut self.view,
                fd,
                old_path_flags.into(),
                old_path,
                new_descriptor,
                new_path,
            )
            .await
        })
    }

    fn open_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
        oflags: sync_filesystem::OpenFlags,
        flags: sync_filesystem::DescriptorFlags,
    ) -> FsResult<Resource<sync_filesystem::Descriptor>> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::open_at(
                &mut self.view,
                fd,
                path_flags.into(),
                path,
                oflags.into(),
                flags.into(),
            )
            .await
        })
    }

    fn drop(&mut self, fd: Resource<sync_filesystem::Descriptor>) -> wasmtime::Result<()> {
        async_filesystem::HostDescriptor::drop(&mut self.view, fd)
    }

    fn readlink_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::readlink_at(&mut self.view, fd, path).await
        })
    }

    fn remove_directory_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::remove_directory_at(&mut self.view, fd, path).await
        })
    }

    fn rename_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        old_path: String,
        new_fd: Resource<sync_filesystem::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::rename_at(
                &mut self.view,
                fd,
                old_path,
                new_fd,
                new_path,
            )
            .await
        })
    }

    fn symlink_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::symlink_at(&mut self.view, fd, src_path, dest_path)
                .await
        })
    }

    fn unlink_file_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::unlink_file_at(&mut self.view, fd, path).await
        })
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<Resource<streams::InputStream>> {
        async_filesystem::HostDescriptor::read_via_stream(&mut self.view, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        offset: sync_filesystem::Filesize,
    ) -> FsResult<Resource<streams::OutputStream>> {
        async_filesystem::HostDescriptor::write_via_stream(&mut self.view, fd, offset)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<Resource<streams::OutputStream>> {
        async_filesystem::HostDescriptor::append_via_stream(&mut self.view, fd)
    }

    fn is_same_object(
        &mut self,
        a: Resource<sync_filesystem::Descriptor>,
        b: Resource<sync_filesystem::Descriptor>,
    ) -> wasmtime::Result<bool> {
        wait(self.limit, async {
            async_filesystem::HostDescriptor::is_same_object(&mut self.view, a, b).await
        })
    }
    fn metadata_hash(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
    ) -> FsResult<sync_filesystem::MetadataHashValue> {
        Ok(wait(self.limit, async {
            async_filesystem::HostDescriptor::metadata_hash(&mut self.view, fd).await
        })?
        .into())
    }
    fn metadata_hash_at(
        &mut self,
        fd: Resource<sync_filesystem::Descriptor>,
        path_flags: sync_filesystem::PathFlags,
        path: String,
    ) -> FsResult<sync_filesystem::MetadataHashValue> {
        Ok(wait(self.limit, async {
            async_filesystem::HostDescriptor::metadata_hash_at(
                &mut self.view,
                fd,
                path_flags.into(),
                path,
            )
            .await
        })?
        .into())
    }
}

impl sync_filesystem::HostDirectoryEntryStream for Bounded<'_> {
    fn read_directory_entry(
        &mut self,
        stream: Resource<sync_filesystem::DirectoryEntryStream>,
    ) -> FsResult<Option<sync_filesystem::DirectoryEntry>> {
        Ok(wait(self.limit, async {
            async_filesystem::HostDirectoryEntryStream::read_directory_entry(&mut self.view, stream)
                .await
        })?
        .map(|e| e.into()))
    }

    fn drop(
        &mut self,
        stream: Resource<sync_filesystem::DirectoryEntryStream>,
    ) -> wasmtime::Result<()> {
        async_filesystem::HostDirectoryEntryStream::drop(&mut self.view, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(after: Duration) -> StepLimit {
        StepLimit {
            deadline: Instant::now() + after,
            interrupted: Arc::default(),
        }
    }

    #[test]
    fn a_call_that_does_not_wait_ends_at_once() {
        let result: Result<u32> = wait(&limit(Duration::ZERO), async { Ok(7) });
        assert_eq!(result.unwrap(), 7, "polled before the (passed) deadline");
    }

    #[test]
    fn a_call_that_waits_ends_with_it() {
        let result: Result<u32> = wait(&limit(Duration::from_secs(30)), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(8)
        });
        assert_eq!(result.unwrap(), 8);
    }

    #[test]
    fn a_call_that_never_ends_traps_at_the_deadline() {
        let started = Instant::now();
        let result: Result<()> = wait(&limit(Duration::from_millis(100)), std::future::pending());
        let error = result.unwrap_err();
        assert_eq!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{error}"
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn an_interrupted_run_ends_a_waiting_call() {
        let limit = limit(Duration::from_secs(3600));
        let flag = limit.interrupted.clone();
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::Relaxed);
        });
        let result: FsResult<()> = wait(&limit, std::future::pending());
        setter.join().unwrap();
        let error = result.unwrap_err().downcast().unwrap_err();
        assert!(
            error.is::<crate::runtime::failure::InterruptedError>(),
            "{error}"
        );
    }
}
