//! The job file as written: serde types for `job.toml` and [`load`].
//!
//! This layer only checks what one file can tell: TOML syntax, known fields,
//! value types. Whole-graph rules (references, cycles, map scopes) belong to
//! [`crate::plan`]. Paths stay as written; plan resolves them.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// An error in a job file that is visible without looking at the graph.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read job file `{path}`: {reason}")]
    Read {
        /// The job file.
        path: PathBuf,
        /// Why reading failed.
        reason: String,
    },
    /// The file is not valid TOML or does not match the job schema.
    #[error("`{path}`: {reason}")]
    Parse {
        /// The job file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A config override (`--config FILE`, `--set`) cannot be applied.
    #[error("`{source_name}`: {reason}")]
    Override {
        /// The override file, or the `--set` argument.
        source_name: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
}

/// A job file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's name, shown in reports.
    pub name: String,
    /// Limits applied to every op that does not set its own.
    #[serde(default)]
    pub defaults: LimitsSpec,
    /// The ops, by name.
    pub ops: BTreeMap<String, OpSpec>,
    /// Shared resources with concurrency and rate limits, by name.
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceSpec>,
    /// The file this spec was read from (set by [`load`]).
    #[serde(skip)]
    pub file: PathBuf,
}

/// One op of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpSpec {
    /// The op's component, relative to the job file.
    pub component: String,
    /// A shell command that builds the component, run from the job file's
    /// directory by `dynhost build` and `dynhost run --build`.
    pub build: Option<String>,
    /// Free-form configuration, passed to the op as JSON.
    pub config: Option<toml::Table>,
    /// Dynamic outputs: `true` for one named `result`, or a list of names.
    pub dynamic: Option<DynamicSpec>,
    /// Named inputs.
    #[serde(default, deserialize_with = "inputs_table")]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Host directories the op may read (or write, if `writable`).
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Environment variables the op sees; nothing is inherited from the host.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Resource limits for each step of this op.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// How many times to retry a failed step (default 0).
    pub retries: Option<u32>,
    /// Seconds before the first retry; doubles on each further one (default 1).
    pub retry_backoff_secs: Option<f64>,
    /// Failure kinds worth retrying (default: `timeout`, `op-error`, `trap`;
    /// only `timeout` for a deterministic op).
    pub retry_on: Option<Vec<String>>,
    /// Fixed clocks and seeded randomness, so reruns are reproducible.
    #[serde(default)]
    pub deterministic: bool,
    /// Reuse a stored success of any run whose component, config and inputs
    /// are the same (memoization).
    #[serde(default)]
    pub cache: bool,
    /// Worker tags a step of this op needs (`run --nats`): it runs only on
    /// `dynhost worker`s started with every one of them (`--tag gpu`).
    #[serde(default)]
    pub placement: Vec<String>,
    /// What the op does, for `plan`, `show` and the summary.
    pub description: Option<String>,
    /// A JSON Schema for `config` (inline, or a `.json`/`.toml` file beside
    /// the job): defaults filled in, the config checked before any op runs.
    pub config_schema: Option<toml::Value>,
    /// Per dynamic output: whether it must produce items, and a description
    /// (Dagster's `DynamicOut(is_required=..., description=...)`).
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputSpec>,
    /// What the op's plain result is.
    pub returns: Option<ReturnsSpec>,
    /// A directory (relative to the job file) where every value the op
    /// returns is also written as a file, `OP/KEY` (`OP/OUTER/INNER` when
    /// nested; `OP` for an op outside any map), for use outside dynhost.
    pub values_dir: Option<String>,
    /// What each input must be (`bytes`, `utf8`, `json`), by input name:
    /// `validate` refuses an input whose source declares something else.
    #[serde(default)]
    pub expects: BTreeMap<String, String>,
    /// Where the op may send HTTP(S) requests, `scheme://host[:port]` as in
    /// Spin (`https://api.example.com`, `http://127.0.0.1:8080`,
    /// `https://*.example.com`); nothing else is reachable.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Environment variables the op sees whose values come from the host's
    /// environment, by the name the op sees: `{ API_TOKEN = "PAYMENTS_TOKEN" }`.
    /// The values never enter the job file, the store or a plan, and are
    /// redacted from what the op prints.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// At most this many steps of this op run at once, whatever
    /// `--max-concurrent` is.
    pub max_concurrent: Option<u32>,
    /// Named `[resources.NAME]` whose limits each step of this op counts
    /// toward (a slot while it runs, a token when it starts).
    #[serde(default)]
    pub resources: Vec<String>,
}

