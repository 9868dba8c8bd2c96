//! Blob bytes in an S3-compatible bucket, for clusters.
//!
//! A blob's bytes are the object `<prefix>/<tenant>/objects/<id>`, written
//! once under a new id and never overwritten: replacing a blob is a new
//! object and a new row, so no reader sees a mix of old and new bytes. An
//! object store has no atomic rename and needs none here: a staged blob is
//! uploaded straight to its final key, and becomes the blob when its row
//! commits. Until then nothing names it; if its invocation does not commit,
//! it is deleted, and what a crash leaves behind is swept by age
//! ([`Bucket::repair`]). Objects a commit replaced are deleted after
//! `delete_delay_secs`, so that downloads which read the old row can finish.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{ByteStream, Home, Repair, RepairError, StagedFile, new_id};
use crate::config::BlobsConfig;

const OBJECTS: &str = "objects";

/// Why the bucket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// `store = "s3"` without a bucket.
    #[error("[blobs] store = \"s3\" needs `bucket`")]
    NoBucket,
    /// The prefix is not a valid object path.
    #[error("[blobs] prefix {0:?} is not a valid key prefix")]
    Prefix(String),
    /// The credentials file could not be used.
    #[error("S3 credentials file {path}: {message}")]
    Credentials {
        /// The file.
        path: String,
        /// What is wrong (never its content).
        message: String,
    },
    /// The client could not be built from the settings.
    #[error("S3 client: {0}")]
    Client(String),
}

/// An S3-compatible bucket holding every tenant's blobs.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    part_size: usize,
    delete_delay: Duration,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

/// Maps the client's errors to I/O errors, keeping "not found" as such.
fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

impl Bucket {
    /// The bucket `config` names. Credentials come from `credentials_file`
    /// when set, otherwise from the usual `AWS_*` environment variables (or
    /// the instance's role); the endpoint and region from the config first.
    pub fn open(config: &BlobsConfig) -> Result<Self, BucketError> {
        let bucket = config.bucket.as_deref().ok_or(BucketError::NoBucket)?;
        // A client waits for a blob request: a store that is down must
        // fail it in seconds (503), not after the crate's 3-minute default.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
            ..object_store::RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_http_connector(super::http::Connector);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(path) = &config.credentials_file {
            let keys = read_credentials(path, &config.profile)?;
            builder = builder
                .with_access_key_id(keys.access_key_id)
                .with_secret_access_key(keys.secret_access_key);
            if let Some(token) = keys.session_token {
                builder = builder.with_token(token);
            }
        }
        let store = builder
            .build()
            .map_err(|e| BucketError::Client(e.to_string()))?;
        let prefix =
            Path::parse(&config.prefix).map_err(|_| BucketError::Prefix(config.prefix.clone()))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| BucketError::Client(format!("no async runtime: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            // S3 refuses parts under 5 MiB, but the last.
            part_size: config.part_size_bytes.max(5 * 1024 * 1024),
            delete_delay: Duration::from_secs(config.delete_delay_secs),
            runtime,
        })
    }

    fn tenant_prefix(&self, tenant: &str) -> Path {
        self.prefix.clone().join(tenant)
    }

    /// The key of `tenant`'s blob `id`.
    pub fn object(&self, tenant: &str, id: &str) -> Path {
        self.tenant_prefix(tenant).join(OBJECTS).join(id)
    }

