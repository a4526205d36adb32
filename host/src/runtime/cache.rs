//! On-disk cache of compiled components, so a second run does not compile.
//!
//! An entry's name is a SHA-256 over the component bytes and the engine's
//! compatibility hash (wasmtime version and every setting that changes code),
//! so a changed component, wasmtime or engine setting simply misses. Entries
//! are written to a temporary file and renamed, so concurrent runs never see a
//! half-written artifact, and the directory is private to the user (0700)
//! because loading an artifact runs its code.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash is
/// stable across processes (unlike `DefaultHasher`'s random keys).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The SHA-256 of a component's bytes, hex-encoded: the component's identity.
pub fn component_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex, without a `format!` per byte: hashes are encoded for
/// every step and every stored value.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` in lowercase hex to `out`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.extend(hex_pair(b).map(char::from));
    }
}

/// The two lowercase hex digits of `b`.
pub(crate) fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]
}

/// A directory of compiled components.
pub(crate) struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn entry(&self, engine: &Engine, component_hash: &str) -> PathBuf {
        let mut hasher = ShaHasher(Sha256::new());
        hasher.write(component_hash.as_bytes());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{}.cwasm", hex(&hasher.0.finalize())))
    }

    /// Whether a usable compiled form of the component with this hash is
    /// cached for `engine` (what [`CompileCache::load`] would read).
    pub fn contains(&self, engine: &Engine, hash: &str) -> bool {
        let entry = self.entry(engine, hash);
        is_private(&self.dir) && entry.is_file() && is_private(&entry)
    }

    /// The cached compiled form of the component with this hash, if there
    /// is a usable one: no source bytes needed.
    pub fn cached(&self, engine: &Engine, hash: &str) -> Option<Component> {
        if !self.contains(engine, hash) {
            return None;
        }
        let entry = self.entry(engine, hash);
        deserialize(engine, &entry)
            .inspect_err(|e| {
                tracing::warn!(path = %entry.display(), "ignoring unusable compile cache entry: {e}")
            })
            .ok()
    }

    /// Loads `bytes` as a component, from the cache when possible. A cache
    /// that cannot be read or written only costs a compile.
    pub fn load(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: &[u8],
        before_compile: impl FnOnce(),
    ) -> wasmtime::Result<Component> {
        let entry = self.entry(engine, hash);
        if self.dir.exists() && !is_private(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "compile cache is writable by other users; not using it");
            before_compile();
            return Component::new(engine, bytes);
        }
        if entry.is_file() && is_private(&entry) {
            match deserialize(engine, &entry) {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %entry.display(), "ignoring unusable compile cache entry: {e}")
                }
            }
        }
        before_compile();
        let started = std::time::Instant::now();
        let component = Component::new(engine, bytes)?;
        let compiled = started.elapsed();
        if let Err(e) = self.store(&entry, &component) {
            tracing::warn!(path = %entry.display(), "cannot write compile cache: {e}");
        }
        tracing::debug!(
            compile_secs = compiled.as_secs_f64(),
            store_secs = (started.elapsed() - compiled).as_secs_f64(),
            "compiled and cached a component"
        );
        Ok(component)
    }

    fn store(&self, entry: &Path, component: &Component) -> Result<(), Box<dyn std::error::Error>> {
        create_private_dir(&self.dir)?;
        let artifact = component.serialize().map_err(|e| e.to_string())?;
        let tmp = tempfile_in(&self.dir)?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&artifact)?;
        }
        std::fs::rename(&tmp, entry)?;
        Ok(())
    }
}

/// Loads an artifact this cache wrote.
#[expect(
    unsafe_code,
    reason = "deserializing runs native code; only files from our private cache dir, named by their key, are loaded"
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was written by `CompileCache::store` into a directory only
    // this user can write, under a name derived from the component and engine;
    // wasmtime checks the artifact's header against the engine as well.
    unsafe { Component::deserialize_file(engine, path) }
}

/// True when `path` belongs to this process's user and no one else may write
/// it: an artifact is native code, so only our own writes are trusted.
pub(super) fn is_private(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Ok(me)) = (std::fs::metadata(path), std::fs::metadata("/proc/self")) else {
        return false;
    };
    meta.uid() == me.uid() && meta.mode() & 0o022 == 0
}

pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn tempfile_in(dir: &Path) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(".tmp-{}-{n}", std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::default()
    }

    /// The smallest component: `(component)`.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn hex_is_lower_case_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn second_load_comes_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().join("cache"));
        let hash = component_hash(EMPTY_COMPONENT);
        let mut compiled = 0;
        cache
            .load(&engine(), &hash, EMPTY_COMPONENT, || compiled += 1)
            .unwrap();
        assert_eq!(compiled, 1, "a miss says it compiles");
        let entries: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .collect();
        assert_eq!(entries.len(), 1, "one artifact written");
        // A different component misses: its key differs.
        let other = component_hash(b"other");
        assert_ne!(
            cache.entry(&engine(), &hash),
            cache.entry(&engine(), &other)
        );
        // The entry is loaded, not recompiled: loading garbage bytes under the
        // cached key still succeeds because the bytes are never compiled.
        cache
            .load(&engine(), &hash, b"not wasm", || compiled += 1)
            .unwrap();
        assert_eq!(compiled, 1, "a hit does not say it compiles");
    }

    #[test]
    fn a_cache_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = CompileCache::new(cache_dir.clone());
        let hash = component_hash(EMPTY_COMPONENT);
        cache
            .load(&engine(), &hash, EMPTY_COMPONENT, || {})
            .unwrap();
        std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Now the cached entry is ignored, so the garbage bytes are compiled and fail.
        assert!(cache.load(&engine(), &hash, b"not wasm", || {}).is_err());
    }
}