/// `[resources.NAME]`: a service or anything else several ops share, with
/// limits that hold across all of them (and across runs sharing a store).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// At most this many steps using the resource at once.
    pub max_concurrent: Option<u32>,
    /// Steps started per time unit: `"50/s"`, `"600/m"`, `"1000/h"`.
    pub rate: Option<String>,
    /// Starts allowed at once after a quiet spell (token-bucket size,
    /// default 1: evenly spaced starts).
    pub burst: Option<u32>,
    /// What the resource is, for `plan` and `show`.
    pub description: Option<String>,
}

/// `[ops.NAME.outputs.OUTPUT]`: one dynamic output's declaration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// `true`: a named plain output besides the result (Dagster's several
    /// `Out`s), set once per step with `set-output` (WIT 0.2.0) and read as
    /// `op.NAME`. Otherwise the table declares a dynamic output named in
    /// `dynamic`.
    pub plain: Option<bool>,
    /// `false`: when the output ends with no items, the ops mapped over it
    /// and the collects of it are skipped, not run (default `true`: a
    /// collect of no items gets an empty list). For a plain output: the op
    /// may leave it unset, which skips its readers.
    pub required: Option<bool>,
    /// What the output's items are.
    pub description: Option<String>,
    /// What its values are: `bytes`, `utf8` or `json` (Dagster's
    /// `dagster_type`); checked on the host for every item.
    #[serde(rename = "type")]
    pub value_type: Option<String>,
    /// A JSON Schema every item must match (`type = "json"`): inline, or a
    /// `.json`/`.toml` file beside the job.
    pub schema: Option<toml::Value>,
}

/// `returns = { type = "json", schema = ... }`: what the op's plain result is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnsSpec {
    /// `bytes`, `utf8` or `json`.
    #[serde(rename = "type")]
    pub value_type: Option<String>,
    /// A JSON Schema the value must match (`type = "json"`).
    pub schema: Option<toml::Value>,
    /// What the value is.
    pub description: Option<String>,
    /// `false`: the op may return "no value" (WIT 0.2.0 `none`); the ops
    /// that read the result are then skipped, not failed (Dagster's
    /// `Out(is_required=False)`). Default `true`.
    pub required: Option<bool>,
}

/// The `dynamic` field of an op.
#[derive(Debug, Clone)]
pub enum DynamicSpec {
    /// `dynamic = true`: one dynamic output named `result`.
    Flag(bool),
    /// `dynamic = ["a", "b"]`: named dynamic outputs.
    Names(Vec<String>),
}

/// Where one input's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    /// `"op"` or `"op.output"`: the op's value for this step's key.
    Plain(String),
    /// `{ map = "op" }`: run once per item of a dynamic output (or per key of a
    /// mapped op).
    Map(String),
    /// `{ collect = "op" }`: all per-key values as one list, optionally
    /// tolerating some failed keys.
    Collect(String, Tolerance),
}

impl InputSpec {
    /// The referenced op or output, as written.
    pub fn reference(&self) -> &str {
        match self {
            InputSpec::Plain(r) | InputSpec::Map(r) | InputSpec::Collect(r, _) => r,
        }
    }
}

/// How many failed keys a collect tolerates (it runs without them, and is
/// told which failed and why). The default tolerates none.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tolerance {
    /// `max_failures = N`: at most N failed keys.
    pub max_failures: Option<u64>,
    /// `min_success = 0.9`: at least this fraction of keys succeeded.
    pub min_success: Option<f64>,
}

/// A host directory made visible to an op.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// The host directory, relative to the job file.
    pub host: String,
    /// Where the op sees it, e.g. `/data`.
    pub guest: String,
    /// Whether the op may write; mounts are read-only unless set.
    #[serde(default)]
    pub writable: bool,
    /// The directory is at the same path on every worker machine (a
    /// network file system): with `run --nats` the op may run on any
    /// worker. An op with a mount that is not shared runs on the
    /// coordinator's own machine.
    #[serde(default)]
    pub shared: bool,
}

