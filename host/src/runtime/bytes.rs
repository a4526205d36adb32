//! Byte values (`list<u8>`) crossing between host and guest with one copy.
//!
//! wasmtime lifts a `list<u8>` into a `Vec<u8>`, and lowers a `[u8]`, one
//! element at a time; optimised, the loops become copies, but they are
//! generic code instantiated in the crate that names the types, so in
//! dynhost's own unoptimised (debug and test) builds a 64 MiB value spent
//! over a second of its step's time limit crossing (and hostile-op tests
//! timed out where they should have hit an output limit). [`FromGuest`] checks
//! the list as wasmtime does (bounds, alignment, the host-call byte budget)
//! and [`ToGuest`] allocates with the guest's `realloc` as wasmtime does
//! (which checks the region); both then copy with one slice copy, a `memcpy`
//! whatever the build. Every value crosses this way: the inputs and result of
//! `run`, and the values passed to `dynhost:op/host`.

use std::mem::MaybeUninit;
use wasmtime::ValRaw;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext, LowerContext,
};
use wasmtime::component::{ComponentType, Lift, Lower, WasmList};

/// The bytes of a guest's `list<u8>`, copied out to the host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FromGuest(pub Vec<u8>);

// SAFETY: the same lowered shape, ABI and type check as wasmtime's own
// `WasmList<u8>` (a pointer and a length into the guest's memory).
#[expect(
    unsafe_code,
    reason = "wasmtime's lifting traits are unsafe to implement; this mirrors its `WasmList<u8>`"
)]
unsafe impl ComponentType for FromGuest {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <WasmList<u8> as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: reads only the region `WasmList::<u8>` has checked lies inside the
// guest's memory (it also charges the host-call byte budget).
#[expect(
    unsafe_code,
    reason = "wasmtime's lifting traits are unsafe to implement; this mirrors its `WasmList<u8>`"
)]
unsafe impl Lift for FromGuest {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &[ValRaw; 2],
    ) -> wasmtime::Result<Self> {
        let list = WasmList::<u8>::linear_lift_from_flat(cx, ty, src)?;
        let ptr = usize::try_from(src[0].get_u32())?;
        copy_out(cx, ptr, list.len())
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let list = WasmList::<u8>::linear_lift_from_memory(cx, ty, bytes)?;
        let ptr = bytes
            .first_chunk::<4>()
            .map(|p| u32::from_le_bytes(*p))
            .ok_or_else(|| wasmtime::format_err!("a list's pointer is 4 bytes"))?;
        copy_out(cx, usize::try_from(ptr)?, list.len())
    }
}

/// Copies `len` bytes at `ptr` out of the guest's memory. (wasm32 pointers
/// are 32-bit, as wasmtime's own lifting assumes.)
fn copy_out(cx: &LiftContext<'_>, ptr: usize, len: usize) -> wasmtime::Result<FromGuest> {
    cx.memory()
        .get(ptr..)
        .and_then(|rest| rest.get(..len))
        .map(|bytes| FromGuest(bytes.to_vec()))
        .ok_or_else(|| wasmtime::format_err!("list pointer/length out of bounds of memory"))
}

/// Host bytes lowered into the guest as a `list<u8>`: `B` is whatever holds
/// them (a shared `Arc<[u8]>` for an input, a borrowed slice for an item).
pub(crate) struct ToGuest<B>(pub B);

// SAFETY: the same lowered shape, ABI and type check as wasmtime's `[u8]`.
#[expect(
    unsafe_code,
    reason = "wasmtime's lowering traits are unsafe to implement; this mirrors its `[u8]`"
)]
unsafe impl<B: AsRef<[u8]> + Send + Sync> ComponentType for ToGuest<B> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes the pointer pair `[u8]` writes, and the bytes only inside
// the region the guest's `realloc` returned (which wasmtime checked).
#[expect(
    unsafe_code,
    reason = "wasmtime's lowering traits are unsafe to implement; this mirrors its `[u8]`"
)]
unsafe impl<B: AsRef<[u8]> + Send + Sync> Lower for ToGuest<B> {
    fn linear_lower_to_flat<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        list_to_flat(dst, self.copy_in(cx)?);
        Ok(())
    }

    fn linear_lower_to_memory<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let list = self.copy_in(cx)?;
        list_to_memory(cx, offset, list)
    }
}

impl<B: AsRef<[u8]>> ToGuest<B> {
    /// Allocates the list in the guest and copies the bytes in; returns
    /// where they are and how many.
    fn copy_in<U>(&self, cx: &mut LowerContext<'_, U>) -> wasmtime::Result<(usize, usize)> {
        let bytes = self.0.as_ref();
        let ptr = cx.realloc(0, 0, 1, bytes.len())?;
        cx.as_slice_mut()
            .get_mut(ptr..)
            .and_then(|rest| rest.get_mut(..bytes.len()))
            .ok_or_else(|| wasmtime::format_err!("realloc return: beyond end of memory"))?
            .copy_from_slice(bytes);
        Ok((ptr, bytes.len()))
    }
}

/// Writes a lowered list's (pointer, length) as flat values: 64-bit, as
/// wasmtime writes them.
pub(super) fn list_to_flat(dst: &mut MaybeUninit<[ValRaw; 2]>, (ptr, len): (usize, usize)) {
    dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
}

/// Writes a lowered list's (pointer, length) into guest memory at `offset`.
pub(super) fn list_to_memory<U>(
    cx: &mut LowerContext<'_, U>,
    offset: usize,
    (ptr, len): (usize, usize),
) -> wasmtime::Result<()> {
    *cx.get::<4>(offset) = u32::try_from(ptr)?.to_le_bytes();
    *cx.get::<4>(offset + 4) = u32::try_from(len)?.to_le_bytes();
    Ok(())
}
