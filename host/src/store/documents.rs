//! Committed document reads for the `documents` capability.

use sqlx::Row;

use super::{Store, StoreError};

/// A document row as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    /// The key.
    pub key: String,
    /// The JSON text, `None` for a deleted document.
    pub value: Option<String>,
    /// The committed version.
    pub version: u64,
}

fn version(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// The document row at `key`, tombstones included.
    pub async fn get_document(
        &self,
        tenant: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let row = sqlx::query(
            "SELECT value, version FROM documents WHERE tenant = ? AND collection = ? AND key = ?",
        )
        .bind(tenant)
        .bind(collection)
        .bind(key)
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.map(|row| StoredDocument {
            key: key.to_owned(),
            value: row.get(0),
            version: version(row.get(1)),
        }))
    }

    /// Up to `limit` live documents with keys starting with `prefix`, after `after`, in key order.
    pub async fn list_documents(
        &self,
        tenant: &str,
        collection: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredDocument>, StoreError> {
        // Keys compare bytewise in SQLite and in Rust, so the keys with a
        // given prefix are one contiguous run starting at the prefix.
        let rows = sqlx::query(
            "SELECT key, value, version FROM documents \
             WHERE tenant = ? AND collection = ? AND key >= ? AND key > ? AND value IS NOT NULL \
             ORDER BY key LIMIT ?",
        )
        .bind(tenant)
        .bind(collection)
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| StoredDocument {
                key: row.get(0),
                value: row.get(1),
                version: version(row.get(2)),
            })
            .take_while(|d| d.key.starts_with(prefix))
            .collect())
    }
}
