//! The host side of the `dynhost:op/host` interface, both versions:
//! `emit-dynamic`, `emit` (0.2.0: with metadata), `add-output-metadata`
//! (0.2.0) and `log`.
//!
//! Every emitted item is checked here, before it leaves the sandbox: the
//! output must be declared, the key valid and unique, and the step within its
//! emit limits. A bad key fails the step (sticky, so ignoring the error does
//! not help); a broken limit traps at once.

use super::bindings::{v1, v2};
use super::bytes::FromGuest;
use super::failure::{FailureKind, OpFailure, Tripped};
use super::policy::Limits;
use super::sandbox::StepState;
use super::types::ValueType;
use crate::key::{KEY_RULE, MappingKey};
use rustc_hash::FxHashSet;
use wasmtime::StoreContextMut;
use wasmtime::component::{HasSelf, Linker};

/// Receives the items a step emits, as it emits them, so that mapped steps can
/// start while the emitter still runs.
pub trait EmitSink: Send {
    /// One validated item of the dynamic output at index `output` of the
    /// policy's `dynamic_outputs` (an index, so a million emits allocate no
    /// names), with its metadata as a JSON array when it has any.
    ///
    /// Returns how long the sink held the step back (a sink may wait for
    /// its reader to catch up, so a fast emitter cannot queue without
    /// bound): that time is the host's, not the op's, and is added to the
    /// step's time limit.
    fn emit(
        &mut self,
        output: usize,
        key: MappingKey,
        value: Vec<u8>,
        metadata: Option<Box<str>>,
    ) -> std::time::Duration;
}

/// Per-step emit bookkeeping.
pub(crate) struct EmitState {
    sink: Box<dyn EmitSink>,
    op: std::sync::Arc<str>,
    outputs: Vec<String>,
    /// Keys seen so far, per output index.
    seen: Vec<FxHashSet<MappingKey>>,
    limits: Limits,
    /// Declared item types per output; empty when none is declared.
    /// Per dynamic output, what its values must be; `None` for an op with
    /// none (most ops: a step then takes no count on the list every worker
    /// shares).
    types: Option<std::sync::Arc<[ValueType]>>,
    pub items: u64,
    pub bytes: u64,
    /// Bytes of metadata (items' and the result's): they count toward
    /// `max_output_bytes` like values do.
    pub metadata_bytes: u64,
    /// Metadata on the step's result, as a JSON array.
    pub result_metadata: Option<Box<str>>,
    /// Named plain outputs the op may set, and what each must be.
    plain_names: Vec<String>,
    plain_types: Vec<ValueType>,
    /// Per named plain output: its value once set, and its metadata.
    pub plain: Vec<super::NamedValue>,
    /// Bytes of named plain outputs set so far.
    pub plain_bytes: u64,
    /// The first rule this step broke; the step fails with it whatever it returns.
    pub failure: Option<OpFailure>,
    /// Time the sink held the step back since the runtime last looked.
    pub held_back: std::time::Duration,
}

impl EmitState {
    pub fn new(
        sink: Box<dyn EmitSink>,
        op: &std::sync::Arc<str>,
        policy: &super::SandboxPolicy,
    ) -> Self {
        // Most ops declare no dynamic or named outputs: copying an empty
        // list is still a call per step, so those are made empty here.
        fn copy<T: Clone>(list: &[T]) -> Vec<T> {
            if list.is_empty() {
                Vec::new()
            } else {
                list.to_vec()
            }
        }
        let outputs = &policy.dynamic_outputs;
        Self {
            sink,
            op: op.clone(),
            outputs: copy(outputs),
            seen: outputs.iter().map(|_| FxHashSet::default()).collect(),
            limits: policy.limits.clone(),
            types: (!policy.output_types.is_empty()).then(|| policy.output_types.clone()),
            items: 0,
            bytes: 0,
            metadata_bytes: 0,
            result_metadata: None,
            plain_names: copy(&policy.plain_outputs),
            plain_types: copy(&policy.plain_output_types),
            plain: policy
                .plain_outputs
                .iter()
                .map(|name| super::NamedValue {
                    name: name.clone(),
                    ..super::NamedValue::default()
                })
                .collect(),
            plain_bytes: 0,
            failure: None,
            held_back: std::time::Duration::ZERO,
        }
    }

