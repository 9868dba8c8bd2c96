//! Component files, content-addressed: `<sha256>.wasm` in one directory of
//! the node's data directory, reached only through its cap-std handle.

use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::runtime::write_whole;

/// Component files, content-addressed: `<sha256>.wasm` in one directory,
/// reached only through its handle.
pub struct Components {
    dir: Dir,
}

impl Components {
    /// Opens (creating it) the component directory `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Ok(Self {
            dir: Dir::open_ambient_dir(path, ambient_authority())?,
        })
    }

    /// Stores `bytes` as `sha`; a crash never leaves half a component under its name.
    pub fn put(&self, sha: &str, bytes: &[u8]) -> std::io::Result<()> {
        let name = format!("{sha}.wasm");
        if self.dir.exists(&name) {
            return Ok(());
        }
        write_whole(&self.dir, &name, bytes)
    }

    pub fn has(&self, sha: &str) -> bool {
        self.dir.exists(format!("{sha}.wasm"))
    }

    pub fn read(&self, sha: &str) -> std::io::Result<Vec<u8>> {
        self.dir.read(format!("{sha}.wasm"))
    }

    pub fn remove(&self, sha: &str) {
        if let Err(e) = self.dir.remove_file(format!("{sha}.wasm")) {
            tracing::warn!(component = %sha, error = %e, "could not remove an unused component");
        }
    }
}
