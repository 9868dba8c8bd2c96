//! Blob bytes: where a blob's content lives, apart from its database row.
//!
//! Two places, chosen by `[blobs] store`:
//! - [`local`]: a directory per tenant under `<data>/blobs` (the default, for
//!   one node, or nodes sharing one directory);
//! - [`objects`]: an S3-compatible bucket (for clusters).
//!
//! Either way, a guest's blob names never reach a path or a key: bytes are
//! stored under an id the host chooses (a UUID), and the row in `blobs` maps
//! the name to it. A blob exists when its row commits, not before: staged
//! bytes that never get a row are deleted, and what a crash leaves is found
//! by its age and deleted too ([`Files::repair`]).

mod http;
mod local;
mod objects;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use local::TenantDir;
pub use objects::BucketError;

use crate::config::{BlobStoreKind, BlobsConfig};

/// A blob's bytes as a stream of chunks.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Where every tenant's blob bytes live.
pub struct Files {
    place: Place,
    orphan_grace: Duration,
    sweep_interval: Duration,
}

enum Place {
    /// Directories on this machine.
    Local(local::Dirs),
    /// An S3-compatible bucket.
    Objects(Arc<objects::Bucket>),
}

/// A new blob id: time-ordered, unique, safe as a file name and a key.
fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Files {
    /// The blob storage `config` names; local directories live under
    /// `blobs_dir`.
    pub fn open(
        config: &BlobsConfig,
        blobs_dir: &std::path::Path,
    ) -> Result<Self, super::StoreError> {
        let place = match config.store {
            BlobStoreKind::Local => Place::Local(local::Dirs::new(blobs_dir)),
            BlobStoreKind::S3 => Place::Objects(Arc::new(objects::Bucket::open(config)?)),
        };
        Ok(Self {
            place,
            orphan_grace: Duration::from_secs(config.orphan_grace_secs),
            sweep_interval: Duration::from_secs(config.sweep_interval_secs.max(1)),
        })
    }

    /// How old unreferenced bytes must be before a repair on shared
    /// storage deletes them.
    pub fn orphan_grace(&self) -> Duration {
        self.orphan_grace
    }

    /// How often a node sweeps a bucket.
    pub fn sweep_interval(&self) -> Duration {
        self.sweep_interval
    }

    /// Whether bytes live in a store every node shares by nature (a bucket),
    /// rather than a directory that may or may not be shared.
    pub fn is_bucket(&self) -> bool {
        matches!(self.place, Place::Objects(_))
    }

    /// Writes `data` as a new staged blob of `tenant`, durably.
    pub async fn stage_bytes(
        &self,
        tenant: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> io::Result<StagedFile> {
        match &self.place {
            Place::Local(dirs) => {
                let dir = dirs.tenant(tenant)?;
                let content_type = content_type.to_owned();
                tokio::task::spawn_blocking(move || dir.stage_bytes(&content_type, &data))
                    .await
                    .map_err(io::Error::other)?
            }
            Place::Objects(bucket) => bucket.stage_bytes(tenant, content_type, data).await,
        }
    }

    /// Starts a staged blob of `tenant` written in chunks, for a streamed upload.
    pub fn stage_stream(&self, tenant: &str, content_type: &str) -> io::Result<StagedWriter> {
        Ok(StagedWriter(match &self.place {
            Place::Local(dirs) => Writer::Local(dirs.tenant(tenant)?.stage_stream(content_type)?),
            Place::Objects(bucket) => Writer::Object(bucket.stage_stream(tenant, content_type)?),
        }))
    }

    /// Opens `tenant`'s committed blob `id` for reading. `NotFound` when it
    /// is gone (a commit replaced it since its row was read).
    pub async fn read_from(&self, tenant: &str, id: &str) -> io::Result<BlobSource> {
        match &self.place {
            Place::Local(dirs) => {
                let dir = dirs.tenant(tenant)?;
                let id = id.to_owned();
                tokio::task::spawn_blocking(move || dir.open_object(&id).map(BlobSource::File))
                    .await
                    .map_err(io::Error::other)?
            }
            // Replaced objects are deleted only after a delay, so a row
            // just read names an object that is there: no request now.
            Place::Objects(bucket) => Ok(BlobSource::Object(
                bucket.clone(),
                bucket.object(tenant, id),
            )),
        }
    }

    /// Deletes committed blobs nobody refers to any more, in the background:
    /// a reader that already opened one can finish reading it.
    pub fn remove_later(&self, ids: Vec<(Arc<str>, String)>) {
        if ids.is_empty() {
            return;
        }
        match &self.place {
            Place::Local(dirs) => dirs.remove_later(ids),
            Place::Objects(bucket) => bucket.remove_later(ids),
        }
    }

    /// Forgets any handle on `tenant`'s storage, which another node deleted.
    pub fn forget(&self, tenant: &str) {
        if let Place::Local(dirs) = &self.place {
            dirs.forget(tenant);
        }
    }

    /// Deletes every blob of `tenant`.
    pub async fn remove_tenant(&self, tenant: &str) -> io::Result<()> {
        if !crate::config::names::is_valid_name(tenant) {
            return Ok(());
        }
        match &self.place {
            Place::Local(dirs) => {
                let dirs = dirs.clone();
                let tenant = tenant.to_owned();
                tokio::task::spawn_blocking(move || dirs.remove_tenant(&tenant))
                    .await
                    .map_err(io::Error::other)?
            }
            Place::Objects(bucket) => bucket.remove_tenant(tenant).await,
        }
    }

    /// Brings stored bytes back in step with `referenced`, the (tenant →
    /// ids) the rows name: deletes staged and committed bytes no row names,
    /// and reports the ids named but missing. With `settled`, only bytes
    /// last written before it are deleted: newer ones may belong to an
    /// invocation still running or committing on another node.
    ///
    /// `referenced` is called after the stored bytes were listed, so that a
    /// row committed meanwhile is seen.
    pub async fn repair<F, Fut, E>(
        &self,
        referenced: F,
        settled: Option<SystemTime>,
    ) -> Result<Repair, RepairError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<HashMap<String, HashSet<String>>, E>>,
    {
        match &self.place {
            Place::Local(dirs) => {
                let referenced = referenced().await.map_err(RepairError::Rows)?;
                let dirs = dirs.clone();
                tokio::task::spawn_blocking(move || dirs.repair(&referenced, settled))
                    .await
                    .map_err(|e| RepairError::Bytes(io::Error::other(e)))?
                    .map_err(RepairError::Bytes)
            }
            Place::Objects(bucket) => bucket.repair(referenced, settled).await,
        }
    }
}

/// Why a repair stopped.
#[derive(Debug)]
pub enum RepairError<E> {
    /// Reading the rows failed.
    Rows(E),
    /// Listing or deleting stored bytes failed.
    Bytes(io::Error),
}

/// What a repair found.
#[derive(Debug, Default)]
pub struct Repair {
    /// Staged bytes of invocations that never committed.
    pub staged_removed: usize,
    /// Committed bytes no row refers to.
    pub orphans_removed: usize,
    /// (tenant, id) rows whose bytes are gone.
    pub missing: Vec<(String, String)>,
}

/// Where a staged blob's bytes are.
#[derive(Clone)]
enum Home {
    Dir(Arc<TenantDir>),
    Object(Arc<objects::Bucket>, Arc<str>),
}

/// A staged blob: its bytes are written, and deleted when it is dropped,
/// unless its commit kept them.
pub struct StagedFile {
    home: Home,
    id: String,
    kept: AtomicBool,
    /// Its length.
    pub size: u64,
    /// Hex SHA-256 of its content.
    pub etag: String,
    /// The media type it was staged with.
    pub content_type: String,
}

impl std::fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedFile")
            .field("tenant", &self.tenant())
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl StagedFile {
    fn new(home: Home, id: String, content_type: &str) -> Self {
        Self {
            home,
            id,
            kept: AtomicBool::new(false),
            size: 0,
            etag: String::new(),
            content_type: content_type.to_owned(),
        }
    }

    /// The id its row will name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant it belongs to.
    pub fn tenant(&self) -> &str {
        match &self.home {
            Home::Dir(dir) => dir.tenant(),
            Home::Object(_, tenant) => tenant,
        }
    }

    /// Makes it readable under its id, before the commit of its row. A
    /// directory renames it into `objects/`; a bucket has it there already.
    /// Blocking.
    pub fn publish(&self) -> io::Result<()> {
        match &self.home {
            Home::Dir(dir) => dir.publish(&self.id),
            Home::Object(..) => Ok(()),
        }
    }

    /// Undoes [`StagedFile::publish`], when its batch fails before the
    /// commit. Blocking.
    pub fn unpublish(&self) {
        if let Home::Dir(dir) = &self.home {
            dir.unpublish(&self.id);
        }
    }

    /// Flushes the publishing of `staged` to disk. Blocking.
    pub fn sync_published(staged: &[Arc<StagedFile>]) -> io::Result<()> {
        let mut synced: Vec<&str> = Vec::new();
        for file in staged {
            if let Home::Dir(dir) = &file.home
                && !synced.contains(&dir.tenant())
            {
                dir.sync_objects()?;
                synced.push(dir.tenant());
            }
        }
        Ok(())
    }

    /// Its row committed: the bytes are the blob now, and stay.
    pub fn keep(&self) {
        self.kept.store(true, Ordering::Relaxed);
    }

    /// The commit that published it failed. A directory deletes the
    /// published file at once (start-up repair would otherwise find it only
    /// at the next start); in a bucket the object stays for the sweeper,
    /// which deletes it only if no row names it: a failed `COMMIT` may have
    /// committed.
    pub fn commit_failed(&self, files: &Files) {
        match &self.home {
            Home::Dir(dir) => {
                if let Place::Local(dirs) = &files.place {
                    dirs.remove_later(vec![(dir.tenant().into(), self.id.clone())]);
                }
            }
            Home::Object(..) => self.keep(),
        }
    }

    /// Opens it for reading: a function reading back what it staged.
    pub async fn source(&self) -> io::Result<BlobSource> {
        match &self.home {
            Home::Dir(dir) => {
                let dir = dir.clone();
                let id = self.id.clone();
                tokio::task::spawn_blocking(move || dir.open_staged(&id).map(BlobSource::File))
                    .await
                    .map_err(io::Error::other)?
            }
            Home::Object(bucket, tenant) => Ok(BlobSource::Object(
                bucket.clone(),
                bucket.object(tenant, &self.id),
            )),
        }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.kept.load(Ordering::Relaxed) {
            return;
        }
        match &self.home {
            Home::Dir(dir) => dir.remove_staged(&self.id),
            Home::Object(bucket, tenant) => bucket.remove_staged(tenant, &self.id),
        }
    }
}

/// A staged blob being written from a request body.
pub struct StagedWriter(Writer);

enum Writer {
    Local(local::StagedWriter),
    Object(objects::StagedWriter),
}

impl StagedWriter {
    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        match &mut self.0 {
            Writer::Local(w) => w.write(&chunk).await,
            Writer::Object(w) => w.write(chunk).await,
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        match &self.0 {
            Writer::Local(w) => w.size(),
            Writer::Object(w) => w.size(),
        }
    }

    /// Makes the bytes durable and returns them, staged.
    pub async fn finish(self) -> io::Result<StagedFile> {
        match self.0 {
            Writer::Local(w) => w.finish().await,
            Writer::Object(w) => w.finish().await,
        }
    }
}

/// A committed (or staged) blob's bytes, ready to read.
pub enum BlobSource {
    /// An open file: it stays readable if a commit deletes it meanwhile.
    File(std::fs::File),
    /// An object in a bucket.
    Object(Arc<objects::Bucket>, object_store::path::Path),
}

impl BlobSource {
    /// Reads `length` bytes at `offset` (fewer at the end).
    pub async fn read(self, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        match self {
            Self::File(file) => tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                let mut file = file;
                file.seek(SeekFrom::Start(offset))?;
                let mut bytes = Vec::with_capacity(usize::try_from(length).unwrap_or(0));
                file.take(length).read_to_end(&mut bytes)?;
                Ok(bytes)
            })
            .await
            .map_err(io::Error::other)?,
            Self::Object(bucket, path) => bucket.read(&path, offset, length).await,
        }
    }

    /// Streams `length` bytes from `offset`, in chunks of about `chunk` bytes.
    pub async fn stream(self, offset: u64, length: u64, chunk: usize) -> io::Result<ByteStream> {
        use futures_util::StreamExt;
        match self {
            Self::File(file) => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut file = tokio::fs::File::from_std(file);
                if offset > 0 {
                    file.seek(io::SeekFrom::Start(offset)).await?;
                }
                let reader = file.take(length);
                Ok(tokio_util::io::ReaderStream::with_capacity(reader, chunk).boxed())
            }
            Self::Object(bucket, path) => bucket.stream(&path, offset, length).await,
        }
    }
}
