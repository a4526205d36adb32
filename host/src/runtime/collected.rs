//! A collect's elements, packed: every element's keys in one string, every
//! value in one byte buffer, and two offsets per element.
//!
//! Why: a collect of N items used to be N `(Vec<String>, Vec<u8>)` pairs —
//! three allocations and ~150 bytes an element before any key or value
//! byte — built whole on the coordinator before the call. At 10,000,000
//! keys that list alone was ~1.5 GiB (issue 15, goal 7). Packed, an element
//! costs 16 bytes plus its keys and value, and `runtime/call.rs` lowers it
//! into the guest straight from here, one element at a time.

/// The elements of one collected input, in emission order: each one's keys
/// (relative to the collecting op, outermost first) and value bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedItems {
    /// Every element's keys, the keys of one element joined by
    /// [`SEPARATOR`] (which no mapping key contains), back to back.
    keys: String,
    /// Every element's value, back to back.
    values: Vec<u8>,
    /// Per element, where its keys and its value end in `keys` and `values`.
    ends: Vec<(usize, usize)>,
}

/// Between the keys of one element in [`CollectedItems::keys`]: mapping
/// keys are `A-Z a-z 0-9 _ - .` only (`crate::key::KEY_RULE`).
const SEPARATOR: char = '/';

impl CollectedItems {
    /// No elements.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for `more` elements whose keys take about `key_bytes`
    /// each, so a large collect's offsets and keys grow once, not by
    /// doubling with both copies alive.
    pub fn reserve(&mut self, more: usize, key_bytes: usize) {
        self.ends.reserve_exact(more);
        self.keys.reserve(more.saturating_mul(key_bytes));
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends an element whose value `write_value` appends to the buffer it
    /// is given (so a value read back from disk lands here without a copy
    /// in between). On an error nothing is appended.
    ///
    /// Keys must be mapping keys (checked by [`crate::key::MappingKey`]);
    /// one holding the separator would read back as two.
    pub fn push_with<E>(
        &mut self,
        keys: impl IntoIterator<Item = impl AsRef<str>>,
        write_value: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let values_start = self.values.len();
        if let Err(e) = write_value(&mut self.values) {
            self.values.truncate(values_start);
            return Err(e);
        }
        for (i, key) in keys.into_iter().enumerate() {
            let key = key.as_ref();
            debug_assert!(!key.contains(SEPARATOR), "not a mapping key: {key:?}");
            if i > 0 {
                self.keys.push(SEPARATOR);
            }
            self.keys.push_str(key);
        }
        self.ends.push((self.keys.len(), self.values.len()));
        Ok(())
    }

    /// Appends an element.
    pub fn push(&mut self, keys: impl IntoIterator<Item = impl AsRef<str>>, value: &[u8]) {
        let pushed: Result<(), std::convert::Infallible> = self.push_with(keys, |out| {
            out.extend_from_slice(value);
            Ok(())
        });
        let Ok(()) = pushed;
    }

    /// The elements in order: each one's keys and value.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Keys<'_>, &[u8])> + '_ {
        let mut start = (0, 0);
        self.ends.iter().map(move |&(key_end, value_end)| {
            let keys = Keys(&self.keys[start.0..key_end]);
            let value = &self.values[start.1..value_end];
            start = (key_end, value_end);
            (keys, value)
        })
    }
}

/// The keys of one element, outermost first.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a>(&'a str);

impl<'a> Keys<'a> {
    /// Each key.
    pub fn iter(self) -> impl Iterator<Item = &'a str> {
        // No keys at all is an empty string, not one empty key.
        self.0.split(SEPARATOR).filter(|k| !k.is_empty())
    }

    /// The keys as owned strings.
    pub fn to_vec(self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

impl<S: AsRef<str>, V: AsRef<[u8]>> FromIterator<(Vec<S>, V)> for CollectedItems {
    fn from_iter<I: IntoIterator<Item = (Vec<S>, V)>>(iter: I) -> Self {
        let mut items = Self::new();
        for (keys, value) in iter {
            items.push(keys, value.as_ref());
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpacked(items: &CollectedItems) -> Vec<(Vec<String>, Vec<u8>)> {
        items
            .iter()
            .map(|(keys, value)| (keys.to_vec(), value.to_vec()))
            .collect()
    }

    #[test]
    fn elements_read_back_in_order_with_their_keys_and_values() {
        let mut items = CollectedItems::new();
        items.push(["a", "x.1"], b"one");
        items.push(["b", "y-2"], b"");
        items.push(["c", "z_3"], b"three");
        assert_eq!(items.len(), 3);
        assert_eq!(
            unpacked(&items),
            [
                (vec!["a".into(), "x.1".into()], b"one".to_vec()),
                (vec!["b".into(), "y-2".into()], Vec::new()),
                (vec!["c".into(), "z_3".into()], b"three".to_vec()),
            ]
        );
    }

    #[test]
    fn an_element_may_have_no_keys() {
        let mut items = CollectedItems::new();
        items.push(Vec::<String>::new(), b"v");
        items.push(["k"], b"w");
        assert_eq!(
            unpacked(&items),
            [
                (Vec::new(), b"v".to_vec()),
                (vec!["k".into()], b"w".to_vec())
            ]
        );
    }

    #[test]
    fn a_value_that_cannot_be_read_appends_nothing() {
        let mut items = CollectedItems::new();
        items.push(["a"], b"1");
        let failed = items.push_with(["b"], |out| {
            out.extend_from_slice(b"partial");
            Err("unreadable")
        });
        assert_eq!(failed, Err("unreadable"));
        items.push(["c"], b"3");
        assert_eq!(
            unpacked(&items),
            [
                (vec!["a".into()], b"1".to_vec()),
                (vec!["c".into()], b"3".to_vec())
            ]
        );
    }
}
