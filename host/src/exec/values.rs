//! Where a run keeps the values steps return and emit: in memory up to a
//! budget, then in a spill file on disk, so a fan-out is limited by its
//! configured limits and the disk, not by the host's memory (issue 4).
//!
//! The spill file is an anonymous temporary file (unlinked at creation), so
//! it disappears with the process however the run ends. Values are appended
//! through a write buffer and read back with positioned reads when a step's
//! inputs are built. Values are immutable once put, so a reference is just an
//! offset and a length.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes gathered before one write to the spill file.
const WRITE_BUFFER: usize = 1 << 20;

/// Values up to this many bytes live inside [`Value`] itself (no allocation):
/// keys' items and results of small ops are often a few bytes, and a
/// million of them would otherwise cost a million allocations.
const SMALL: usize = 22;

/// A value held by the run: inside itself, in memory, or at a place in the
/// spill file. 24 bytes whichever it is.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// "No value": a step whose optional result was not produced (WIT 0.2.0
    /// `none`). What reads it is skipped; collects leave it out.
    Nothing,
    Small {
        len: u8,
        bytes: [u8; SMALL],
    },
    Inline(Arc<[u8]>),
    Spilled {
        offset: u64,
        len: u32,
    },
}

/// The run's values, in memory until `budget` bytes are held, then on disk.
pub(crate) struct Values {
    budget: u64,
    held: u64,
    spill: Option<Spill>,
    /// The first spill-file error; values are kept in memory from then on.
    error: Option<io::Error>,
    /// Bytes written to the spill file, for the run report.
    pub spilled_bytes: u64,
}

struct Spill {
    file: File,
    /// Bytes of `file` already written; `buffer` continues from there.
    written: u64,
    buffer: Vec<u8>,
}

impl Values {
    /// Keeps up to `budget` bytes of values in memory.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            held: 0,
            spill: None,
            error: None,
            spilled_bytes: 0,
        }
    }

    /// Keeps `bytes`, in memory while the budget lasts.
    pub fn put(&mut self, bytes: Arc<[u8]>) -> Value {
        self.admit(&bytes, || bytes.clone())
    }

    /// Keeps a copy of `bytes`, in memory while the budget lasts.
    pub fn put_slice(&mut self, bytes: &[u8]) -> Value {
        self.admit(bytes, || Arc::from(bytes))
    }

    fn admit(&mut self, bytes: &[u8], shared: impl FnOnce() -> Arc<[u8]>) -> Value {
        if bytes.len() <= SMALL {
            let mut small = [0u8; SMALL];
            small[..bytes.len()].copy_from_slice(bytes);
            return Value::Small {
                len: bytes.len() as u8,
                bytes: small,
            };
        }
        let len = bytes.len() as u64;
        if self.held + len <= self.budget || self.error.is_some() {
            self.held += len;
            return Value::Inline(shared());
        }
        match self.spill(bytes) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!("cannot spill values to disk, keeping them in memory: {e}");
                self.error = Some(e);
                self.held += len;
                Value::Inline(shared())
            }
        }
    }

    fn spill(&mut self, bytes: &[u8]) -> io::Result<Value> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::other("a value of 4 GiB or more cannot be spilled"))?;
        let spill = match &mut self.spill {
            Some(spill) => spill,
            None => self.spill.insert(Spill {
                file: tempfile::tempfile()?,
                written: 0,
                buffer: Vec::with_capacity(WRITE_BUFFER),
            }),
        };
        let offset = spill.written + spill.buffer.len() as u64;
        spill.buffer.extend_from_slice(bytes);
        if spill.buffer.len() >= WRITE_BUFFER {
            spill.flush()?;
        }
        self.spilled_bytes += u64::from(len);
        Ok(Value::Spilled { offset, len })
    }

    /// The bytes of `value`. A spilled value that cannot be read back (the
    /// disk failed under the run) comes back as an error for the caller to
    /// fail the reading step with.
    pub fn get(&self, value: &Value) -> io::Result<Arc<[u8]>> {
        match value {
            Value::Nothing => Ok(Arc::from(&[][..])),
            Value::Small { len, bytes } => Ok(Arc::from(&bytes[..usize::from(*len)])),
            Value::Inline(bytes) => Ok(bytes.clone()),
            Value::Spilled { offset, len } => self.read_spilled(*offset, *len).map(Arc::from),
        }
    }

    /// Appends the bytes of `value` to `out`, for a caller that packs
    /// many values into one buffer (a collect's elements): no shared buffer
    /// made only to be copied once more. On an error `out` may hold part of
    /// the value; the caller drops it.
    pub fn append_to(&self, value: &Value, out: &mut Vec<u8>) -> io::Result<()> {
        match value {
            Value::Nothing => {}
            Value::Small { len, bytes } => out.extend_from_slice(&bytes[..usize::from(*len)]),
            Value::Inline(bytes) => out.extend_from_slice(bytes),
            Value::Spilled { offset, len } => {
                let start = out.len();
                out.resize(start + *len as usize, 0);
                self.read_spilled_into(*offset, &mut out[start..])?;
            }
        }
        Ok(())
    }

    fn read_spilled(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len as usize];
        self.read_spilled_into(offset, &mut out)?;
        Ok(out)
    }

    fn read_spilled_into(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let spill = self
            .spill
            .as_ref()
            .ok_or_else(|| io::Error::other("the spill file is gone"))?;
        if offset >= spill.written {
            let start = (offset - spill.written) as usize;
            out.copy_from_slice(&spill.buffer[start..start + out.len()]);
        } else {
            spill.file.read_exact_at(out, offset)?;
        }
        Ok(())
    }
}

impl Spill {
    fn flush(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.buffer, self.written)?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_budget_go_to_disk_and_come_back_whole() {
        let mut values = Values::new(100);
        let small = values.put(Arc::from(&[1u8; 60][..]));
        let tiny = values.put(Arc::from(&b"k1"[..]));
        let big: Vec<Value> = (0..3000u32)
            .map(|i| values.put(Arc::from(vec![(i % 251) as u8; 1000 + i as usize])))
            .collect();
        assert!(matches!(small, Value::Inline(_)));
        assert!(big.iter().all(|v| matches!(v, Value::Spilled { .. })));
        assert!(
            values.spilled_bytes > WRITE_BUFFER as u64,
            "some were flushed"
        );
        assert_eq!(&*values.get(&small).unwrap(), &[1u8; 60][..]);
        assert_eq!(&*values.get(&tiny).unwrap(), b"k1");
        for (i, v) in big.iter().enumerate() {
            let bytes = values.get(v).unwrap();
            assert_eq!(bytes.len(), 1000 + i, "value {i}");
            assert!(bytes.iter().all(|&b| b == (i % 251) as u8), "value {i}");
        }
        // Appending reads the same bytes, from memory and from disk.
        for v in big.iter().chain([&small, &tiny, &Value::Nothing]) {
            let mut appended = b"x".to_vec();
            values.append_to(v, &mut appended).unwrap();
            assert_eq!(appended[1..], *values.get(v).unwrap());
        }
    }

    #[test]
    fn tiny_values_stay_in_memory_past_the_budget() {
        let mut values = Values::new(0);
        for bytes in [&b""[..], b"k1", &[7u8; SMALL]] {
            let value = values.put(Arc::from(bytes));
            assert!(matches!(value, Value::Small { .. }));
            assert_eq!(&*values.get(&value).unwrap(), bytes);
        }
        assert_eq!(values.spilled_bytes, 0);
        assert!(matches!(
            values.put(Arc::from(&[7u8; SMALL + 1][..])),
            Value::Spilled { .. }
        ));
    }
}