    /// Uploads `data` as a new staged blob of `tenant`.
    pub async fn stage_bytes(
        self: &Arc<Self>,
        tenant: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> io::Result<StagedFile> {
        let mut staged = StagedFile::new(
            Home::Object(self.clone(), tenant.into()),
            new_id(),
            content_type,
        );
        staged.size = data.len() as u64;
        staged.etag = format!("{:x}", Sha256::digest(&data));
        let path = self.object(tenant, &staged.id);
        if let Err(e) = self.store.put(&path, PutPayload::from(data)).await {
            // A failed PUT leaves no object: nothing to delete.
            staged.keep();
            return Err(io_error(e));
        }
        Ok(staged)
    }

    /// Starts a staged blob of `tenant` uploaded as it arrives: one `PUT`
    /// when it stays under the part size, a multipart upload otherwise, so
    /// at most a few parts are ever in memory.
    pub fn stage_stream(
        self: &Arc<Self>,
        tenant: &str,
        content_type: &str,
    ) -> io::Result<StagedWriter> {
        let id = new_id();
        let writer =
            BufWriter::with_capacity(self.store.clone(), self.object(tenant, &id), self.part_size)
                .with_max_concurrency(2);
        Ok(StagedWriter {
            writer: Some(writer),
            hasher: Sha256::new(),
            size: 0,
            staged: Some(StagedFile::new(
                Home::Object(self.clone(), tenant.into()),
                id,
                content_type,
            )),
            runtime: self.runtime.clone(),
        })
    }

    /// Reads `length` bytes of the object at `offset` (fewer at its end).
    pub async fn read(&self, path: &Path, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let got = self.get(path, offset, length).await?;
        Ok(got.bytes().await.map_err(io_error)?.to_vec())
    }

    /// Streams `length` bytes of the object from `offset`.
    pub async fn stream(&self, path: &Path, offset: u64, length: u64) -> io::Result<ByteStream> {
        if length == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let got = self.get(path, offset, length).await?;
        Ok(got.into_stream().map_err(io_error).boxed())
    }

    async fn get(
        &self,
        path: &Path,
        offset: u64,
        length: u64,
    ) -> io::Result<object_store::GetResult> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset.saturating_add(length))),
            ..GetOptions::default()
        };
        self.store.get_opts(path, options).await.map_err(io_error)
    }

    /// Deletes the staged object `id`, in the background.
    pub fn remove_staged(self: &Arc<Self>, tenant: &str, id: &str) {
        let path = self.object(tenant, id);
        let store = self.store.clone();
        self.runtime.spawn(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(object = %path, error = %e,
                    "could not delete a staged blob; the sweeper will"),
            }
        });
    }

    /// Deletes replaced objects once `delete_delay` has passed. A node that
    /// stops first leaves them to the sweeper.
    pub fn remove_later(self: &Arc<Self>, ids: Vec<(Arc<str>, String)>) {
        let paths: Vec<Path> = ids
            .iter()
            .map(|(tenant, id)| self.object(tenant, id))
            .collect();
        let (store, delay) = (self.store.clone(), self.delete_delay);
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = delete_all(&*store, paths).await {
                tracing::warn!(error = %e, "could not delete replaced blobs; the sweeper will");
            }
        });
    }

    /// Deletes every object of `tenant`.
    pub async fn remove_tenant(&self, tenant: &str) -> io::Result<()> {
        let prefix = self.tenant_prefix(tenant);
        let paths: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(io_error)?;
        delete_all(&*self.store, paths).await
    }

    /// Deletes objects no row names, last written before `settled`, and
    /// reports rows whose object is missing. Lists first, then reads the
    /// rows, so that an object committed during the listing is not taken
    /// for an orphan.
    pub async fn repair<F, Fut, E>(
        &self,
        referenced: F,
        settled: Option<SystemTime>,
    ) -> Result<Repair, RepairError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<HashMap<String, HashSet<String>>, E>>,
    {
        let bytes = RepairError::Bytes;
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| bytes(io_error(e)))?;
        let referenced = referenced().await.map_err(RepairError::Rows)?;
        let mut report = Repair::default();
        let mut present: HashSet<(String, String)> = HashSet::new();
        let mut orphans = Vec::new();
        for meta in listed {
            let Some((tenant, id)) = self.blob_of(&meta.location) else {
                continue;
            };
            if referenced.get(&tenant).is_some_and(|ids| ids.contains(&id)) {
                present.insert((tenant, id));
            } else if settled.is_none_or(|cutoff| SystemTime::from(meta.last_modified) < cutoff) {
                orphans.push(meta.location);
            }
        }
        report.orphans_removed = orphans.len();
        delete_all(&*self.store, orphans).await.map_err(bytes)?;
        for (tenant, ids) in referenced {
            for id in ids {
                if present.contains(&(tenant.clone(), id.clone())) {
                    continue;
                }
                // Committed after the listing began, or really gone.
                match self.store.head(&self.object(&tenant, &id)).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        report.missing.push((tenant.clone(), id));
                    }
                    Err(e) => return Err(bytes(io_error(e))),
                }
            }
        }
        Ok(report)
    }

    /// The (tenant, id) of a blob's key, or `None` for any other key.
    fn blob_of(&self, location: &Path) -> Option<(String, String)> {
        let mut parts = location.prefix_match(&self.prefix)?;
        let tenant = parts.next()?;
        let objects = parts.next()?;
        let id = parts.next()?;
        if objects.as_ref() != OBJECTS || parts.next().is_some() {
            return None;
        }
        Some((tenant.as_ref().to_owned(), id.as_ref().to_owned()))
    }
}

