//! The messages between a coordinator and workers in other processes
//! (issue 13): a step to run, an item it emitted, its end. Versioned serde
//! types, JSON on the wire (readable with `nats sub`), with values inline as
//! base64 when small and by SHA-256 digest (in an object store) when large,
//! so no message grows with a value or a collection's size.
//!
//! A step names its op and the digest of the component it must run, as the
//! run's locked plan does: a worker runs nothing that the plan does not name
//! by digest. Every message carries the step's attempt and every item its
//! position, so a receiver can drop late and duplicate deliveries.

use super::scheduler::StepId;
use super::transport::{StepEvent, StepRequest};
use super::worker::Emitted;
use crate::key::{KeyPath, MappingKey, key_strings};
use crate::plan::Plan;
use crate::runtime::{CollectedItems, InputData, NamedValue, OpFailure, StepReport, StepStats};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The version of these messages; a receiver refuses any other.
pub const WIRE_VERSION: u32 = 1;

/// Values up to this size travel inside the message; larger ones by digest.
pub const INLINE_MAX: usize = 64 << 10;

/// Why a message cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    /// Not one of these messages at all.
    #[error("not a dynhost message: {0}")]
    Malformed(String),
    /// Written by a dynhost speaking another version.
    #[error(
        "message version {found}, this dynhost speaks {WIRE_VERSION}; run the same dynhost version on the coordinator and every worker"
    )]
    Version {
        /// The version the message says.
        found: u32,
    },
    /// It names an op, key, output or value this side does not know.
    #[error("{0}")]
    Unknown(String),
}

/// A value: inline, or by the SHA-256 of its bytes in the object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blob {
    /// The bytes themselves.
    Inline(#[serde(with = "b64")] Vec<u8>),
    /// Stored elsewhere under `sha256:HEX`.
    Stored {
        /// `sha256:` and the hex digest.
        digest: String,
        /// Its size.
        len: u64,
    },
}

/// Where values over [`INLINE_MAX`] go and come from (the JetStream object
/// store for NATS; a map in tests).
pub trait BlobStore {
    /// Keeps `bytes`; returns their digest.
    ///
    /// # Errors
    /// Why they could not be kept.
    fn put(&mut self, bytes: &[u8]) -> Result<String, String>;
    /// The bytes stored under `digest`.
    ///
    /// # Errors
    /// Why they could not be fetched.
    fn get(&mut self, digest: &str) -> Result<Vec<u8>, String>;
}

impl Blob {
    /// `bytes` inline if small, else put in `store`.
    ///
    /// # Errors
    /// The store's.
    pub fn of(bytes: &[u8], store: &mut dyn BlobStore) -> Result<Self, String> {
        if bytes.len() <= INLINE_MAX {
            return Ok(Blob::Inline(bytes.to_vec()));
        }
        Ok(Blob::Stored {
            digest: store.put(bytes)?,
            len: bytes.len() as u64,
        })
    }

    /// The bytes, fetched from `store` if stored.
    ///
    /// # Errors
    /// The store's, or a fetched value of the wrong size.
    pub fn bytes(self, store: &mut dyn BlobStore) -> Result<Vec<u8>, String> {
        match self {
            Blob::Inline(bytes) => Ok(bytes),
            Blob::Stored { digest, len } => {
                let bytes = store.get(&digest)?;
                if bytes.len() as u64 != len {
                    return Err(format!(
                        "value {digest} has {} bytes, {len} were sent",
                        bytes.len()
                    ));
                }
                Ok(bytes)
            }
        }
    }
}

/// One input of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputMsg {
    /// A single value.
    Single(Blob),
    /// A collected list (keys relative to the collecting op) and tolerated failures.
    Collected {
        /// Elements in emission order.
        items: Vec<(Vec<String>, Blob)>,
        /// Failed elements the collect tolerates.
        failed: Vec<(Vec<String>, OpFailure)>,
    },
    /// An input too large for a message as a whole (a collect of many
    /// small items): this enum's JSON, stored by digest.
    Stored(Blob),
}

