//! Metadata an op attaches to an emitted item or to its result (WIT 0.2.0,
//! Dagster's `MetadataValue`s): checked on the host, then carried as JSON
//! text, the form the store, `show` and `--json` events use. Items without
//! metadata carry nothing, so the common case costs nothing.

use super::bindings::v2::dynhost::op::types::{MetadataEntry, MetadataValue};
use serde_json::{Value, json};

/// Why a list of entries was refused.
pub(crate) type Refusal = String;

/// The entries as a JSON array of `{label, kind, value}`, in the order they
/// were given, a later label replacing an earlier one; `None` when empty.
///
/// # Errors
/// An empty label, or a `json` entry that does not parse.
pub(crate) fn to_json(entries: Vec<MetadataEntry>) -> Result<Option<Box<str>>, Refusal> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<(String, Value)> = Vec::with_capacity(entries.len());
    for entry in entries {
        let value = entry_json(&entry)?;
        match out.iter_mut().find(|(label, _)| *label == entry.label) {
            Some(slot) => slot.1 = value,
            None => out.push((entry.label, value)),
        }
    }
    Ok(Some(render(out)))
}

/// Merges `more` into the JSON array `into` (from [`to_json`]) by label.
///
/// # Errors
/// As [`to_json`].
pub(crate) fn merge(
    into: Option<Box<str>>,
    more: Vec<MetadataEntry>,
) -> Result<Option<Box<str>>, Refusal> {
    let Some(existing) = into else {
        return to_json(more);
    };
    let mut out: Vec<(String, Value)> = serde_json::from_str::<Vec<Value>>(&existing)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.get("label")?.as_str()?.to_owned(), v)))
        .collect();
    for entry in more {
        let value = entry_json(&entry)?;
        match out.iter_mut().find(|(label, _)| *label == entry.label) {
            Some(slot) => slot.1 = value,
            None => out.push((entry.label, value)),
        }
    }
    Ok(Some(render(out)))
}

fn render(entries: Vec<(String, Value)>) -> Box<str> {
    Value::Array(entries.into_iter().map(|(_, v)| v).collect())
        .to_string()
        .into_boxed_str()
}

fn entry_json(entry: &MetadataEntry) -> Result<Value, Refusal> {
    if entry.label.is_empty() {
        return Err("a metadata entry has an empty label; give every entry a label".into());
    }
    let (kind, value) = match &entry.value {
        MetadataValue::Text(s) => ("text", json!(s)),
        MetadataValue::Integer(i) => ("integer", json!(i)),
        // JSON has no NaN or infinity: those are kept as text.
        MetadataValue::Float(f) if f.is_finite() => ("float", json!(f)),
        MetadataValue::Float(f) => ("float", json!(f.to_string())),
        MetadataValue::Boolean(b) => ("boolean", json!(b)),
        MetadataValue::Json(text) => {
            let parsed: Value = serde_json::from_str(text).map_err(|e| {
                format!(
                    "metadata entry `{}` is declared json but does not parse: {e}",
                    entry.label
                )
            })?;
            ("json", parsed)
        }
        MetadataValue::Url(s) => ("url", json!(s)),
        MetadataValue::Path(s) => ("path", json!(s)),
    };
    Ok(json!({ "label": entry.label, "kind": kind, "value": value }))
}

/// One line per entry, `label: value`, for `dynhost show`.
pub fn lines(json_text: &str) -> Vec<String> {
    let entries: Vec<Value> = serde_json::from_str(json_text).unwrap_or_default();
    entries
        .iter()
        .map(|e| {
            let label = e.get("label").and_then(Value::as_str).unwrap_or("?");
            let kind = e.get("kind").and_then(Value::as_str).unwrap_or("");
            let value = match e.get("value") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            match kind {
                "url" | "path" | "json" => format!("{label}: {value} ({kind})"),
                _ => format!("{label}: {value}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, value: MetadataValue) -> MetadataEntry {
        MetadataEntry {
            label: label.into(),
            value,
        }
    }

    #[test]
    fn entries_become_labelled_json_and_later_labels_win() {
        let text = to_json(vec![
            entry("rows", MetadataValue::Integer(3)),
            entry("preview", MetadataValue::Json("{\"a\":1}".into())),
            entry("rows", MetadataValue::Integer(4)),
        ])
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!([
                {"label": "rows", "kind": "integer", "value": 4},
                {"label": "preview", "kind": "json", "value": {"a": 1}},
            ])
        );
        let merged = merge(Some(text), vec![entry("ok", MetadataValue::Boolean(true))])
            .unwrap()
            .unwrap();
        assert_eq!(
            lines(&merged),
            ["rows: 4", "preview: {\"a\":1} (json)", "ok: true"]
        );
    }

    #[test]
    fn empty_labels_and_broken_json_are_refused() {
        assert!(to_json(vec![entry("", MetadataValue::Text("x".into()))]).is_err());
        let err = to_json(vec![entry("p", MetadataValue::Json("{".into()))]).unwrap_err();
        assert!(err.contains("`p`"), "{err}");
        assert_eq!(to_json(Vec::new()).unwrap(), None);
    }
}
