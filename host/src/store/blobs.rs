//! Blob metadata: committed reads for the `blobs` capability and downloads,
//! and the start-up repair that keeps rows and files in step.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::files::Repair;
use super::{Store, StoreError};

/// A committed blob's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its name.
    pub name: String,
    /// The file under the tenant's `objects/` that holds it.
    pub file: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its media type.
    pub content_type: String,
    /// Hex SHA-256 of its content.
    pub etag: String,
    /// When it was committed, Unix ms.
    pub created_at: i64,
}

fn stored(row: &sqlx::any::AnyRow) -> StoredBlob {
    StoredBlob {
        name: row.get(0),
        file: row.get(1),
        size: u64::try_from(row.get::<i64, _>(2)).unwrap_or(0),
        content_type: row.get(3),
        etag: row.get(4),
        created_at: row.get(5),
    }
}

const COLUMNS: &str = "name, file, size, content_type, etag, created_at";

impl Store {
    /// The committed blob `name` of `tenant`.
    pub async fn blob(&self, tenant: &str, name: &str) -> Result<Option<StoredBlob>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM blobs WHERE tenant = $1 AND name = $2"
        )))
        .bind(tenant)
        .bind(name)
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.as_ref().map(stored))
    }

    /// The committed blob `name` of `tenant` with its file open for reading.
    /// A file replaced by a concurrent commit between the lookup and the
    /// open (and so deleted) is looked up again.
    pub async fn open_blob(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<(StoredBlob, std::fs::File)>, StoreError> {
        for _ in 0..3 {
            let Some(blob) = self.blob(tenant, name).await? else {
                return Ok(None);
            };
            let dir = self
                .files
                .tenant(tenant)
                .map_err(|e| StoreError::Files(e.to_string()))?;
            let id = blob.file.clone();
            let opened = tokio::task::spawn_blocking(move || dir.open_object(&id))
                .await
                .map_err(|e| StoreError::Files(e.to_string()))?;
            match opened {
                Ok(file) => return Ok(Some((blob, file))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Files(e.to_string())),
            }
        }
        Err(StoreError::Files(format!(
            "blob {name:?} kept changing while it was opened"
        )))
    }

    /// Up to `limit` committed blobs whose names start with `prefix`, after
    /// `after`, in name order.
    pub async fn list_blobs(
        &self,
        tenant: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredBlob>, StoreError> {
        // Names compare bytewise, so those with a prefix are one run from it.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM blobs WHERE tenant = $1 AND name >= $2 AND name > $3 \
             ORDER BY name LIMIT $4"
        )))
        .bind(tenant)
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .iter()
            .map(stored)
            .take_while(|b| b.name.starts_with(prefix))
            .collect())
    }

    /// Bytes `tenant` may still store, if it has a quota.
    pub async fn storage_headroom(&self, tenant: &str) -> Result<Option<u64>, StoreError> {
        let Some(quota) = self.storage_quotas.get(tenant) else {
            return Ok(None);
        };
        let used: Option<i64> = sqlx::query_scalar(super::tenants::STORED_BYTES)
            .bind(tenant)
            .fetch_one(&self.reads)
            .await?;
        let used = u64::try_from(used.unwrap_or(0)).unwrap_or(0);
        Ok(Some(quota.saturating_sub(used)))
    }

    /// Brings blob files and rows back in step after a stop or a crash:
    /// staged files and files without a row are deleted, rows without a
    /// file are removed (and their bytes given back to the tenant's usage).
    /// Only for a host that owns the data directory alone, at start-up.
    pub async fn repair_blobs(&self) -> Result<Repair, StoreError> {
        let rows = sqlx::query("SELECT tenant, file FROM blobs")
            .fetch_all(&self.reads)
            .await?;
        let mut referenced: HashMap<String, HashSet<String>> = HashMap::new();
        for row in rows {
            referenced.entry(row.get(0)).or_default().insert(row.get(1));
        }
        // Nodes sharing the database share the blob directory: files younger
        // than an hour may be another node's work in progress, and a node
        // whose blobs/ is not the shared one would see every file missing.
        let shared = self.backend == super::Backend::Postgres;
        let settled = shared
            .then(|| std::time::SystemTime::now().checked_sub(std::time::Duration::from_secs(3600)))
            .flatten();
        let files = self.files.clone();
        let report = tokio::task::spawn_blocking(move || files.repair(&referenced, settled))
            .await
            .map_err(|e| StoreError::Read(e.to_string()))?
            .map_err(|e| StoreError::Files(e.to_string()))?;
        if report.missing.is_empty() {
        } else if shared {
            // Report; never drop rows from here.
            tracing::error!(
                missing = report.missing.len(),
                "blob rows without files: is this node's data directory's blobs/ the shared one?"
            );
        } else {
            // Before anything is served: the one write besides this host's
            // own, in a write transaction of its own.
            let mut conn = self.admin_connection().await?;
            let mut tx = super::locks::begin_admin(&mut conn).await?;
            forget(&mut tx, &report.missing).await?;
            tx.commit().await?;
        }
        Ok(report)
    }
}

/// Deletes the rows of (tenant, file) pairs whose files are gone, and takes
/// their bytes off their tenants' usage.
async fn forget(
    conn: &mut AnyConnection,
    missing: &[(String, String)],
) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    for (tenant, file) in missing {
        let size: Option<i64> =
            sqlx::query_scalar("DELETE FROM blobs WHERE tenant = $1 AND file = $2 RETURNING size")
                .bind(tenant)
                .bind(file)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(size) = size {
            sqlx::query(
                "UPDATE tenant_usage SET stored_bytes = \
                 CASE WHEN stored_bytes > $1 THEN stored_bytes - $1 ELSE 0 END WHERE tenant = $2",
            )
            .bind(size)
            .bind(tenant)
            .execute(&mut *conn)
            .await?;
            removed += 1;
        }
    }
    Ok(removed)
}