    fn emit(
        &mut self,
        output: &str,
        key: String,
        value: Vec<u8>,
        metadata: Vec<v2::dynhost::op::types::MetadataEntry>,
    ) -> wasmtime::Result<Result<(), String>> {
        if let Some(failure) = &self.failure {
            return Ok(Err(format!(
                "this step already failed: {}",
                failure.message
            )));
        }
        let op = &self.op;
        let Some(index) = self.outputs.iter().position(|o| o == output) else {
            let declared = if self.outputs.is_empty() {
                "none; add `dynamic = true` to the op in job.toml".to_owned()
            } else {
                self.outputs
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Ok(Err(self.fail(format!(
                "op `{op}` emitted to dynamic output `{output}`, which it does not declare (declared: {declared})"
            ))));
        };
        let key = match MappingKey::parse(&key) {
            Ok(key) => key,
            Err(_) => {
                return Ok(Err(self.fail(format!(
                    "op `{op}` emitted invalid mapping key {key:?}: keys must be {KEY_RULE}"
                ))));
            }
        };
        self.limit(
            self.items + 1 > self.limits.max_emits,
            "max_emits",
            self.limits.max_emits,
            "items",
        )?;
        let metadata = match super::metadata::to_json(metadata) {
            Ok(metadata) => metadata,
            Err(reason) => {
                return Ok(Err(self.fail_with(
                    FailureKind::OpError,
                    format!("op `{op}` emitted key `{key}` on output `{output}` with bad metadata: {reason}"),
                )));
            }
        };
        let len = value.len() as u64;
        self.limit(
            len > self.limits.max_value_bytes,
            "max_value_bytes",
            self.limits.max_value_bytes,
            "bytes in one value",
        )?;
        let metadata_len = metadata.as_ref().map_or(0, |m| m.len() as u64);
        self.limit(
            self.bytes + self.metadata_bytes + metadata_len + len > self.limits.max_output_bytes,
            "max_output_bytes",
            self.limits.max_output_bytes,
            "bytes",
        )?;
        if let Some(Err(reason)) = self
            .types
            .as_deref()
            .and_then(|types| types.get(index))
            .map(|t| t.check(&value))
        {
            let message = format!(
                "op `{op}` emitted a value on output `{output}` (key `{key}`) that {reason}; fix the op or the output's `type`/`schema` in job.toml"
            );
            self.failure = Some(OpFailure::new(FailureKind::TypeCheck, message.clone()));
            return Ok(Err(message));
        }
        if !self.seen[index].insert(key.clone()) {
            return Ok(Err(self.fail(format!(
                "op `{op}` emitted mapping key `{key}` twice on output `{output}`; keys must be unique within an output"
            ))));
        }
        self.items += 1;
        self.bytes += len;
        self.metadata_bytes += metadata_len;
        self.held_back += self.sink.emit(index, key, value, metadata);
        Ok(Ok(()))
    }

    /// `set-output`: sets a named plain output, once.
    fn set_output(&mut self, name: &str, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if let Some(failure) = &self.failure {
            return Ok(Err(format!(
                "this step already failed: {}",
                failure.message
            )));
        }
        let op = self.op.clone();
        let Some(index) = self.plain_names.iter().position(|n| n == name) else {
            let declared = if self.plain_names.is_empty() {
                "none".to_owned()
            } else {
                self.plain_names.join(", ")
            };
            return Ok(Err(self.fail_with(
                FailureKind::OpError,
                format!("op `{op}` set output `{name}`, which it does not declare as a plain output (declared: {declared}); add `outputs.{name} = {{ plain = true }}` to the op in job.toml"),
            )));
        };
        if self.plain[index].value.is_some() {
            return Ok(Err(self.fail_with(
                FailureKind::OpError,
                format!("op `{op}` set output `{name}` twice; a plain output is set once per step"),
            )));
        }
        let len = value.len() as u64;
        self.limit(
            len > self.limits.max_value_bytes,
            "max_value_bytes",
            self.limits.max_value_bytes,
            "bytes in one value",
        )?;
        self.limit(
            self.bytes + self.metadata_bytes + self.plain_bytes + len
                > self.limits.max_output_bytes,
            "max_output_bytes",
            self.limits.max_output_bytes,
            "bytes",
        )?;
        if let Err(reason) = self.plain_types[index].check(&value) {
            let message = format!(
                "op `{op}` set output `{name}` to a value that {reason}; fix the op or the output's `type`/`schema` in job.toml"
            );
            self.failure = Some(OpFailure::new(FailureKind::TypeCheck, message.clone()));
            return Ok(Err(message));
        }
        self.plain_bytes += len;
        self.plain[index].value = Some(value);
        Ok(Ok(()))
    }

    /// `add-output-metadata`: merges entries into the metadata of the
    /// result or of a named plain output.
    fn add_output_metadata(
        &mut self,
        output: &str,
        entries: Vec<v2::dynhost::op::types::MetadataEntry>,
    ) -> wasmtime::Result<Result<(), String>> {
        let op = self.op.clone();
        let slot = if output == "result" {
            &mut self.result_metadata
        } else if let Some(i) = self.plain_names.iter().position(|n| n == output) {
            &mut self.plain[i].metadata
        } else {
            return Ok(Err(self.fail_with(
                FailureKind::OpError,
                format!("op `{op}` added metadata to output `{output}`, which is neither `result` nor one of its plain outputs (items take their metadata in `emit`)"),
            )));
        };
        let before = slot.as_ref().map_or(0, |m| m.len() as u64);
        let merged = super::metadata::merge(slot.take(), entries);
        let after = match merged {
            Ok(merged) => {
                let after = merged.as_ref().map_or(0, |m| m.len() as u64);
                *slot = merged;
                after
            }
            Err(reason) => {
                return Ok(Err(self.fail_with(
                    FailureKind::OpError,
                    format!("op `{op}` added bad metadata to output `{output}`: {reason}"),
                )));
            }
        };
        self.metadata_bytes = (self.metadata_bytes + after).saturating_sub(before);
        self.limit(
            self.bytes + self.metadata_bytes > self.limits.max_output_bytes,
            "max_output_bytes",
            self.limits.max_output_bytes,
            "bytes",
        )?;
        Ok(Ok(()))
    }

    fn fail(&mut self, message: String) -> String {
        self.fail_with(FailureKind::InvalidKey, message)
    }

    /// Makes the step fail with `kind` whatever it returns; the message is
    /// also the error the guest gets back.
    fn fail_with(&mut self, kind: FailureKind, message: String) -> String {
        self.failure = Some(OpFailure::new(kind, message.clone()));
        message
    }

    /// Traps with an `output-limit` failure when `exceeded`.
    fn limit(&self, exceeded: bool, name: &str, value: u64, unit: &str) -> wasmtime::Result<()> {
        if !exceeded {
            return Ok(());
        }
        Err(wasmtime::Error::new(Tripped(output_limit(
            &self.op, name, value, unit,
        ))))
    }
}

/// The failure for a step that broke output limit `name`.
pub(crate) fn output_limit(op: &str, name: &str, value: u64, unit: &str) -> OpFailure {
    OpFailure::new(
        FailureKind::OutputLimit,
        format!(
            "op `{op}` went past the `{name}` limit of {value} {unit}; raise `limits.{name}` on the op if this is expected"
        ),
    )
}

impl StepState {
    /// [`EmitState::emit`]; the time the sink held the step back is given
    /// back to its time limit, on the wall-clock deadline and on the watch
    /// that signals a step blocked past it.
    fn emit_item(
        &mut self,
        output: &str,
        key: String,
        value: Vec<u8>,
        metadata: Vec<v2::dynhost::op::types::MetadataEntry>,
    ) -> wasmtime::Result<Result<(), String>> {
        let result = self.emits.emit(output, key, value, metadata);
        let held = std::mem::take(&mut self.emits.held_back);
        if !held.is_zero() {
            self.limit.deadline += held;
            super::kick::postpone(held);
        }
        result
    }
}

impl v1::dynhost::op::types::Host for StepState {}
impl v2::dynhost::op::types::Host for StepState {}

/// The `level` enum; both versions declare the same cases in the same order
/// (wasmtime checks enums by their case names, so one type serves both).
type Level = v2::dynhost::op::types::Level;
/// A metadata entry (0.2.0).
type Metadata = Vec<v2::dynhost::op::types::MetadataEntry>;
/// What every value-taking host function returns: an error result the op
/// sees, or a trap (a broken limit).
type Answer = wasmtime::Result<(Result<(), String>,)>;

/// Links both versions of `dynhost:op/host`, and their `types` (which has
/// no functions). By hand rather than through `bindgen!`'s `add_to_linker`
/// so that values arrive as [`FromGuest`], copied out in one piece (see
/// `runtime::bytes`); the signatures are the WIT's, which wasmtime checks
/// against each component's imports when it is loaded.
pub(crate) fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    v1::dynhost::op::types::add_to_linker::<StepState, HasSelf<StepState>>(linker, |s| s)?;
    v2::dynhost::op::types::add_to_linker::<StepState, HasSelf<StepState>>(linker, |s| s)?;
    for version in ["0.1.0", "0.2.0"] {
        let mut host = linker.instance(&format!("dynhost:op/host@{version}"))?;
        host.func_wrap(
            "emit-dynamic",
            |mut store: StoreContextMut<'_, StepState>,
             (key, value): (String, FromGuest)|
             -> Answer {
                let state = store.data_mut();
                Ok((state.emit_item("result", key, value.0, Vec::new())?,))
            },
        )?;
        host.func_wrap(
            "emit-dynamic-to",
            |mut store: StoreContextMut<'_, StepState>,
             (output, key, value): (String, String, FromGuest)|
             -> Answer {
                let state = store.data_mut();
                Ok((state.emit_item(&output, key, value.0, Vec::new())?,))
            },
        )?;
        host.func_wrap(
            "log",
            |mut store: StoreContextMut<'_, StepState>,
             (level, message): (Level, String)|
             -> wasmtime::Result<()> {
                store.data_mut().log_line(LEVELS[level as usize], &message);
                Ok(())
            },
        )?;
        if version == "0.1.0" {
            continue;
        }
        host.func_wrap(
            "emit",
            |mut store: StoreContextMut<'_, StepState>,
             (output, key, value, metadata): (String, String, FromGuest, Metadata)|
             -> Answer {
                let state = store.data_mut();
                Ok((state.emit_item(&output, key, value.0, metadata)?,))
            },
        )?;
        host.func_wrap(
            "set-output",
            |mut store: StoreContextMut<'_, StepState>,
             (name, value): (String, FromGuest)|
             -> Answer { Ok((store.data_mut().emits.set_output(&name, value.0)?,)) },
        )?;
        host.func_wrap(
            "add-output-metadata",
            |mut store: StoreContextMut<'_, StepState>,
             (output, metadata): (String, Metadata)|
             -> Answer {
                Ok((store
                    .data_mut()
                    .emits
                    .add_output_metadata(&output, metadata)?,))
            },
        )?;
    }
    Ok(())
}

/// `level`'s cases, in WIT order.
const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

impl StepState {
    fn log_line(&mut self, level: &str, message: &str) {
        self.log.push(format!("[{level}] {message}\n").as_bytes());
    }
}