/// A step to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMsg {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The run.
    pub run_id: String,
    /// The op, by name in the locked plan.
    pub op: String,
    /// `sha256:HEX` of the component to run: a worker runs nothing else.
    pub component: String,
    /// The step's keys, outermost first.
    pub keys: Vec<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Input values, in the op's input order.
    pub inputs: Vec<InputMsg>,
}

/// Steps sent as one message: they are leased, and acked, together, so a
/// large fan-out costs a message per batch, not per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepBatchMsg {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The steps.
    pub steps: Vec<StepMsg>,
}

/// An item a running step emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemMsg {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The run.
    pub run_id: String,
    /// The emitting op.
    pub op: String,
    /// The emitting step's keys.
    pub keys: Vec<String>,
    /// The attempt that emitted it.
    pub attempt: u32,
    /// Its position among the attempt's items (from 0).
    pub seq: u64,
    /// The dynamic output.
    pub output: String,
    /// Its mapping key.
    pub key: String,
    /// Its value.
    pub value: Blob,
    /// Its metadata, a JSON array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A worker's items and ends, gathered over a millisecond or two, in one
/// message: a fan-out costs a message per batch, not two per key. Each
/// step's items come before its end (a step's end is sent after its items,
/// and a batch lists items first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatchMsg {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// Items, in the order they were emitted.
    #[serde(default)]
    pub items: Vec<ItemMsg>,
    /// Ends.
    #[serde(default)]
    pub finished: Vec<FinishedMsg>,
}

/// A named plain output of a finished step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedMsg {
    /// The output's name.
    pub name: String,
    /// Its value, if the op set it.
    pub value: Option<Blob>,
    /// Its metadata, a JSON array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A step's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsMsg {
    /// Wall time of the attempt, in seconds.
    pub wall_secs: f64,
    /// Peak linear memory and tables.
    pub peak_memory_bytes: u64,
    /// Items emitted: the receiver waits for this many before it acts on
    /// the end, whatever order they arrive in.
    pub emitted_items: u64,
    /// Bytes emitted.
    pub emitted_bytes: u64,
    /// Bytes returned.
    pub output_bytes: u64,
    /// Instructions used, when metered.
    pub fuel_used: Option<u64>,
    /// Outgoing HTTP requests, and their body bytes sent and received.
    #[serde(default)]
    pub http: [u64; 3],
    /// Microseconds spent instantiating, and tearing the instance down.
    #[serde(default)]
    pub phases_us: [u32; 2],
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeMsg {
    /// It returned this value (empty and `no_value` for "no value").
    Succeeded {
        /// The value.
        value: Blob,
        /// It returned "no value" on an optional result.
        #[serde(default)]
        no_value: bool,
    },
    /// It failed.
    Failed(OpFailure),
}

/// A step's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedMsg {
    /// [`WIRE_VERSION`].
    pub v: u32,
    /// The run.
    pub run_id: String,
    /// The op.
    pub op: String,
    /// The step's keys.
    pub keys: Vec<String>,
    /// The attempt that ended.
    pub attempt: u32,
    /// Its outcome.
    pub outcome: OutcomeMsg,
    /// Metadata on the result, a JSON array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Named plain outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<NamedMsg>,
    /// Accounting.
    pub stats: StatsMsg,
    /// Captured stdout, stderr and `host.log`.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// `host.log` lines.
    pub log: String,
}

/// Captured output a finished step carries over the network, per stream:
/// whole up to this, else its start and a note (the limit on a step's log,
/// 1 MiB a stream by default, would not fit a message).
pub const CAPTURE_MAX: usize = 96 << 10;

fn cut(text: &str) -> String {
    if text.len() <= CAPTURE_MAX {
        return text.to_owned();
    }
    let mut end = CAPTURE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[dynhost: cut at {} KiB for the trip from the worker]\n",
        &text[..end],
        CAPTURE_MAX >> 10
    )
}

