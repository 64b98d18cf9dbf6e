//! The compile cache: compiled plugins kept on disk, so that a restart or the
//! reload of an unchanged file does not compile again.
//!
//! Compiling a component is the slow part of loading it: milliseconds for a
//! small Rust plugin, seconds for one that embeds an interpreter (Python,
//! JavaScript). An entry is the engine's serialized form of a component,
//! keyed by the SHA-256 of the `.wasm` file and a fingerprint of the engine
//! (wasmtime's version and every setting that shapes compiled code), so an
//! entry is only ever found by the engine that wrote it.
//!
//! Compiled code is native code: an entry is loaded only when it can be
//! trusted as far as this host can tell.
//! - The folder must belong to the host's user and be writable by no one
//!   else (it is created `0700`); otherwise the cache is not used at all,
//!   and the host says why once.
//! - Each entry ends with the SHA-256 of its contents and a marker: an entry
//!   cut short, altered on disk or written by another format is not
//!   loaded. The engine checks on its own that the entry was written by
//!   the same wasmtime version with the same settings.
//! - An entry that fails any check is removed and the plugin compiled again
//!   (and stored again). A cache that cannot be written only costs time.
//!
//! Entries are written to a temporary file and renamed into place, so two
//! hosts sharing a folder never see a half-written entry. Each hit refreshes
//! the entry's modification time; once the folder holds more than its size
//! bound, the entries used longest ago are removed.

use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The last bytes of every entry, after its checksum: the entry format.
const MARKER: &[u8; 8] = b"wrpcc\x00\x00\x01";
/// Checksum and marker.
const TRAILER: usize = 32 + MARKER.len();
/// Extension of entry files.
const EXTENSION: &str = "cwasm";

/// A folder of compiled plugins for one engine.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    /// Hex fingerprint of the engine: part of every key.
    engine: String,
    /// Bytes the folder may hold before old entries are removed.
    max_bytes: u64,
}

/// What a look-up found.
pub enum Lookup {
    /// A trusted entry, deserialized.
    Hit(Component),
    /// No entry for this key.
    Miss,
    /// An entry that failed a check: removed, with the reason.
    Rejected(String),
}

impl CompileCache {
    /// The cache in `dir` for `engine`, creating the folder (`0700`) when
    /// missing.
    ///
    /// # Errors
    ///
    /// When the folder cannot be created, or is not safe to load native code
    /// from: not a folder, owned by another user, or writable by others.
    pub fn open(dir: &Path, engine: &Engine, max_bytes: u64) -> anyhow::Result<CompileCache> {
        create_private_dir(dir)
            .with_context(|| format!("cannot create the compile cache `{}`", dir.display()))?;
        check_private(dir)?;
        Ok(CompileCache {
            dir: dir.to_owned(),
            engine: engine_fingerprint(engine),
            max_bytes,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry file for a component whose `.wasm` has SHA-256 `wasm_sha256`
    /// (hex).
    pub fn entry_path(&self, wasm_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256}-{}.{EXTENSION}", self.engine))
    }

    /// Loads the entry for `wasm_sha256`, checking it first.
    pub fn load(&self, engine: &Engine, wasm_sha256: &str) -> Lookup {
        let path = self.entry_path(wasm_sha256);
        match checksum_holds(&path) {
            Ok(true) => {}
            Ok(false) => {
                return self.reject(&path, "its checksum does not match its contents".into());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(error) => return self.reject(&path, format!("cannot read it: {error}")),
        }
        // SAFETY: `deserialize_file` trusts the file to be compiled code
        // this engine wrote, and to stay as it is while mapped. The entry
        // lies in a folder only this user can write (checked when the cache
        // was opened), under a key naming this engine; its checksum held
        // just now, so these are the bytes a host of this user wrote, and
        // entries are only ever replaced by a rename, never written in
        // place. wasmtime itself refuses code from another version or with
        // other settings. Mapping the file (rather than copying it into
        // memory) lets the kernel share its pages and drop untouched ones.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                touch(&path);
                Lookup::Hit(component)
            }
            Err(error) => self.reject(&path, format!("the engine refused it: {error}")),
        }
    }

    /// Stores `component` (compiled from a file with SHA-256 `wasm_sha256`),
    /// then removes old entries past the size bound.
    ///
    /// # Errors
    ///
    /// When the component cannot be serialized or the entry written.
    pub fn store(&self, component: &Component, wasm_sha256: &str) -> anyhow::Result<()> {
        let body = component.serialize()?;
        let mut file = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.dir)?;
        file.write_all(&body)?;
        file.write_all(&Sha256::digest(&body))?;
        file.write_all(MARKER)?;
        file.as_file().sync_data()?;
        file.persist(self.entry_path(wasm_sha256))?;
        self.trim();
        Ok(())
    }

    fn reject(&self, path: &Path, reason: String) -> Lookup {
        // Removed so that the fresh compile can take its place.
        let _ = std::fs::remove_file(path);
        Lookup::Rejected(reason)
    }

