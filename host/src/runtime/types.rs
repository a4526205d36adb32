//! What an op's values are (Dagster's `dagster_type`): declared per output in
//! job.toml, checked on the host for every emitted or returned value, before
//! it leaves the step. An undeclared output is never looked at, so it costs
//! nothing.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The kind of value an output carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Not declared: anything goes, nothing is checked.
    #[default]
    Any,
    /// Any bytes (declared, so an input expecting text is refused).
    Bytes,
    /// UTF-8 text.
    Utf8,
    /// A JSON document (which is also UTF-8 text).
    Json,
}

impl ValueKind {
    /// Parses `bytes`, `utf8` or `json`.
    ///
    /// # Errors
    /// A message listing the kinds.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "bytes" => Ok(Self::Bytes),
            "utf8" => Ok(Self::Utf8),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "type `{other}` is not one of `bytes`, `utf8`, `json`"
            )),
        }
    }

    /// The name used in job.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Any => "undeclared",
            ValueKind::Bytes => "bytes",
            ValueKind::Utf8 => "utf8",
            ValueKind::Json => "json",
        }
    }

    /// Whether values declared `self` are always acceptable where `want` is
    /// expected. An undeclared producer cannot be judged before it runs.
    pub fn satisfies(self, want: ValueKind) -> bool {
        matches!(
            (self, want),
            (ValueKind::Any, _)
                | (_, ValueKind::Any | ValueKind::Bytes)
                | (ValueKind::Utf8 | ValueKind::Json, ValueKind::Utf8)
                | (ValueKind::Json, ValueKind::Json)
        )
    }
}

/// A declared value type: its kind, and for JSON an optional JSON Schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ValueType {
    /// What the values are.
    pub kind: ValueKind,
    /// The JSON Schema every value must match (`json` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
}

/// A compiled JSON Schema, shared by every step of the op; serialized as
/// the schema itself (the locked plan keeps it).
#[derive(Clone)]
pub struct Schema {
    /// The schema as written.
    pub source: Arc<serde_json::Value>,
    /// It compiled.
    pub validator: Arc<jsonschema::Validator>,
}

impl Schema {
    /// Compiles `source`.
    ///
    /// # Errors
    /// Why it is not a valid JSON Schema.
    pub fn new(source: serde_json::Value) -> Result<Self, String> {
        let validator = jsonschema::validator_for(&source).map_err(|e| e.to_string())?;
        Ok(Self {
            source: Arc::new(source),
            validator: Arc::new(validator),
        })
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = serde_json::Value::deserialize(deserializer)?;
        Schema::new(source).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(serializer)
    }
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl ValueType {
    /// Checks one value; `Err` says what is wrong with it.
    pub fn check(&self, bytes: &[u8]) -> Result<(), String> {
        match self.kind {
            ValueKind::Any | ValueKind::Bytes => Ok(()),
            ValueKind::Utf8 => std::str::from_utf8(bytes)
                .map(|_| ())
                .map_err(|e| format!("is not UTF-8 text ({e})")),
            ValueKind::Json => {
                let value: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|e| format!("is not JSON ({e})"))?;
                match &self.schema {
                    None => Ok(()),
                    Some(Schema { validator, .. }) => match validator.iter_errors(&value).next() {
                        None => Ok(()),
                        Some(e) => {
                            let at = e.instance_path.to_string();
                            let at = if at.is_empty() { "/".to_owned() } else { at };
                            Err(format!("does not match its schema at `{at}`: {e}"))
                        }
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_their_kind_and_schema() {
        let utf8 = ValueType {
            kind: ValueKind::Utf8,
            schema: None,
        };
        assert!(utf8.check(b"text").is_ok());
        assert!(utf8.check(&[0xff]).unwrap_err().contains("not UTF-8"));
        let schema = serde_json::json!({ "type": "object", "required": ["n"] });
        let json = ValueType {
            kind: ValueKind::Json,
            schema: Some(Schema::new(schema).unwrap()),
        };
        assert!(json.check(br#"{"n": 1}"#).is_ok());
        assert!(json.check(b"{").unwrap_err().contains("is not JSON"));
        assert!(json.check(b"{}").unwrap_err().contains("at `/`"));
        assert!(
            ValueType::default().check(&[0xff]).is_ok(),
            "undeclared: anything"
        );
    }

    #[test]
    fn declared_kinds_satisfy_what_readers_expect() {
        use ValueKind::*;
        assert!(Json.satisfies(Utf8) && Utf8.satisfies(Bytes) && Any.satisfies(Json));
        assert!(!Bytes.satisfies(Utf8) && !Utf8.satisfies(Json));
    }
}
