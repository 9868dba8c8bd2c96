//! `sluice:function/blobs`: committed blobs merged with this invocation's
//! staged ones; puts go to staged files, made visible only by the commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::bindings::sluice::function::blobs::{Error, Host, Metadata, Page, UploadInfo};
use crate::config::names::{MAX_BLOB_NAME, is_valid_blob_name};
use crate::runtime::state::Capabilities;
use crate::store::staging::StagedBlob;
use crate::store::{BlobSource, StagedFile, StoredBlob};

/// Most blobs one `list` call returns.
const MAX_PAGE: u32 = 1_000;

fn check_name(name: &str) -> Result<(), Error> {
    if !is_valid_blob_name(name) {
        return Err(Error::Invalid(format!(
            "blob names are 1-{MAX_BLOB_NAME} bytes without control characters"
        )));
    }
    Ok(())
}

/// `type/subtype` with optional parameters, as it may go in a header.
fn check_content_type(content_type: &str) -> Result<(), Error> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let valid = content_type.len() <= 255
        && http::HeaderValue::from_str(content_type).is_ok()
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty() && !s.contains('/'));
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{content_type:?} is not a media type like image/png"
        )))
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    tracing::error!(error = %e, "blob storage failed");
    Error::Unavailable("the blob storage could not be used".to_owned())
}

fn staged_metadata(name: String, file: &StagedFile) -> Metadata {
    Metadata {
        name,
        size: file.size,
        content_type: file.content_type.clone(),
        etag: file.etag.clone(),
        created: 0,
    }
}

fn stored_metadata(blob: StoredBlob) -> Metadata {
    Metadata {
        name: blob.name,
        size: blob.size,
        content_type: blob.content_type,
        etag: blob.etag,
        created: u64::try_from(blob.created_at).unwrap_or(0),
    }
}

/// Where a blob's bytes are: a staged file or a committed one.
enum Found {
    Staged(Arc<StagedFile>),
    Stored(StoredBlob),
}

impl Capabilities {
    async fn find_blob(&self, name: &str) -> Result<Option<Found>, Error> {
        check_name(name)?;
        match self.staging.staged_blob(name) {
            Some(StagedBlob::Put(file)) => Ok(Some(Found::Staged(file.clone()))),
            Some(StagedBlob::Delete) => Ok(None),
            None => Ok(self
                .store
                .blob(&self.tenant, name)
                .await
                .map_err(unavailable)?
                .map(Found::Stored)),
        }
    }

    /// Reads `length` bytes at `offset` of a blob.
    async fn read_blob(
        &self,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        /// Where a read takes a blob's bytes from.
        enum Source {
            Staged(Arc<StagedFile>),
            Opened(BlobSource),
        }
        use Source::{Opened, Staged};
        check_name(name)?;
        let (size, source) = match self.staging.staged_blob(name) {
            Some(StagedBlob::Delete) => return Ok(None),
            Some(StagedBlob::Put(staged)) => (staged.size, Staged(staged.clone())),
            None => match self
                .store
                .open_blob(&self.tenant, name)
                .await
                .map_err(unavailable)?
            {
                Some((blob, source)) => (blob.size, Opened(source)),
                None => return Ok(None),
            },
        };
        let length = length.min(size.saturating_sub(offset));
        let max = self.staging.limits().memory_bytes as u64;
        if length > max {
            return Err(Error::LimitExceeded(format!(
                "{length} bytes do not fit in the function's {max}-byte memory; read it with get-range"
            )));
        }
        let source = match source {
            Staged(staged) => staged.source().await.map_err(unavailable)?,
            Opened(source) => source,
        };
        let bytes = source.read(offset, length).await.map_err(unavailable)?;
        Ok(Some(bytes))
    }

    async fn stage_blob_put(
        &mut self,
        name: String,
        content_type: String,
        data: Vec<u8>,
    ) -> Result<Metadata, Error> {
        check_name(&name)?;
        check_content_type(&content_type)?;
        let size = data.len() as u64;
        let staged = (self.store.files())
            .stage_bytes(&self.tenant, &content_type, data)
            .await
            .map_err(unavailable)?;
        let staged = Arc::new(staged);
        let metadata = staged_metadata(name.clone(), &staged);
        self.staging
            .write_blob(name, StagedBlob::Put(staged), size)
            .map_err(|e| Error::LimitExceeded(e.to_string()))?;
        Ok(metadata)
    }

    async fn stage_blob_delete(&mut self, name: String) -> Result<bool, Error> {
        let existed = self.find_blob(&name).await?.is_some();
        if existed {
            self.staging
                .write_blob(name, StagedBlob::Delete, 0)
                .map_err(|e| Error::LimitExceeded(e.to_string()))?;
        }
        Ok(existed)
    }