/// Resource limits; every field is optional and falls back to `[defaults]`,
/// then to dynhost's built-in default (see `plan::limits`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Linear memory per instance, in MiB.
    pub memory_mib: Option<u64>,
    /// Wall time per step, in seconds.
    pub timeout_secs: Option<f64>,
    /// Items one step may emit.
    pub max_emits: Option<u64>,
    /// Bytes of one emitted value.
    pub max_value_bytes: Option<u64>,
    /// Bytes one step may emit and return in total.
    pub max_output_bytes: Option<u64>,
    /// Bytes of captured stdout, stderr and log each.
    pub max_log_bytes: Option<u64>,
    /// Instruction budget per step (wasmtime fuel); unmetered when absent.
    pub fuel: Option<u64>,
    /// Levels of nested fan-out (only in `[defaults]`).
    pub max_nesting: Option<u64>,
    /// The wasm stack in KiB (only in `[defaults]`: wasmtime sets it per engine).
    pub stack_kib: Option<u64>,
    /// HTTP requests one step may make (ops with `allowed_outbound_hosts`).
    pub max_http_requests: Option<u64>,
}

/// Reads and parses a job file.
///
/// # Errors
/// [`SpecError::Read`] if the file cannot be read, [`SpecError::Parse`] with
/// the line and column if it is not a valid job.
pub fn load(path: &Path) -> Result<JobSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parses job file text; `path` is only used in messages and to resolve paths.
///
/// # Errors
/// [`SpecError::Parse`] if `text` is not a valid job.
pub fn parse(path: &Path, text: &str) -> Result<JobSpec, SpecError> {
    let mut spec: JobSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
        path: path.to_owned(),
        reason: e.to_string().trim_end().to_owned(),
    })?;
    spec.file = path.to_owned();
    Ok(spec)
}

/// `dynamic = true` or `dynamic = ["a", "b"]`, with a message that says so
/// for anything else (serde's untagged enums say only "did not match").
impl<'de> Deserialize<'de> for DynamicSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DynamicVisitor;
        impl<'de> Visitor<'de> for DynamicVisitor {
            type Value = DynamicSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#"`true` (one dynamic output, named `result`) or a list of output names, e.g. `dynamic = ["files", "errors"]`"#,
                )
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<DynamicSpec, E> {
                Ok(DynamicSpec::Flag(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<DynamicSpec, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(DynamicSpec::Names(names))
            }
        }
        deserializer.deserialize_any(DynamicVisitor)
    }
}

/// The `inputs` table, with a message that shows its three forms when it is
/// something else (a list, a string).
fn inputs_table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, InputSpec>, D::Error> {
    struct TableVisitor;
    impl<'de> Visitor<'de> for TableVisitor {
        type Value = BTreeMap<String, InputSpec>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                r#"a table of named inputs, each one of: `inputs.NAME = "op"` (the op's value), `inputs.NAME = { map = "op" }` (once per key), `inputs.NAME = { collect = "op" }` (all keys as one list)"#,
            )
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut inputs = BTreeMap::new();
            while let Some((name, input)) = map.next_entry::<String, InputSpec>()? {
                inputs.insert(name, input);
            }
            Ok(inputs)
        }
    }
    deserializer.deserialize_map(TableVisitor)
}

