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
    #[serde(default)]
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
}

/// The `dynamic` field of an op.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DynamicSpec {
    /// `dynamic = true`: one dynamic output named `result`.
    Flag(bool),
    /// `dynamic = ["a", "b"]`: named dynamic outputs.
    Names(Vec<String>),
}

/// Where one input's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// `"op"` or `"op.output"`: the op's value for this step's key.
    Plain(String),
    /// `{ map = "op" }`: run once per item of a dynamic output (or per key of a
    /// mapped op).
    Map(String),
    /// `{ collect = "op" }`: all per-key values as one list.
    Collect(String),
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
                let Some((kind, source)) = map.next_entry::<String, String>()? else {
                    return Err(de::Error::custom(
                        r#"empty input: use { map = "op" } or { collect = "op" }"#,
                    ));
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "an input takes exactly one of `map` or `collect`",
                    ));
                }
                match kind.as_str() {
                    "map" => Ok(InputSpec::Map(source)),
                    "collect" => Ok(InputSpec::Collect(source)),
                    other => Err(de::Error::unknown_field(other, &["map", "collect"])),
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
        assert_eq!(b["z"], InputSpec::Collect("a".into()));
        assert!(matches!(
            spec.ops["a"].dynamic,
            Some(DynamicSpec::Flag(true))
        ));
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
            err.contains("unknown field `mapp`, expected `map` or `collect`"),
            "{err}"
        );
        let err = parse_err(
            "name = \"j\"\n[ops.a]\ncomponent = \"a.wasm\"\ninputs.x = { map = \"b\", collect = \"b\" }\n",
        );
        assert!(err.contains("exactly one of"), "{err}");
    }
}
