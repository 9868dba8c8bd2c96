//! Blob bookkeeping around the commit: staged files renamed to their
//! committed names before it, replaced files deleted after it.

use std::sync::Arc;

use crate::store::files::{Files, StagedFile};

/// Renames staged files to their committed names and syncs the
/// directories, off the async threads. On failure, undoes what it did.
pub(super) async fn publish_files(files: &[(Arc<StagedFile>, String)]) -> std::io::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || publish_now(&files))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// [`publish_files`] on the calling thread, for a caller that may block.
pub(super) fn publish_now(files: &[(Arc<StagedFile>, String)]) -> std::io::Result<()> {
    let mut done: Vec<&(Arc<StagedFile>, String)> = Vec::new();
    let result = (|| {
        for entry @ (file, id) in files {
            file.dir().publish(file, id)?;
            done.push(entry);
        }
        let mut synced: Vec<&str> = Vec::new();
        for (file, _) in files {
            let dir = file.dir();
            if !synced.contains(&dir.tenant()) {
                dir.sync_objects()?;
                synced.push(dir.tenant());
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for (file, id) in done {
            file.dir().remove_objects(std::slice::from_ref(id));
        }
    }
    result
}

/// Deletes committed files nobody refers to any more, in the background:
/// a reader that already opened one keeps reading it.
pub(super) fn remove_files(files: &Arc<Files>, ids: impl IntoIterator<Item = (Arc<str>, String)>) {
    let ids: Vec<_> = ids.into_iter().collect();
    if ids.is_empty() {
        return;
    }
    let files = files.clone();
    tokio::task::spawn_blocking(move || {
        for (tenant, id) in ids {
            match files.tenant(&tenant) {
                Ok(dir) => dir.remove_objects(std::slice::from_ref(&id)),
                Err(e) => tracing::warn!(%tenant, error = %e, "blob directory unavailable"),
            }
        }
    });
}