    fn stage_keep_upload(&mut self, name: String) -> Result<Metadata, Error> {
        check_name(&name)?;
        let Some((upload, kept)) = self.staging.upload() else {
            return Err(Error::Invalid(
                "this request has no upload: its route does not take a raw body".to_owned(),
            ));
        };
        if let Some(kept) = kept
            && kept != name
        {
            return Err(Error::Invalid(format!(
                "the upload is already kept as {kept:?}"
            )));
        }
        let upload = upload.clone();
        let metadata = staged_metadata(name.clone(), &upload);
        self.staging
            .write_blob(name, StagedBlob::Put(upload), 0)
            .map_err(|e| Error::LimitExceeded(e.to_string()))?;
        Ok(metadata)
    }
}

impl Host for Capabilities {
    async fn put(
        &mut self,
        name: String,
        content_type: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<Metadata, Error>> {
        let staged = self.stage_blob_put(name, content_type, data).await;
        self.stop_at_limit(staged)
    }

    async fn get(&mut self, name: String) -> Result<Option<Vec<u8>>, Error> {
        self.read_blob(&name, 0, u64::MAX).await
    }

    async fn get_range(
        &mut self,
        name: String,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.read_blob(&name, offset, length).await
    }

    async fn head(&mut self, name: String) -> Result<Option<Metadata>, Error> {
        Ok(self.find_blob(&name).await?.map(|found| match found {
            Found::Staged(file) => staged_metadata(name, &file),
            Found::Stored(blob) => stored_metadata(blob),
        }))
    }

    async fn delete(&mut self, name: String) -> wasmtime::Result<Result<bool, Error>> {
        let staged = self.stage_blob_delete(name).await;
        self.stop_at_limit(staged)
    }

    async fn list(
        &mut self,
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<Page, Error> {
        if prefix.len() > MAX_BLOB_NAME || cursor.as_ref().is_some_and(|c| c.len() > MAX_BLOB_NAME)
        {
            return Err(Error::Invalid(format!(
                "prefix and cursor are at most {MAX_BLOB_NAME} bytes"
            )));
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let after = cursor.as_deref();
        let staged: Vec<(String, StagedBlob)> = self
            .staging
            .staged_blobs_in_range(&prefix, after)
            .map(|(n, b)| (n.clone(), b.clone()))
            .collect();
        let deletes = staged
            .iter()
            .filter(|(_, b)| matches!(b, StagedBlob::Delete))
            .count();
        // Enough that staged deletes cannot leave the page short, and one
        // more to know whether another page follows.
        let fetch = limit.saturating_add(u32::try_from(deletes).unwrap_or(u32::MAX)) + 1;
        let rows = self
            .store
            .list_blobs(&self.tenant, &prefix, after, fetch)
            .await
            .map_err(unavailable)?;
        let db_has_more = rows.len() as u64 >= u64::from(fetch);
        // Staged names past the last fetched row wait for a later page.
        let boundary = db_has_more
            .then(|| rows.last().map(|r| r.name.clone()))
            .flatten();
        let mut merged: BTreeMap<String, Option<Metadata>> = rows
            .into_iter()
            .map(|b| (b.name.clone(), Some(stored_metadata(b))))
            .collect();
        for (name, blob) in staged {
            if boundary.as_ref().is_some_and(|b| name > *b) {
                continue;
            }
            let metadata = match &blob {
                StagedBlob::Put(file) => Some(staged_metadata(name.clone(), file)),
                StagedBlob::Delete => None,
            };
            merged.insert(name, metadata);
        }
        let mut live = merged.into_values().flatten();
        let blobs: Vec<Metadata> = live.by_ref().take(limit as usize).collect();
        let more = live.next().is_some() || db_has_more;
        let next_cursor = more.then(|| blobs.last().map(|b| b.name.clone())).flatten();
        Ok(Page { blobs, next_cursor })
    }

    fn upload(&mut self) -> Option<UploadInfo> {
        match self.staging.upload() {
            Some((file, None)) => Some(UploadInfo {
                content_type: file.content_type.clone(),
                size: file.size,
                etag: file.etag.clone(),
            }),
            _ => None,
        }
    }

    fn keep_upload(&mut self, name: String) -> wasmtime::Result<Result<Metadata, Error>> {
        let staged = self.stage_keep_upload(name);
        self.stop_at_limit(staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_content_types() {
        assert!(
            check_name("../../etc/passwd").is_ok(),
            "opaque, never a path"
        );
        assert!(check_name("").is_err());
        assert!(check_name("a\0b").is_err());
        assert!(check_name(&"x".repeat(MAX_BLOB_NAME + 1)).is_err());
        assert!(check_content_type("image/png").is_ok());
        assert!(check_content_type("text/plain; charset=utf-8").is_ok());
        for bad in ["png", "image/", "/png", "a/b/c", "text/plain\r\nx: y"] {
            assert!(check_content_type(bad).is_err(), "{bad:?}");
        }
    }
}
