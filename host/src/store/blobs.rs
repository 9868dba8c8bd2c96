//! Blob metadata: committed reads for the `blobs` capability and downloads,
//! and the start-up repair that keeps rows and files in step.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::files::{BlobSource, Repair, RepairError};
use super::{Store, StoreError};

/// A committed blob's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its name.
    pub name: String,
    /// The id of the bytes that hold it (a file or an object).
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

    /// The committed blob `name` of `tenant` with its bytes ready to read.
    /// A file replaced by a concurrent commit between the lookup and the
    /// open (and so deleted) is looked up again.
    pub async fn open_blob(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<(StoredBlob, BlobSource)>, StoreError> {
        for _ in 0..3 {
            let Some(blob) = self.blob(tenant, name).await? else {
                return Ok(None);
            };
            match self.files.read_from(tenant, &blob.file).await {
                Ok(source) => return Ok(Some((blob, source))),
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

    /// Brings blob bytes and rows back in step after a stop or a crash:
    /// staged bytes and bytes without a row are deleted, rows without bytes
    /// are removed (and their bytes given back to the tenant's usage) when
    /// this host owns its data alone, and reported otherwise. Runs at
    /// start-up, and now and then on a bucket ([`Store::sweep_blobs`]).
    pub async fn repair_blobs(&self) -> Result<Repair, StoreError> {
        // Nodes sharing the database share the blob storage: bytes younger
        // than the grace period may be another node's work in progress, and
        // a node whose blobs/ is not the shared one would see every file
        // missing.
        let shared = self.backend == super::Backend::Postgres || self.files.is_bucket();
        let settled = shared
            .then(|| std::time::SystemTime::now().checked_sub(self.files.orphan_grace()))
            .flatten();
        let reads = self.reads.clone();
        let referenced = || async move {
            let rows = sqlx::query("SELECT tenant, file FROM blobs")
                .fetch_all(&reads)
                .await?;
            let mut referenced: HashMap<String, HashSet<String>> = HashMap::new();
            for row in rows {
                referenced.entry(row.get(0)).or_default().insert(row.get(1));
            }
            Ok::<_, sqlx::Error>(referenced)
        };
        let report = match self.files.repair(referenced, settled).await {
            Ok(report) => report,
            Err(RepairError::Rows(e)) => return Err(e.into()),
            Err(RepairError::Bytes(e)) => return Err(StoreError::Files(e.to_string())),
        };
        if report.missing.is_empty() {
        } else if shared {
            // Report; never drop rows from here.
            tracing::error!(
                missing = report.missing.len(),
                "blob rows without their bytes: is this node's blob storage the shared one?"
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

    /// Runs [`Store::repair_blobs`] every `sweep_interval_secs` until `stop`,
    /// on a bucket: there, nothing else deletes what a node's crash or a
    /// failed commit left, and nodes never restart all at once.
    pub async fn sweep_blobs(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        if !self.files.is_bucket() {
            return;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.files.sweep_interval()) => {}
                _ = stop.changed() => return,
            }
            match self.repair_blobs().await {
                Ok(r) if r.orphans_removed > 0 => {
                    tracing::info!(orphans_removed = r.orphans_removed, "blob bucket swept");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweeping the blob bucket failed"),
            }
        }
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
