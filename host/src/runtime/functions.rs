//! Cranelift's incremental compilation cache on disk: compiled function
//! bodies keyed by a hash of their IR (and the compiler's version and
//! target flags), in one SQLite file next to the compiled components.
//!
//! Why: editing a Python op changes its bytecode snapshot, not the
//! interpreter's ~10,000 functions, yet the component's hash changes and the
//! whole 18 MB component used to be compiled again (5–6 s quiet, 26–37 s on a
//! loaded machine). With this cache only the functions whose IR changed are
//! optimised again; the rest are copied from here, so the edit loop gets
//! optimised code at nearly the speed of a cache hit (issue 15, goal 3).
//!
//! Entries are native code, so the file lives in the private (0700) cache
//! directory like the compiled components, and a store that cannot be read
//! or written only costs a full compile. Inserts are kept in memory during a
//! compile (compiler threads never wait for the disk) and written in one
//! transaction afterwards by [`FunctionCache::flush`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size past which the cache file is dropped and started again.
const MAX_FILE_BYTES: u64 = 2 << 30;

/// Compiled function bodies by Cranelift's cache key.
pub(crate) struct FunctionCache {
    path: PathBuf,
    /// Opened on first use (a run whose components are all cached never opens it).
    conn: Mutex<Option<rusqlite::Connection>>,
    /// Entries made since the last flush.
    pending: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Lookups that found a function since [`FunctionCache::take_counts`].
    hits: AtomicUsize,
    /// Lookups since then.
    lookups: AtomicUsize,
}

impl std::fmt::Debug for FunctionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FunctionCache {
    /// A cache in `dir` (created private on first write).
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("functions.sqlite"),
            conn: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
            hits: AtomicUsize::new(0),
            lookups: AtomicUsize::new(0),
        }
    }

    /// (functions found, functions looked up) since the last call.
    pub fn take_counts(&self) -> (usize, usize) {
        (
            self.hits.swap(0, Ordering::Relaxed),
            self.lookups.swap(0, Ordering::Relaxed),
        )
    }

    /// Runs `f` on the open database, opening (and creating) it first; `None`
    /// if it cannot be opened, which only means compiling without it.
    fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Option<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.is_none() {
            match open(&self.path, MAX_FILE_BYTES) {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), "function cache unusable: {e}");
                    return None;
                }
            }
        }
        let conn = conn.as_ref()?;
        f(conn)
            .map_err(|e| tracing::debug!(path = %self.path.display(), "function cache: {e}"))
            .ok()
    }

    /// Writes the entries made since the last flush, in one transaction.
    /// Returns how many were written.
    pub fn flush(&self) -> usize {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            // Lets other processes checkpoint the file.
            self.with(end_read);
            return 0;
        }
        self.with(|conn| {
            end_read(conn)?;
            let tx = conn.unchecked_transaction()?;
            {
                let mut insert =
                    tx.prepare("INSERT OR REPLACE INTO functions (key, code) VALUES (?1, ?2)")?;
                for (key, code) in &pending {
                    insert.execute((key, code))?;
                }
            }
            tx.commit()?;
            Ok(pending.len())
        })
        .unwrap_or(0)
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = self
            .with(|conn| {
                use rusqlite::OptionalExtension;
                // One read transaction for the whole compile: a lookup per
                // function otherwise takes and drops the file's locks each time.
                if conn.is_autocommit() {
                    conn.execute_batch("BEGIN")?;
                }
                conn.prepare_cached("SELECT code FROM functions WHERE key = ?1")?
                    .query_row([key], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
            })
            .flatten()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(found))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key.to_vec(), value));
        true
    }
}

/// Opens the cache file, refusing one that others may write (it holds
/// native code), and makes its table.
fn open(path: &Path, max_bytes: u64) -> Result<rusqlite::Connection, String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    super::cache::create_private_dir(dir).map_err(|e| e.to_string())?;
    if !super::cache::is_private(dir) {
        return Err("the cache directory is writable by other users".into());
    }
    // Entries are never evicted one by one (every edit adds the functions
    // it changed); a file past the cap is started afresh, which costs one
    // full compile per component.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > max_bytes) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    if !super::cache::is_private(path) {
        return Err("the file is writable by other users".into());
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    conn.execute_batch(
        // Reads come from the mapped file (no read call per page), and
        // one compile looks up ~10,000 functions.
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA mmap_size = 1073741824;
         PRAGMA cache_size = -65536;
         CREATE TABLE IF NOT EXISTS functions (key BLOB PRIMARY KEY, code BLOB NOT NULL) WITHOUT ROWID;",
    )
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Ends the read transaction the lookups opened, if any.
fn end_read(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        Ok(())
    } else {
        conn.execute_batch("COMMIT")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn entries_are_found_after_a_flush_by_a_later_process() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FunctionCache::new(&dir.path().join("c"));
        assert!(cache.get(b"f").is_none());
        assert!(cache.insert(b"f", b"code".to_vec()));
        // Not written until the compile is over.
        assert!(cache.get(b"f").is_none());
        assert_eq!(cache.flush(), 1);
        assert_eq!(cache.get(b"f").as_deref(), Some(&b"code"[..]));
        assert_eq!(cache.take_counts(), (1, 3));
        assert_eq!(cache.take_counts(), (0, 0));
        let later = FunctionCache::new(&dir.path().join("c"));
        assert_eq!(later.get(b"f").as_deref(), Some(&b"code"[..]));
        assert!(later.get(b"g").is_none());
    }

    #[test]
    fn a_file_past_the_cap_is_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FunctionCache::new(&dir.path().join("c"));
        cache.insert(b"f", vec![7; 64 << 10]);
        assert_eq!(cache.flush(), 1);
        drop(cache);
        let path = dir.path().join("c/functions.sqlite");
        // Under the cap the entry is kept; over it the file starts empty.
        let kept = open(&path, u64::MAX).unwrap();
        let count = |conn: &rusqlite::Connection| {
            conn.query_row("SELECT count(*) FROM functions", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(count(&kept), 1);
        kept.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        drop(kept);
        let fresh = open(&path, 1).unwrap();
        assert_eq!(count(&fresh), 0);
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("c");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cache = FunctionCache::new(&shared);
        cache.insert(b"f", b"code".to_vec());
        assert_eq!(cache.flush(), 0, "nothing written to a shared directory");
        assert!(cache.get(b"f").is_none());
        assert!(!shared.join("functions.sqlite").exists());
    }
}
