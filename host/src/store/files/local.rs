//! Blob files in directories: each tenant's under `<data>/blobs/<tenant>/`,
//! opened as a cap-std [`Dir`] so that every path the host builds resolves
//! inside it and no symlink planted in the tree leads out.
//!
//! Staged content goes to `tmp/<id>`; the committer renames it to
//! `objects/<id>` in the batch that commits its row. A file in `objects/`
//! without a row (a crash between the rename and the commit) is never
//! served, and start-up repair deletes it.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Home, Repair, StagedFile, new_id};

const TMP: &str = "tmp";
const OBJECTS: &str = "objects";

/// The blob directories of every tenant.
#[derive(Clone)]
pub struct Dirs {
    root: PathBuf,
    tenants: Arc<RwLock<HashMap<Arc<str>, Arc<TenantDir>>>>,
}

/// One tenant's blob directory.
pub struct TenantDir {
    tenant: Arc<str>,
    dir: Dir,
}

fn tmp_path(id: &str) -> String {
    format!("{TMP}/{id}")
}

fn object_path(id: &str) -> String {
    format!("{OBJECTS}/{id}")
}

impl Dirs {
    /// The blob directories under `root`, created on first use.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            tenants: Arc::default(),
        }
    }

    /// `tenant`'s directory, opened (and created) on first use. Tenant names
    /// are lower-case letters, digits and `-`, so they are safe as a path.
    pub fn tenant(&self, tenant: &str) -> io::Result<Arc<TenantDir>> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = tenants.get(tenant) {
            return Ok(dir.clone());
        }
        drop(tenants);
        if !crate::config::names::is_valid_name(tenant) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{tenant:?} is not a tenant name"),
            ));
        }
        let path = self.root.join(tenant);
        std::fs::create_dir_all(&path)?;
        let dir = Dir::open_ambient_dir(&path, ambient_authority())?;
        dir.create_dir_all(TMP)?;
        dir.create_dir_all(OBJECTS)?;
        let opened = Arc::new(TenantDir {
            tenant: tenant.into(),
            dir,
        });
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        Ok(tenants.entry(tenant.into()).or_insert(opened).clone())
    }

    /// Drops the open handle on `tenant`'s directory, which another node
    /// deleted: the next use opens (or creates) it afresh.
    pub fn forget(&self, tenant: &str) {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        tenants.remove(tenant);
    }

    /// Deletes `tenant`'s directory and everything in it. Blocking.
    pub fn remove_tenant(&self, tenant: &str) -> io::Result<()> {
        self.forget(tenant);
        match std::fs::remove_dir_all(self.root.join(tenant)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Start-up repair of every tenant directory, given the files the
    /// database refers to: deletes every staged file (no invocation is
    /// running) and every committed file without a row. Returns the
    /// referenced files that are missing, whose rows must go.
    ///
    /// With `settled`, only files last changed before it are touched: on a
    /// directory other nodes share, newer ones may belong to invocations
    /// still running or committing there.
    pub fn repair(
        &self,
        referenced: &HashMap<String, HashSet<String>>,
        settled: Option<std::time::SystemTime>,
    ) -> io::Result<Repair> {
        let old = |meta: io::Result<cap_std::fs::Metadata>| match (settled, meta) {
            (None, _) => true,
            (Some(cutoff), Ok(m)) => m.modified().is_ok_and(|t| t.into_std() < cutoff),
            (Some(_), Err(_)) => false,
        };
        let mut report = Repair::default();
        let mut tenants: HashSet<String> = referenced.keys().cloned().collect();
        if self.root.is_dir() {
            for entry in std::fs::read_dir(&self.root)? {
                let name = entry?.file_name();
                if let Some(name) = name.to_str() {
                    tenants.insert(name.to_owned());
                }
            }
        }
        let none = HashSet::new();
        for tenant in tenants {
            if !crate::config::names::is_valid_name(&tenant) {
                continue;
            }
            let wanted = referenced.get(&tenant).unwrap_or(&none);
            let dir = self.tenant(&tenant)?;
            for entry in dir.dir.read_dir(TMP)? {
                let entry = entry?;
                if !old(entry.metadata()) {
                    continue;
                }
                dir.dir
                    .remove_file(Path::new(TMP).join(entry.file_name()))?;
                report.staged_removed += 1;
            }
            let mut present = HashSet::new();
            for entry in dir.dir.read_dir(OBJECTS)? {
                let entry = entry?;
                let name = entry.file_name();
                match name.to_str() {
                    Some(id) if wanted.contains(id) => {
                        present.insert(id.to_owned());
                    }
                    _ if !old(entry.metadata()) => {}
                    _ => {
                        dir.dir.remove_file(Path::new(OBJECTS).join(&name))?;
                        report.orphans_removed += 1;
                    }
                }
            }
            for id in wanted.difference(&present) {
                report.missing.push((tenant.clone(), id.clone()));
            }
        }
        Ok(report)
    }

    /// Deletes committed files of several tenants, off the async threads.
    pub fn remove_later(&self, ids: Vec<(Arc<str>, String)>) {
        let dirs = self.clone();
        let remove = move || {
            for (tenant, id) in ids {
                match dirs.tenant(&tenant) {
                    Ok(dir) => dir.remove_objects(std::slice::from_ref(&id)),
                    Err(e) => tracing::warn!(%tenant, error = %e, "blob directory unavailable"),
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

impl TenantDir {
    /// The tenant it belongs to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Opens the committed file `id` for reading.
    pub fn open_object(&self, id: &str) -> io::Result<std::fs::File> {
        Ok(self.dir.open(object_path(id))?.into_std())
    }

    /// Deletes committed files, ignoring those already gone.
    pub fn remove_objects(&self, ids: &[String]) {
        for id in ids {
            match self.dir.remove_file(object_path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(tenant = %self.tenant, file = %id, error = %e,
                    "could not delete a blob file; start-up repair will"),
            }
        }
    }

    /// Opens the staged file `id` for reading.
    pub fn open_staged(&self, id: &str) -> io::Result<std::fs::File> {
        Ok(self.dir.open(tmp_path(id))?.into_std())
    }

    /// Makes the staged file `id` visible as the committed file `id`. Blocking.
    pub fn publish(&self, id: &str) -> io::Result<()> {
        self.dir.rename(tmp_path(id), &self.dir, object_path(id))
    }

    /// Moves the published file `id` back to staging, or deletes it.
    pub fn unpublish(&self, id: &str) {
        if self
            .dir
            .rename(object_path(id), &self.dir, tmp_path(id))
            .is_err()
        {
            self.remove_objects(&[id.to_owned()]);
        }
    }

    /// Deletes the staged file `id`, if it is still staged.
    pub fn remove_staged(&self, id: &str) {
        match self.dir.remove_file(tmp_path(id)) {
            Ok(()) => {}
            // Renamed into objects/ by its commit.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(tenant = %self.tenant, error = %e,
                "could not delete a staged blob; start-up repair will"),
        }
    }

    /// Flushes the renames into `objects/` to disk. Blocking.
    pub fn sync_objects(&self) -> io::Result<()> {
        // A plain read-only open: the handle `open_dir` gives may not be
        // one fsync accepts.
        self.dir.open(OBJECTS)?.sync_all()
    }

    /// Writes `data` to a new staged file and syncs it. Blocking.
    pub fn stage_bytes(
        self: &Arc<Self>,
        content_type: &str,
        data: &[u8],
    ) -> io::Result<StagedFile> {
        let mut staged = StagedFile::new(Home::Dir(self.clone()), new_id(), content_type);
        let mut file = self.dir.open_with(
            tmp_path(&staged.id),
            OpenOptions::new().write(true).create_new(true),
        )?;
        file.write_all(data)?;
        file.sync_all()?;
        staged.size = data.len() as u64;
        staged.etag = format!("{:x}", Sha256::digest(data));
        Ok(staged)
    }

    /// Starts a staged file written in chunks, for a streamed upload.
    pub fn stage_stream(self: &Arc<Self>, content_type: &str) -> io::Result<StagedWriter> {
        let guard = StagedFile::new(Home::Dir(self.clone()), new_id(), content_type);
        let file = self.dir.open_with(
            tmp_path(&guard.id),
            OpenOptions::new().write(true).create_new(true),
        )?;
        Ok(StagedWriter {
            // Request bodies arrive in frames of a few kilobytes; each
            // write to a tokio file is a trip to the blocking pool.
            file: tokio::io::BufWriter::with_capacity(
                256 * 1024,
                tokio::fs::File::from_std(file.into_std()),
            ),
            hasher: Sha256::new(),
            staged: guard,
        })
    }
}

/// A staged file being written from a request body.
pub struct StagedWriter {
    file: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    staged: StagedFile,
}

impl StagedWriter {
    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: &Bytes) -> io::Result<()> {
        self.hasher.update(chunk);
        self.staged.size += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.staged.size
    }

    /// Syncs the file and returns it, staged.
    pub async fn finish(mut self) -> io::Result<StagedFile> {
        self.file.flush().await?;
        self.file.get_ref().sync_all().await?;
        self.staged.etag = format!("{:x}", self.hasher.finalize());
        Ok(self.staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_files_vanish_unless_published() {
        let root = tempfile::tempdir().expect("tempdir");
        let files = Dirs::new(root.path());
        let dir = files.tenant("acme").expect("dir");
        let staged = dir.stage_bytes("text/plain", b"hello").expect("stage");
        assert_eq!(staged.size, 5);
        let kept = dir.stage_bytes("text/plain", b"kept").expect("stage");
        kept.publish().expect("publish");
        kept.keep();
        dir.sync_objects().expect("sync");
        let id = kept.id().to_owned();
        drop((staged, kept));
        let tmp = std::fs::read_dir(root.path().join("acme/tmp"))
            .expect("tmp")
            .count();
        assert_eq!(tmp, 0);
        let kept = std::fs::read(root.path().join("acme/objects").join(id)).expect("object");
        assert_eq!(kept, b"kept");
    }

    #[test]
    fn repair_removes_orphans_and_reports_missing_files() {
        let root = tempfile::tempdir().expect("tempdir");
        let files = Dirs::new(root.path());
        let dir = files.tenant("acme").expect("dir");
        let a = dir.stage_bytes("text/plain", b"a").expect("stage");
        a.publish().expect("publish");
        a.keep();
        let b = dir.stage_bytes("text/plain", b"b").expect("stage");
        b.publish().expect("publish");
        b.keep();
        std::mem::forget(dir.stage_bytes("text/plain", b"c").expect("stage"));
        let referenced = HashMap::from([(
            "acme".to_owned(),
            HashSet::from([a.id().to_owned(), "gone".to_owned()]),
        )]);
        let report = files.repair(&referenced, None).expect("repair");
        assert_eq!((report.staged_removed, report.orphans_removed), (1, 1));
        assert_eq!(report.missing, vec![("acme".to_owned(), "gone".to_owned())]);
        assert!(root.path().join("acme/objects").join(a.id()).is_file());
        assert!(!root.path().join("acme/objects").join(b.id()).exists());
    }

    #[test]
    fn a_symlink_out_of_the_tree_is_not_followed() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), b"secret").expect("write");
        let files = Dirs::new(root.path());
        let dir = files.tenant("acme").expect("dir");
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            root.path().join("acme/objects/planted"),
        )
        .expect("symlink");
        assert!(dir.open_object("planted").is_err());
    }
}
