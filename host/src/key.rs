//! Mapping keys: the names that tell the steps of one mapped op apart.
//!
//! A key is chosen by the emitting op at run time, so it is untrusted input. It
//! shows up in step names (`op[key]`), logs and run-store rows, and users turn
//! keys into file names, so the rule is strict but wider than Dagster's
//! `^[A-Za-z0-9_]+$` (dagster#16295 asks for `-` and `.`).

use std::fmt;
use std::sync::Arc;

/// The longest mapping key allowed, in bytes. Long enough for a file name
/// (most file systems stop at 255) or a UUID with a prefix, short enough that a
/// million step names stay small.
pub const MAX_KEY_BYTES: usize = 128;

/// The rule a mapping key must follow, as shown in error messages.
pub const KEY_RULE: &str = "1 to 128 characters from `A-Z a-z 0-9 _ - .`, not `.` or `..`";

/// A validated mapping key. Cheap to clone: a fan-out of a million keys shares
/// each key between its steps, items and collected inputs.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct MappingKey(Arc<str>);

/// Equal text, with a shortcut for the same key: the scheduler's lookups
/// compare a step's keys with the copies its map holds, nearly always
/// clones of one `Arc`, and reading the other copy's text is a cache miss
/// on a map of a million steps.
impl PartialEq for MappingKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// By text, as equality is.
impl std::hash::Hash for MappingKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl MappingKey {
    /// Checks `key` against [`KEY_RULE`].
    ///
    /// # Errors
    /// Returns the rule that `key` breaks, for the caller to name the op.
    pub fn parse(key: &str) -> Result<Self, String> {
        let valid_chars = key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if key.is_empty() || key.len() > MAX_KEY_BYTES || !valid_chars || key == "." || key == ".."
        {
            return Err(format!("mapping keys must be {KEY_RULE}"));
        }
        Ok(Self(key.into()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl serde::Serialize for MappingKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// The keys of one step, outermost first; empty for a step outside any map.
/// One level inline (24 bytes; nested maps allocate): a million-key map holds
/// and clones a million of these, and a heap allocation each cost more than
/// the rest of the step's bookkeeping.
pub type KeyPath = smallvec::SmallVec<[MappingKey; 1]>;

/// The name of one step, `op[k1][k2]`, formatted only when shown.
#[derive(Debug, Clone, Copy)]
pub struct StepName<'a> {
    /// The op.
    pub op: &'a str,
    /// The step's keys, outermost first.
    pub keys: &'a [MappingKey],
}

impl fmt::Display for StepName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op)?;
        for key in self.keys {
            write!(f, "[{key}]")?;
        }
        Ok(())
    }
}

impl serde::Serialize for StepName<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Keys as plain strings, the form the guest call and the wire carry.
pub fn key_strings(keys: &[MappingKey]) -> Vec<String> {
    keys.iter().map(|k| k.as_str().to_owned()).collect()
}

/// Formats `op[k1][k2]`, the name of one step, as Dagster does for one level.
pub fn step_name(op: &str, keys: &[MappingKey]) -> String {
    let mut name = op.to_owned();
    for key in keys {
        name.push('[');
        name.push_str(key.as_str());
        name.push(']');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for key in [
            "a",
            "file_1.csv",
            "2024-01-01",
            "A-b.c_d",
            &"x".repeat(MAX_KEY_BYTES),
        ] {
            assert!(MappingKey::parse(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let too_long = "x".repeat(MAX_KEY_BYTES + 1);
        for key in ["", ".", "..", "a b", "a/b", "ä", "a[0]", too_long.as_str()] {
            let err = MappingKey::parse(key).unwrap_err();
            assert!(err.contains("A-Z a-z 0-9 _ - ."), "{key}: {err}");
        }
    }

    #[test]
    fn step_names_nest_outermost_first() {
        let keys = vec![
            MappingKey::parse("a").unwrap(),
            MappingKey::parse("x").unwrap(),
        ];
        assert_eq!(step_name("op", &keys), "op[a][x]");
        assert_eq!(step_name("op", &[]), "op");
    }

    #[test]
    fn keys_are_equal_by_text_whether_shared_or_not() {
        let a = MappingKey::parse("k1").unwrap();
        assert!(a == a.clone());
        assert!(a == MappingKey::parse("k1").unwrap());
        assert!(a != MappingKey::parse("k2").unwrap());
    }
}
