//! An op's `run` call, its arguments lowered straight from the host's data.
//!
//! `bindgen!`'s types own their strings and bytes, so calling through them
//! copies the run id, op name, config, every key, every input name and a
//! single input's whole value into fresh allocations per step, only for
//! wasmtime to copy them again into the guest. The records below borrow
//! instead (a single value is lowered from the shared `Arc` it already
//! lives in), which saves about ten allocations a step and, for a large
//! input, a copy of it. The types mirror `context` and `input` of both
//! versions of `wit/op.wit`; wasmtime checks them against the component's
//! `run` when the function is looked up, so a mismatch is an error, never a
//! misread.

use super::bytes::{FromGuest, ToGuest, list_to_flat, list_to_memory};
use super::collected::CollectedItems;
use super::signature::Version;
use super::{CallError, InputData, StepCall};
use crate::runtime::sandbox::StepState;
use smallvec::SmallVec;
use std::mem::MaybeUninit;
use std::sync::Arc;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentExportIndex, ComponentType, InstancePre, Lower};
use wasmtime::{Store, ValRaw};

/// The `context` record, borrowed.
#[derive(ComponentType, Lower)]
#[component(record)]
struct Context<'a> {
    #[component(name = "run-id")]
    run_id: &'a str,
    op: &'a str,
    keys: &'a [&'a str],
    config: &'a str,
}

/// The `input` record: its name borrowed, its value moved in.
#[derive(ComponentType, Lower)]
#[component(record)]
struct Input<'a> {
    name: &'a str,
    value: InputValue,
}

/// The `input-value` variant. (Variants cannot borrow in wasmtime's derive;
/// a single value is lowered from its `Arc` without a copy all the same.)
#[derive(ComponentType, Lower)]
#[component(variant)]
enum InputValue {
    #[component(name = "single")]
    Single(ToGuest<Arc<[u8]>>),
    #[component(name = "collected")]
    Collected(Collection),
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct Collection {
    items: PackedItems,
    failed: Vec<FailedItem>,
}

/// The `item` record, borrowed from a [`CollectedItems`] element while it
/// is lowered.
#[derive(ComponentType, Lower)]
#[component(record)]
struct Item<'a> {
    keys: &'a [&'a str],
    value: ToGuest<&'a [u8]>,
}

/// A `list<item>` lowered from the packed elements one at a time, so a
/// collect of millions of items is never unpacked into a list of records
/// on the host (issue 15, goal 7).
///
/// wasmtime has no derive for a list built on the fly, so this implements
/// its (hidden, but public) lowering traits by hand, the way wasmtime
/// implements them for `[T]`: allocate the list in the guest with its
/// `realloc` (which wasmtime bounds-checks), then store each element with
/// `Item`'s derived lowering. Pinned to wasmtime 48's trait shapes.
///
/// The elements are dropped once they are in the guest (hence the mutex:
/// lowering only borrows), so the host's copy is gone before the guest
/// builds its own from them: a collect of millions is held twice at most,
/// not three times.
struct PackedItems(std::sync::Mutex<CollectedItems>);

// SAFETY: the same lowered shape and ABI as `[Item]` (a pointer and a
// length), and the same type check.
#[expect(
    unsafe_code,
    reason = "wasmtime's lowering traits are unsafe to implement; this mirrors its own `[T]`"
)]
unsafe impl ComponentType for PackedItems {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[Item<'static>] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes exactly the pointer pair `[Item]` writes; every element is
// stored inside the region `realloc` returned and wasmtime checked.
#[expect(
    unsafe_code,
    reason = "wasmtime's lowering traits are unsafe to implement; this mirrors its own `[T]`"
)]
unsafe impl Lower for PackedItems {
    fn linear_lower_to_flat<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        list_to_flat(dst, self.lower_list(cx, ty)?);
        Ok(())
    }

    fn linear_lower_to_memory<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let list = self.lower_list(cx, ty)?;
        list_to_memory(cx, offset, list)
    }
}

