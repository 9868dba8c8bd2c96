//! Blob bookkeeping around the commit: staged bytes made readable under
//! their ids before it.

use std::sync::Arc;

use crate::store::files::StagedFile;

/// Publishes staged blobs and syncs their directories, off the async
/// threads. On failure, undoes what it did.
pub(super) async fn publish_files(files: &[Arc<StagedFile>]) -> std::io::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || publish_now(&files))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// [`publish_files`] on the calling thread, for a caller that may block.
pub(super) fn publish_now(files: &[Arc<StagedFile>]) -> std::io::Result<()> {
    let mut done = 0;
    let result = (|| {
        for file in files {
            file.publish()?;
            done += 1;
        }
        StagedFile::sync_published(files)
    })();
    if result.is_err() {
        for file in &files[..done] {
            file.unpublish();
        }
    }
    result
}