impl<'de> Deserialize<'de> for InputSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = InputSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""op", { map = "op" } or { collect = "op" }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<InputSpec, E> {
                Ok(InputSpec::Plain(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputSpec, A::Error> {
                let mut source: Option<(bool, String)> = None;
                let mut tolerance = Tolerance::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "map" | "collect" => {
                            if source.is_some() {
                                return Err(de::Error::custom(
                                    "an input takes exactly one of `map` or `collect`",
                                ));
                            }
                            source = Some((key == "map", map.next_value()?));
                        }
                        "max_failures" => tolerance.max_failures = Some(map.next_value()?),
                        "min_success" => {
                            let ratio: f64 = map.next_value()?;
                            if !(0.0..=1.0).contains(&ratio) {
                                return Err(de::Error::custom(
                                    "`min_success` is a fraction from 0 to 1, e.g. 0.9",
                                ));
                            }
                            tolerance.min_success = Some(ratio);
                        }
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["map", "collect", "max_failures", "min_success"],
                            ));
                        }
                    }
                }
                match source {
                    None => Err(de::Error::custom(
                        r#"an input needs `map` or `collect`: { map = "op" } or { collect = "op" }"#,
                    )),
                    Some((true, _)) if tolerance != Tolerance::default() => Err(de::Error::custom(
                        "`max_failures` and `min_success` go with `collect`, not `map`",
                    )),
                    Some((true, op)) => Ok(InputSpec::Map(op)),
                    Some((false, op)) => Ok(InputSpec::Collect(op, tolerance)),
                }
            }
        }
        deserializer.deserialize_any(InputVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> JobSpec {
        parse(Path::new("job.toml"), text).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(Path::new("job.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn reads_the_three_input_forms() {
        let spec = parse_ok(
            r#"
            name = "j"
            [ops.a]
            component = "a.wasm"
            dynamic = true
            [ops.b]
            component = "b.wasm"
            inputs.x = { map = "a" }
            inputs.y = "a"
            inputs.z = { collect = "a" }
            "#,
        );
        let b = &spec.ops["b"].inputs;
        assert_eq!(b["x"], InputSpec::Map("a".into()));
        assert_eq!(b["y"], InputSpec::Plain("a".into()));
        assert_eq!(b["z"], InputSpec::Collect("a".into(), Tolerance::default()));
        assert!(matches!(
            spec.ops["a"].dynamic,
            Some(DynamicSpec::Flag(true))
        ));
    }

    #[test]
    fn collect_takes_a_tolerance() {
        let spec = parse_ok(
            "name = \"j\"\n[ops.a]\ncomponent = \"a.wasm\"\ninputs.x = { collect = \"b\", max_failures = 2 }\ninputs.y = { collect = \"b\", min_success = 0.5 }\n",
        );
        let inputs = &spec.ops["a"].inputs;
        let tolerance = Tolerance {
            max_failures: Some(2),
            min_success: None,
        };
        assert_eq!(inputs["x"], InputSpec::Collect("b".into(), tolerance));
        let tolerance = Tolerance {
            max_failures: None,
            min_success: Some(0.5),
        };
        assert_eq!(inputs["y"], InputSpec::Collect("b".into(), tolerance));
        let err = parse_err(
            "name = \"j\"\n[ops.a]\ncomponent = \"a.wasm\"\ninputs.x = { map = \"b\", max_failures = 2 }\n",
        );
        assert!(err.contains("go with `collect`"), "{err}");
        let err = parse_err(
            "name = \"j\"\n[ops.a]\ncomponent = \"a.wasm\"\ninputs.x = { collect = \"b\", min_success = 2.0 }\n",
        );
        assert!(err.contains("fraction from 0 to 1"), "{err}");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = parse_err("name = \"j\"\n[ops.a\ncomponent = 1\n");
        assert!(
            err.starts_with("`job.toml`: TOML parse error at line 2"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse_err("name = \"j\"\n[ops.a]\ncomponent = \"a.wasm\"\ncomponnet = 1\n");
        assert!(err.contains("unknown field `componnet`"), "{err}");
        let err = parse_err(
            "name = \"j\"\n[ops.a]\ncomponent = \"a.wasm\"\ninputs.x = { mapp = \"b\" }\n",
        );
        assert!(
            err.contains("unknown field `mapp`, expected one of `map`, `collect`"),
            "{err}"
        );
        let err = parse_err(
            "name = \"j\"\n[ops.a]\ncomponent = \"a.wasm\"\ninputs.x = { map = \"b\", collect = \"b\" }\n",
        );
        assert!(err.contains("exactly one of"), "{err}");
    }
}

/// Config overrides from the command line, applied to a job before it is
/// planned: `--config FILE` (TOML or JSON, `ops.NAME.config` tables, like
/// Dagster's `-c config.yaml`) and `--set ops.NAME.config.KEY=VALUE`.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Files of `ops.NAME.config` tables, merged in order.
    pub files: Vec<PathBuf>,
    /// `ops.NAME.config.KEY[.KEY...]=VALUE`, applied after the files; VALUE
    /// is read as a TOML value (`3`, `true`, `"x"`, `[1, 2]`), else as text.
    pub sets: Vec<String>,
    /// The environment that `${env.NAME}` in mount host paths reads (the
    /// CLI passes its own; the library never reads the environment).
    pub env: BTreeMap<String, String>,
}

impl Overrides {
    /// Whether there is anything to apply.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.sets.is_empty()
    }
}

/// Applies `overrides` to `spec`'s op configs (tables merge key by key).
///
/// # Errors
/// [`SpecError::Override`] naming the file or `--set`, the op and the fix.
pub fn apply_overrides(spec: &mut JobSpec, overrides: &Overrides) -> Result<(), SpecError> {
    for file in &overrides.files {
        let source_name = file.display().to_string();
        let fail = |reason: String| SpecError::Override {
            source_name: source_name.clone(),
            reason,
        };
        let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
        let extension = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        let table: toml::Table = match extension {
            "json" => serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?,
            "yaml" | "yml" => {
                serde_norway::from_str(&text).map_err(|e| fail(format!("not YAML: {e}")))?
            }
            _ => toml::from_str(&text).map_err(|e| fail(format!("not TOML: {e}")))?,
        };
        let ops = match table.get("ops") {
            Some(toml::Value::Table(ops)) if table.len() == 1 => ops,
            _ => {
                return Err(fail(
                    "write `[ops.NAME.config]` tables (in JSON: `{\"ops\": {\"NAME\": {\"config\": {...}}}}`), nothing else".into(),
                ));
            }
        };
        for (op, settings) in ops {
            let config = match settings {
                toml::Value::Table(t) if t.len() == 1 => t.get("config"),
                _ => None,
            };
            let Some(toml::Value::Table(config)) = config else {
                return Err(fail(format!("`ops.{op}` may hold only a `config` table")));
            };
            let target = op_config(spec, op).map_err(fail)?;
            merge(target, config);
        }
    }
    for (name, op) in &mut spec.ops {
        for mount in &mut op.mounts {
            if mount.host.contains("${env.") {
                mount.host = expand_env(&mount.host, &overrides.env).map_err(|reason| {
                    SpecError::Override {
                        source_name: format!("op `{name}` mount `{}`", mount.guest),
                        reason,
                    }
                })?;
            }
        }
    }
    for set in &overrides.sets {
        let fail = |reason: String| SpecError::Override {
            source_name: format!("--set {set}"),
            reason,
        };
        let (path, value) = set
            .split_once('=')
            .ok_or_else(|| fail("write `ops.NAME.config.KEY=VALUE`".into()))?;
        let parts: Vec<&str> = path.trim().split('.').collect();
        let ["ops", op, "config", keys @ ..] = parts.as_slice() else {
            return Err(fail("write `ops.NAME.config.KEY=VALUE`".into()));
        };
        let Some((last, parents)) = keys.split_last() else {
            return Err(fail("name a key: `ops.NAME.config.KEY=VALUE`".into()));
        };
        let value = parse_value(value.trim());
        let mut table = op_config(spec, op).map_err(fail)?;
        for key in parents {
            let entry = table
                .entry((*key).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => return Err(fail(format!("`{key}` is not a table in the op's config"))),
            };
        }
        table.insert((*last).to_owned(), value);
    }
    Ok(())
}

/// The config table of `op`, created if absent.
fn op_config<'s>(spec: &'s mut JobSpec, op: &str) -> Result<&'s mut toml::Table, String> {
    let known: Vec<String> = spec.ops.keys().cloned().collect();
    let Some(op_spec) = spec.ops.get_mut(op) else {
        return Err(format!(
            "the job has no op `{op}` (its ops: {})",
            known.join(", ")
        ));
    };
    Ok(op_spec.config.get_or_insert_with(toml::Table::new))
}

/// Merges `from` into `into`: tables key by key, anything else replaced.
fn merge(into: &mut toml::Table, from: &toml::Table) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge(old, new),
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A `--set` value: TOML if it parses as one (`3`, `true`, `"x"`, `[1]`),
/// else the text itself (`/data2`).
fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// `text` with every `${PREFIX.NAME}` replaced by `lookup(NAME)`: how mount
/// host paths name environment variables (`env`) and config values
/// (`config`, see `plan::config::expand`).
///
/// # Errors
/// An unclosed `${`, or what `lookup` says about a name.
pub fn substitute(
    text: &str,
    prefix: &str,
    mut lookup: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let open = format!("${{{prefix}.");
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        out.push_str(&rest[..start]);
        let after = &rest[start + open.len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}`: `{open}` is not closed with `}}`"))?;
        out.push_str(&lookup(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` with every `${env.NAME}` replaced by that environment variable.
fn expand_env(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    substitute(text, "env", |name| {
        env.get(name).cloned().ok_or_else(|| {
            format!("`{text}` names the environment variable `{name}`, which is not set; set it, or write the path")
        })
    })
}