    /// Removes the least recently used entries until the folder holds at
    /// most `max_bytes`.
    fn trim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == EXTENSION))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::info!(entry = %path.display(), "compile cache full: removed its oldest entry");
                total -= len;
            }
        }
    }
}

/// Whether the entry at `path` ends with the marker and the SHA-256 of
/// what comes before them. Read in small pieces: the whole entry (tens of
/// MiB for a plugin embedding an interpreter) is never in memory at once,
/// so checking it leaves no large allocation behind.
fn checksum_holds(path: &Path) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    let Some(body) = file.metadata()?.len().checked_sub(TRAILER as u64) else {
        return Ok(false);
    };
    let mut hasher = Sha256::new();
    std::io::copy(&mut (&mut file).take(body), &mut hasher)?;
    let mut trailer = [0; TRAILER];
    file.read_exact(&mut trailer)?;
    let (sum, marker) = trailer.split_at(32);
    Ok(marker == MARKER && hasher.finalize().as_slice() == sum)
}

/// A hex fingerprint of what makes compiled code fit an engine: wasmtime's
/// own compatibility hash (its version and code-shaping settings), hashed
/// with a stable hasher.
fn engine_fingerprint(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            unreachable!("only `write` is used; the digest is read whole")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    hasher.write(MARKER);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Refuses a folder that someone other than this user could write to.
#[cfg(unix)]
fn check_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the compile cache `{}`", dir.display()))?;
    if !meta.is_dir() {
        bail!("the compile cache `{}` is not a folder", dir.display());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "the compile cache `{}` belongs to user {}, not to this host's user {me}: \
             it would load native code someone else can write",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "the compile cache `{}` is writable by its group or others (mode {:o}): \
             it would load native code someone else can write; `chmod 700` it",
            dir.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = "(component (core module (func (export \"f\"))))";

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    fn compiled(engine: &Engine) -> Component {
        Component::new(engine, wat::parse_str(WAT).unwrap()).unwrap()
    }

    #[test]
    fn an_entry_round_trips_and_a_missing_one_misses() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompileCache::open(&dir.path().join("c"), &engine, u64::MAX).unwrap();
        assert!(matches!(cache.load(&engine, "ab"), Lookup::Miss));
        cache.store(&compiled(&engine), "ab").unwrap();
        assert!(matches!(cache.load(&engine, "ab"), Lookup::Hit(_)));
        assert!(matches!(cache.load(&engine, "cd"), Lookup::Miss));
    }

    #[test]
    fn a_corrupt_or_cut_entry_is_rejected_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompileCache::open(dir.path(), &engine, u64::MAX).unwrap();
        cache.store(&compiled(&engine), "ab").unwrap();
        let path = cache.entry_path("ab");
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let Lookup::Rejected(reason) = cache.load(&engine, "ab") else {
            panic!("a flipped bit was trusted");
        };
        assert_eq!(reason, "its checksum does not match its contents");
        assert!(!path.exists());

        cache.store(&compiled(&engine), "ab").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(cache.load(&engine, "ab"), Lookup::Rejected(_)));
    }

    #[test]
    fn an_entry_of_another_engine_is_refused_by_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let cache = CompileCache::open(dir.path(), &engine, u64::MAX).unwrap();
        // Code compiled with other settings, stored under this engine's key
        // (as if the key had collided): wasmtime refuses it.
        let mut other = wasmtime::Config::new();
        other.wasm_component_model(true).epoch_interruption(true);
        let other = Engine::new(&other).unwrap();
        assert_ne!(engine_fingerprint(&other), cache.engine);
        cache.store(&compiled(&other), "ab").unwrap();
        let Lookup::Rejected(reason) = cache.load(&engine, "ab") else {
            panic!("code of another engine was trusted");
        };
        assert!(reason.starts_with("the engine refused it: "), "{reason}");
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = CompileCache::open(dir.path(), &engine(), u64::MAX).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "the compile cache `{}` is writable by its group or others (mode 777): \
                 it would load native code someone else can write; `chmod 700` it",
                dir.path().display()
            )
        );
        let fresh = dir.path().join("new");
        CompileCache::open(&fresh, &engine(), u64::MAX).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn the_oldest_entries_go_when_the_folder_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine();
        let component = compiled(&engine);
        let one = {
            let probe = CompileCache::open(&dir.path().join("probe"), &engine, u64::MAX).unwrap();
            probe.store(&component, "x").unwrap();
            std::fs::metadata(probe.entry_path("x")).unwrap().len()
        };
        let cache = CompileCache::open(&dir.path().join("c"), &engine, 2 * one).unwrap();
        for key in ["a", "b"] {
            cache.store(&component, key).unwrap();
        }
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        let a = std::fs::File::options()
            .append(true)
            .open(cache.entry_path("a"))
            .unwrap();
        a.set_modified(old).unwrap();
        // A hit on `a` makes it the most recently used; `b` goes.
        assert!(matches!(cache.load(&engine, "a"), Lookup::Hit(_)));
        cache.store(&component, "c").unwrap();
        assert!(cache.entry_path("a").exists());
        assert!(!cache.entry_path("b").exists());
        assert!(cache.entry_path("c").exists());
    }
}