/// Deletes `paths` (in bulk where the store can), ignoring those already gone.
async fn delete_all(store: &dyn ObjectStore, paths: Vec<Path>) -> io::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let locations = futures_util::stream::iter(paths.into_iter().map(Ok)).boxed();
    let mut deleted = store.delete_stream(locations);
    while let Some(result) = deleted.next().await {
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(())
}

/// A staged blob being uploaded from a request body.
pub struct StagedWriter {
    writer: Option<BufWriter>,
    hasher: Sha256,
    size: u64,
    /// Kept (nothing to delete) until the upload completes.
    staged: Option<StagedFile>,
    runtime: tokio::runtime::Handle,
}

impl StagedWriter {
    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        let writer = self.writer.as_mut().ok_or_else(finished)?;
        writer.put(chunk).await.map_err(io_error)
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Completes the upload and returns it, staged.
    pub async fn finish(mut self) -> io::Result<StagedFile> {
        // A completion that fails aborts its multipart upload itself.
        let mut writer = self.writer.take().ok_or_else(finished)?;
        writer.shutdown().await?;
        let mut staged = self.staged.take().ok_or_else(finished)?;
        staged.size = self.size;
        staged.etag = format!("{:x}", std::mem::take(&mut self.hasher).finalize());
        Ok(staged)
    }
}

fn finished() -> io::Error {
    io::Error::other("the upload already finished")
}

impl Drop for StagedWriter {
    fn drop(&mut self) {
        // No object was completed: there is nothing to delete, but a
        // multipart upload begun for it is aborted, so its parts go too.
        if let Some(staged) = self.staged.take() {
            staged.keep();
        }
        if let Some(mut writer) = self.writer.take() {
            self.runtime.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %e, "could not abort a multipart upload");
                }
            });
        }
    }
}

/// Keys read from an AWS shared-credentials file.
struct Keys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// Reads `profile` from an AWS shared-credentials file (`[profile]` sections
/// of `aws_access_key_id = …` lines, as `aws configure` writes them).
fn read_credentials(path: &std::path::Path, profile: &str) -> Result<Keys, BucketError> {
    let fail = |message: String| BucketError::Credentials {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    parse_credentials(&text, profile).map_err(fail)
}

fn parse_credentials(text: &str, profile: &str) -> Result<Keys, String> {
    let mut section = None;
    let mut values: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim());
            continue;
        }
        if section != Some(profile) {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            values.insert(key.trim(), value.trim());
        }
    }
    let get = |key: &str| values.get(key).map(|v| (*v).to_owned());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Keys {
            access_key_id,
            secret_access_key,
            session_token: get("aws_session_token"),
        }),
        _ => Err(format!(
            "profile [{profile}] needs aws_access_key_id and aws_secret_access_key"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files_are_read_by_profile() {
        let text = "# keys\n[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n\
                    [other]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n";
        let keys = parse_credentials(text, "default").expect("default");
        assert_eq!(
            (keys.access_key_id.as_str(), keys.session_token),
            ("A", None)
        );
        let keys = parse_credentials(text, "other").expect("other");
        assert_eq!(keys.secret_access_key, "T");
        assert_eq!(keys.session_token.as_deref(), Some("X"));
        let missing = parse_credentials(text, "nope")
            .err()
            .expect("no such profile");
        assert!(missing.contains("[nope]"), "{missing}");
    }
}
