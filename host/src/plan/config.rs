//! An op's `config`: overrides from the command line, defaults and checks
//! from its `config_schema` (JSON Schema), as Dagster's `config_schema` with
//! `Field(default_value=...)` checks a run's config before launching it.
//!
//! Defaults are filled first (every `default` of a property missing from the
//! config, recursively into objects), then the whole config is validated
//! with the `jsonschema` crate; the op receives the filled config.

use serde_json::{Map, Value};
use std::path::Path;

/// Fills defaults from `schema` into `config`, then validates it. Returns
/// the config the op will receive.
///
/// # Errors
/// What is wrong, naming the field (`/path/in/config`) and the rule.
pub fn apply_schema(config: Value, schema: &Value) -> Result<Value, String> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("`config_schema` is not a valid JSON Schema: {e}"))?;
    let mut config = config;
    fill_defaults(&mut config, schema);
    let errors: Vec<String> = validator
        .iter_errors(&config)
        .take(3)
        .map(|e| {
            let at = e.instance_path.to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            format!("at `{at}`: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(format!(
            "`config` does not match `config_schema`: {}; fix the config (in job.toml, `--config` or `--set`) or the schema",
            errors.join("; ")
        ))
    }
}

/// Sets every property that `schema` gives a `default` and `config` lacks,
/// walking into nested objects.
fn fill_defaults(config: &mut Value, schema: &Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    if config.is_null() {
        *config = Value::Object(Map::new());
    }
    let Some(object) = config.as_object_mut() else {
        return;
    };
    for (name, property) in properties {
        if !object.contains_key(name)
            && let Some(default) = property.get("default")
        {
            object.insert(name.clone(), default.clone());
        }
        if let Some(value) = object.get_mut(name)
            && value.is_object()
        {
            fill_defaults(value, property);
        }
    }
}

/// `text` with every `${config.KEY}` replaced by the op's config value
/// `KEY` (a string or number; `KEY` may be dotted for nested tables).
///
/// # Errors
/// A `${config.KEY}` with no such value, or a value that is not text.
pub fn expand(text: &str, config: &Value) -> Result<String, String> {
    crate::spec::substitute(text, "config", |key| {
        let value = key
            .split('.')
            .try_fold(config, |v, k| v.get(k))
            .ok_or_else(|| format!("`{text}` names `config.{key}`, which the op's config does not have; set it (`--set ops.NAME.config.{key}=...`) or give it a default in `config_schema`"))?;
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!("`{text}`: `config.{key}` is not text")),
        }
    })
}

/// A declared value type (`outputs.NAME.type`/`schema`, `returns`): a
/// schema alone means `json`.
///
/// # Errors
/// An unknown type, a schema on a type other than `json`, or a schema that
/// cannot be read or compiled.
pub fn value_type(
    kind: Option<&str>,
    schema: Option<&toml::Value>,
    job_dir: &Path,
) -> Result<crate::runtime::types::ValueType, String> {
    use crate::runtime::types::{Schema, ValueKind, ValueType};
    let kind = match (kind, schema) {
        (Some(kind), _) => ValueKind::parse(kind)?,
        (None, Some(_)) => ValueKind::Json,
        (None, None) => ValueKind::Any,
    };
    let schema = match schema {
        None => None,
        Some(_) if kind != ValueKind::Json => {
            return Err("a `schema` needs `type = \"json\"`".into());
        }
        Some(spec) => {
            let json =
                load_schema(spec, job_dir).map_err(|e| e.replace("config_schema", "schema"))?;
            Some(
                Schema::new(json)
                    .map_err(|e| format!("`schema` is not a valid JSON Schema: {e}"))?,
            )
        }
    };
    Ok(ValueType { kind, schema })
}

/// `config_schema` as JSON: inline (a TOML table) or a file beside the job
/// (`.json`, or `.toml`).
///
/// # Errors
/// The file cannot be read or parsed.
pub fn load_schema(spec: &toml::Value, job_dir: &Path) -> Result<Value, String> {
    match spec {
        toml::Value::String(file) => {
            let path = job_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read `config_schema` file `{file}`: {e}"))?;
            if file.ends_with(".toml") {
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| format!("`config_schema` file `{file}` is not TOML: {e}"))?;
                serde_json::to_value(table).map_err(|e| e.to_string())
            } else {
                serde_json::from_str(&text)
                    .map_err(|e| format!("`config_schema` file `{file}` is not JSON: {e}"))
            }
        }
        toml::Value::Table(table) => serde_json::to_value(table).map_err(|e| e.to_string()),
        _ => Err(
            "`config_schema` is a JSON Schema: a table inline, or the name of a `.json` or `.toml` file beside the job".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_filled_then_the_config_is_checked() {
        let schema = json!({
            "type": "object",
            "properties": {
                "path": { "type": "string" },
                "limit": { "type": "integer", "minimum": 1, "default": 10 },
                "deep": { "type": "object", "properties": { "on": { "default": true } } }
            },
            "required": ["path"],
            "additionalProperties": false
        });
        let filled = apply_schema(json!({ "path": "/d", "deep": {} }), &schema).unwrap();
        assert_eq!(
            filled,
            json!({ "path": "/d", "limit": 10, "deep": { "on": true } })
        );
        let missing = apply_schema(json!({}), &schema).unwrap_err();
        assert!(
            missing.contains("at `/`") && missing.contains("\"path\""),
            "{missing}"
        );
        let bad = apply_schema(json!({ "path": "/d", "limit": 0 }), &schema).unwrap_err();
        assert!(bad.contains("at `/limit`"), "{bad}");
        let extra = apply_schema(json!({ "path": "/d", "typo": 1 }), &schema).unwrap_err();
        assert!(extra.contains("typo"), "{extra}");
    }
}
