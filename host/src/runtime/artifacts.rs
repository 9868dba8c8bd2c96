//! Compiled components cached on disk, so a restart deserializes instead of
//! compiling. Artifacts live under `<cache>/<engine>/<sha256>.cwasm`: the
//! engine part is a digest of the engine's compatibility hash (wasmtime
//! version, target, settings), so a new build or a changed setting starts a
//! new directory and recompiles, and the component part is the SHA-256 of
//! the component's bytes.

use std::hash::{Hash, Hasher};
use std::io::Write;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The artifact directory of one engine configuration.
pub struct Artifacts {
    dir: Dir,
}

/// Feeds `Hash` into SHA-256, so the digest does not depend on std's hasher.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Artifacts {
    /// Opens (creating it) the directory for `engine` under `root`.
    pub fn open(root: &std::path::Path, engine: &Engine) -> std::io::Result<Self> {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_dir = hex(&hasher.0.finalize()[..8]);
        std::fs::create_dir_all(root)?;
        let root = Dir::open_ambient_dir(root, ambient_authority())?;
        root.create_dir_all(&engine_dir)?;
        Ok(Self {
            dir: root.open_dir(&engine_dir)?,
        })
    }

    /// The cached compilation of the component whose bytes hash to `sha`, if any.
    pub fn get(&self, engine: &Engine, sha: &str) -> Option<Component> {
        let name = format!("{sha}.cwasm");
        let bytes = self.dir.read(&name).ok()?;
        match deserialize(engine, &bytes) {
            Ok(component) => Some(component),
            Err(e) => {
                // Truncated or from another engine: compile again.
                tracing::warn!(artifact = %name, error = %format!("{e:#}"), "unusable compiled artifact; recompiling");
                let _ = self.dir.remove_file(&name);
                None
            }
        }
    }

    /// Stores `component`'s compilation under `sha`. Written to a temporary
    /// file and renamed, so a reader never sees half an artifact.
    pub fn put(&self, sha: &str, component: &Component) -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        write_whole(&self.dir, &format!("{sha}.cwasm"), &bytes)
    }

    /// Loads the compilation the host's compiling child produced and stores
    /// it under `sha`; an error says why it cannot be used.
    pub fn put_compiled(
        &self,
        engine: &Engine,
        sha: &str,
        bytes: &[u8],
    ) -> Result<Component, String> {
        let component = deserialize(engine, bytes)
            .map_err(|e| format!("the compiled artifact does not load in this host: {e:#}"))?;
        if let Err(e) = write_whole(&self.dir, &format!("{sha}.cwasm"), bytes) {
            tracing::warn!(%sha, error = %e, "could not cache the compiled component");
        }
        Ok(component)
    }
}

/// Writes `bytes` as `name` in `dir`: to a temporary file, synced, then
/// renamed, so a reader or a crash never sees half a file under `name`.
pub fn write_whole(dir: &Dir, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temp = format!("{name}.{}.tmp", uuid::Uuid::now_v7());
    let mut file = dir.open_with(&temp, OpenOptions::new().write(true).create_new(true))?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    match written.and_then(|()| dir.rename(&temp, dir, name)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = dir.remove_file(&temp);
            Err(e)
        }
    }
}

/// Loads an artifact this host or its compiling child wrote.
#[allow(
    unsafe_code,
    reason = "wasmtime trusts serialized code; artifacts come only from `Artifacts::put` in the host's own data directory or from the host's own compiling child, and wasmtime checks the engine compatibility header before use"
)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: see the attribute's reason; the data directory is as trusted as the database.
    unsafe { Component::deserialize(engine, bytes) }
}
