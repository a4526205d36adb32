//! Mapping keys: the names that tell the steps of one mapped op apart.
//!
//! A key is chosen by the emitting op at run time, so it is untrusted input. It
//! shows up in step names (`op[key]`), logs and run-store rows, and users turn
//! keys into file names, so the rule is strict but wider than Dagster's
//! `^[A-Za-z0-9_]+$` (dagster#16295 asks for `-` and `.`).

use std::fmt;

/// The longest mapping key allowed, in bytes. Long enough for a file name
/// (most file systems stop at 255) or a UUID with a prefix, short enough that a
/// million step names stay small.
pub const MAX_KEY_BYTES: usize = 128;

/// The rule a mapping key must follow, as shown in error messages.
pub const KEY_RULE: &str = "1 to 128 characters from `A-Z a-z 0-9 _ - .`, not `.` or `..`";

/// A validated mapping key. Cheap to clone: a key of up to 23 bytes (`k123`,
/// most file names, a UUID without its dashes) is kept in place, a longer one
/// in a shared string.
///
/// Why in place: a fan-out of millions holds each key in its item and clones
/// it into every step id, request and event. A shared string per key cost a
/// 32-byte allocation besides the 16-byte handle (~0.3 GiB at 10,000,000
/// keys, issue 15 goal 7), and every clone and drop touched its reference
/// count from whichever worker or coordinator thread held the copy; in
/// place, a clone is a copy of 24 bytes and equality reads no other
/// memory. ([`smol_str`], from rust-analyzer, does exactly this.)
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MappingKey(smol_str::SmolStr);

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
        Ok(Self(smol_str::SmolStr::new(key)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for MappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MappingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl serde::Serialize for MappingKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