/// Reads a message of type `T`, checking its version first.
///
/// # Errors
/// [`WireError::Malformed`] or [`WireError::Version`].
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if versioned.v != WIRE_VERSION {
        return Err(WireError::Version { found: versioned.v });
    }
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// A batch message ([`StepBatchMsg`], [`EventBatchMsg`]) from parts already
/// written: `{"v":N,"FIELD":[part,…],…}`. Sizing a batch needs each part's
/// size, so each is serialized once, here joined rather than written again.
pub fn batch(fields: &[(&str, &[Vec<u8>])]) -> Vec<u8> {
    let len: usize = fields
        .iter()
        .flat_map(|(_, parts)| parts.iter().map(|p| p.len() + 1))
        .sum();
    let mut out = Vec::with_capacity(len + 64);
    out.extend_from_slice(format!("{{\"v\":{WIRE_VERSION}").as_bytes());
    for (field, parts) in fields {
        out.extend_from_slice(format!(",\"{field}\":[").as_bytes());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(part);
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// Writes a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Strings, numbers, lists and maps only: serializing cannot fail.
    serde_json::to_vec(message).unwrap_or_default()
}

fn parse_keys(keys: &[String]) -> Result<KeyPath, WireError> {
    keys.iter()
        .map(|k| MappingKey::parse(k).map_err(|_| WireError::Unknown(format!("invalid key {k:?}"))))
        .collect()
}

fn step_of(plan: &Plan, op: &str, keys: &[String]) -> Result<StepId, WireError> {
    let op = plan
        .op_id(op)
        .ok_or_else(|| WireError::Unknown(format!("the plan has no op `{op}`")))?;
    Ok(StepId::new(op, parse_keys(keys)?))
}

fn store_error(e: String) -> WireError {
    WireError::Unknown(e)
}

impl StepMsg {
    /// The message for `request`; `digest` is its component's.
    ///
    /// # Errors
    /// The blob store's.
    pub fn new(
        run_id: &str,
        plan: &Plan,
        digest: &str,
        request: &StepRequest,
        store: &mut dyn BlobStore,
    ) -> Result<Self, String> {
        let inputs = request
            .inputs
            .iter()
            .map(|input| {
                let msg = match input {
                    InputData::Single(bytes) => InputMsg::Single(Blob::of(bytes, store)?),
                    InputData::Collected { items, failed } => InputMsg::Collected {
                        items: items
                            .iter()
                            .map(|(keys, bytes)| Ok((keys.to_vec(), Blob::of(bytes, store)?)))
                            .collect::<Result<_, String>>()?,
                        failed: failed
                            .iter()
                            .map(|(keys, failure)| (key_strings(keys), failure.clone()))
                            .collect(),
                    },
                };
                // A collect of a million small items must not be one giant
                // message: past the inline size it goes by digest too.
                if matches!(msg, InputMsg::Collected { .. }) {
                    let text = encode(&msg);
                    if text.len() > INLINE_MAX {
                        return Ok(InputMsg::Stored(Blob::of(&text, store)?));
                    }
                }
                Ok(msg)
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            v: WIRE_VERSION,
            run_id: run_id.to_owned(),
            op: plan.ops[request.step.op].name.clone(),
            component: digest.to_owned(),
            keys: key_strings(&request.step.keys),
            attempt: request.attempt,
            inputs,
        })
    }

    /// The request again, on the worker's side.
    ///
    /// # Errors
    /// An op or key the plan does not know, or a value that cannot be fetched.
    pub fn request(self, plan: &Plan, store: &mut dyn BlobStore) -> Result<StepRequest, WireError> {
        let step = step_of(plan, &self.op, &self.keys)?;
        let mut inputs = super::worker::Inputs::new();
        for input in self.inputs {
            let input = match input {
                InputMsg::Stored(blob) => {
                    let text = blob.bytes(store).map_err(store_error)?;
                    let input: InputMsg = serde_json::from_slice(&text)
                        .map_err(|e| WireError::Malformed(e.to_string()))?;
                    if matches!(input, InputMsg::Stored(_)) {
                        return Err(WireError::Malformed("a stored input names another".into()));
                    }
                    input
                }
                input => input,
            };
            inputs.push(match input {
                InputMsg::Single(blob) => {
                    InputData::Single(Arc::from(blob.bytes(store).map_err(store_error)?))
                }
                InputMsg::Collected { items, failed } => InputData::Collected {
                    items: {
                        let mut packed = CollectedItems::new();
                        for (keys, blob) in items {
                            let bytes = blob.bytes(store).map_err(store_error)?;
                            // Checked as keys (so none holds the packing's
                            // separator), kept as the strings the guest gets.
                            parse_keys(&keys)?;
                            packed.push(&keys, &bytes);
                        }
                        packed
                    },
                    failed: failed
                        .into_iter()
                        .map(|(keys, failure)| Ok((parse_keys(&keys)?, failure)))
                        .collect::<Result<_, WireError>>()?,
                },
                InputMsg::Stored(_) => unreachable!("resolved above"),
            });
        }
        Ok(StepRequest {
            step,
            attempt: self.attempt,
            inputs,
        })
    }
}

/// A running step's items as messages, numbered as they are emitted: what
/// the item sink of a NATS worker or of a worker process holds.
pub struct ItemNumbers {
    run_id: String,
    step: StepId,
    attempt: u32,
    seq: u64,
}

impl ItemNumbers {
    /// For `attempt` of `step`, from its first item.
    pub fn new(run_id: &str, step: StepId, attempt: u32) -> Self {
        Self {
            run_id: run_id.to_owned(),
            step,
            attempt,
            seq: 0,
        }
    }

    /// The next item's message.
    ///
    /// # Errors
    /// The blob store's.
    pub fn message(
        &mut self,
        plan: &Plan,
        output: usize,
        key: MappingKey,
        value: Vec<u8>,
        metadata: Option<Box<str>>,
        store: &mut dyn BlobStore,
    ) -> Result<ItemMsg, String> {
        let item = Emitted {
            step: self.step.clone(),
            output,
            key,
            value,
            metadata,
        };
        let seq = self.seq;
        self.seq += 1;
        ItemMsg::new(&self.run_id, plan, self.attempt, seq, &item, store)
    }
}

impl ItemMsg {
    /// The message for an item emitted by `attempt`.
    ///
    /// # Errors
    /// The blob store's.
    pub fn new(
        run_id: &str,
        plan: &Plan,
        attempt: u32,
        seq: u64,
        item: &Emitted,
        store: &mut dyn BlobStore,
    ) -> Result<Self, String> {
        let op = &plan.ops[item.step.op];
        Ok(Self {
            v: WIRE_VERSION,
            run_id: run_id.to_owned(),
            op: op.name.clone(),
            keys: key_strings(&item.step.keys),
            attempt,
            seq,
            output: op
                .dynamic_outputs
                .get(item.output)
                .cloned()
                .unwrap_or_default(),
            key: item.key.as_str().to_owned(),
            value: Blob::of(&item.value, store)?,
            metadata: item.metadata.as_deref().map(str::to_owned),
        })
    }

    /// The event again, on the coordinator's side.
    ///
    /// # Errors
    /// An op, output or key the plan does not know, or a value that cannot
    /// be fetched.
    pub fn event(self, plan: &Plan, store: &mut dyn BlobStore) -> Result<StepEvent, WireError> {
        let step = step_of(plan, &self.op, &self.keys)?;
        let output = plan.ops[step.op]
            .dynamic_outputs
            .iter()
            .position(|o| *o == self.output)
            .ok_or_else(|| {
                WireError::Unknown(format!("op `{}` has no output `{}`", self.op, self.output))
            })?;
        Ok(StepEvent::Item {
            attempt: self.attempt,
            seq: self.seq,
            item: Emitted {
                step,
                output,
                key: MappingKey::parse(&self.key)
                    .map_err(|_| WireError::Unknown(format!("invalid key {:?}", self.key)))?,
                value: self.value.bytes(store).map_err(store_error)?,
                metadata: self.metadata.map(String::into_boxed_str),
            },
        })
    }
}

impl FinishedMsg {
    /// The message for the end of `attempt` of `step`.
    ///
    /// # Errors
    /// The blob store's.
    pub fn new(
        run_id: &str,
        plan: &Plan,
        step: &StepId,
        attempt: u32,
        report: &StepReport,
        store: &mut dyn BlobStore,
    ) -> Result<Self, String> {
        let outcome = match &report.outcome {
            Ok(bytes) => OutcomeMsg::Succeeded {
                value: Blob::of(bytes, store)?,
                no_value: report.no_value,
            },
            Err(failure) => OutcomeMsg::Failed(failure.clone()),
        };
        let outputs = report
            .outputs
            .iter()
            .map(|named| {
                Ok(NamedMsg {
                    name: named.name.clone(),
                    value: named
                        .value
                        .as_deref()
                        .map(|bytes| Blob::of(bytes, store))
                        .transpose()?,
                    metadata: named.metadata.as_deref().map(str::to_owned),
                })
            })
            .collect::<Result<_, String>>()?;
        let s = &report.stats;
        Ok(Self {
            v: WIRE_VERSION,
            run_id: run_id.to_owned(),
            op: plan.ops[step.op].name.clone(),
            keys: key_strings(&step.keys),
            attempt,
            outcome,
            metadata: report.metadata.as_deref().map(str::to_owned),
            outputs,
            stats: StatsMsg {
                wall_secs: s.wall.as_secs_f64(),
                peak_memory_bytes: s.peak_memory_bytes,
                emitted_items: s.emitted_items,
                emitted_bytes: s.emitted_bytes,
                output_bytes: s.output_bytes,
                fuel_used: s.fuel_used,
                http: [s.http_requests, s.http_sent_bytes, s.http_received_bytes],
                phases_us: [s.instantiate_us, s.teardown_us],
            },
            stdout: cut(&report.stdout),
            stderr: cut(&report.stderr),
            log: cut(&report.log),
        })
    }

    /// The event again, on the coordinator's side.
    ///
    /// # Errors
    /// An op or key the plan does not know, or a value that cannot be fetched.
    pub fn event(self, plan: &Plan, store: &mut dyn BlobStore) -> Result<StepEvent, WireError> {
        let step = step_of(plan, &self.op, &self.keys)?;
        let (outcome, no_value) = match self.outcome {
            OutcomeMsg::Succeeded { value, no_value } => {
                (Ok(value.bytes(store).map_err(store_error)?), no_value)
            }
            OutcomeMsg::Failed(failure) => (Err(failure), false),
        };
        let outputs = self
            .outputs
            .into_iter()
            .map(|named| {
                Ok(NamedValue {
                    name: named.name,
                    value: named
                        .value
                        .map(|blob| blob.bytes(store))
                        .transpose()
                        .map_err(store_error)?,
                    metadata: named.metadata.map(String::into_boxed_str),
                })
            })
            .collect::<Result<_, WireError>>()?;
        let s = self.stats;
        let report = StepReport {
            outcome,
            no_value,
            metadata: self.metadata.map(String::into_boxed_str),
            outputs,
            stdout: self.stdout,
            stderr: self.stderr,
            log: self.log,
            stats: StepStats {
                wall: Duration::try_from_secs_f64(s.wall_secs).unwrap_or_default(),
                peak_memory_bytes: s.peak_memory_bytes,
                emitted_items: s.emitted_items,
                emitted_bytes: s.emitted_bytes,
                output_bytes: s.output_bytes,
                fuel_used: s.fuel_used,
                http_requests: s.http[0],
                http_sent_bytes: s.http[1],
                http_received_bytes: s.http[2],
                waited: Duration::ZERO,
                instantiate_us: s.phases_us[0],
                teardown_us: s.phases_us[1],
            },
        };
        Ok(StepEvent::Finished {
            step,
            attempt: self.attempt,
            report: Box::new(report),
        })
    }
}

/// Bytes as base64 text in JSON.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