impl PackedItems {
    /// Allocates the list in the guest and stores every element; returns
    /// where it is and its length.
    fn lower_list<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        ty: InterfaceType,
    ) -> wasmtime::Result<(usize, usize)> {
        let InterfaceType::List(list) = ty else {
            wasmtime::bail!("a collected input must be a list, found {ty:?}");
        };
        let elem = cx.types[list].element;
        let mut items = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let len = items.len();
        let size = len.checked_mul(Item::SIZE32).ok_or_else(|| {
            wasmtime::format_err!("a collected input of {len} items is too large")
        })?;
        let ptr = cx.realloc(0, 0, Item::ALIGN32, size)?;
        let mut offset = ptr;
        for (keys, value) in items.iter() {
            let keys: SmallVec<[&str; 4]> = keys.iter().collect();
            let value = ToGuest(value);
            Item { keys: &keys, value }.linear_lower_to_memory(cx, elem, offset)?;
            offset += Item::SIZE32;
        }
        *items = CollectedItems::new();
        Ok((ptr, len))
    }
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct FailedItem {
    keys: Vec<String>,
    kind: String,
    message: String,
}

/// `run`'s result in 0.1.0: bytes or an error message.
type ResultV1 = (Result<FromGuest, String>,);
/// `run`'s result in 0.2.0: bytes, no value, or an error message.
type ResultV2 = (Result<Option<FromGuest>, String>,);

/// A component's `run` export, found once when the component is loaded.
#[derive(Clone)]
pub(crate) struct RunExport {
    pre: InstancePre<StepState>,
    index: ComponentExportIndex,
    version: Version,
}

impl RunExport {
    /// Finds `run` in the component's `dynhost:op/op@…` export of `version`.
    pub fn find(pre: InstancePre<StepState>, version: Version) -> Option<Self> {
        let component = pre.component();
        let interface = format!("dynhost:op/op@{}", version.as_str());
        let op = component.get_export_index(None, &interface)?;
        let index = component.get_export_index(Some(&op), "run")?;
        Some(Self {
            pre,
            index,
            version,
        })
    }
}

/// Instantiates the op in `store` and calls `run`. `Ok(None)`: the op
/// returned "no value" (0.2.0). `instantiated` is called once the instance
/// exists (to time instantiation apart from the call).
pub(crate) fn run(
    store: &mut Store<StepState>,
    export: &RunExport,
    call: &StepCall<'_>,
    inputs: impl IntoIterator<Item = InputData>,
    instantiated: impl FnOnce(),
) -> Result<Result<Option<Vec<u8>>, String>, CallError> {
    let instance = export
        .pre
        .instantiate(&mut *store)
        .map_err(CallError::Instantiate)?;
    instantiated();
    let keys: SmallVec<[&str; 4]> = call.keys.iter().map(|k| k.as_str()).collect();
    let ctx = Context {
        run_id: call.run_id,
        op: call.op,
        keys: &keys,
        config: call.config_json,
    };
    // Consumed as converted, so a large collection is not held twice.
    let inputs: SmallVec<[Input<'_>; 2]> = call
        .input_names
        .iter()
        .zip(inputs)
        .map(|(name, data)| Input {
            name,
            value: input_value(data),
        })
        .collect();
    let params = (ctx, &inputs[..]);
    match export.version {
        Version::V1 => instance
            .get_typed_func::<(Context<'_>, &[Input<'_>]), ResultV1>(&mut *store, export.index)
            .and_then(|run| run.call(&mut *store, params))
            .map(|(result,)| result.map(|bytes| Some(bytes.0)))
            .map_err(CallError::Run),
        Version::V2 => instance
            .get_typed_func::<(Context<'_>, &[Input<'_>]), ResultV2>(&mut *store, export.index)
            .and_then(|run| run.call(&mut *store, params))
            .map(|(result,)| result.map(|bytes| bytes.map(|b| b.0)))
            .map_err(CallError::Run),
    }
}

fn input_value(data: InputData) -> InputValue {
    match data {
        InputData::Single(bytes) => InputValue::Single(ToGuest(bytes)),
        InputData::Collected { items, failed } => InputValue::Collected(Collection {
            items: PackedItems(std::sync::Mutex::new(items)),
            failed: failed
                .into_iter()
                .map(|(keys, failure)| FailedItem {
                    keys: crate::key::key_strings(&keys),
                    kind: failure.kind.as_str().to_owned(),
                    message: failure.message,
                })
                .collect(),
        }),
    }
}
