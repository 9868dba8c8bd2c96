//! Operator keys for the admin API: only their hashes are stored. A rare
//! write, made on its own short connection rather than through the committer.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// An operator key as listed: never the key itself.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorKey {
    /// The key's public part (`sk_<id>_…`).
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, when revoked.
    pub revoked_at: Option<i64>,
}

/// Hex SHA-256 of `key`. Keys carry 256 random bits, so a fast hash is
/// enough: there is nothing to brute-force.
fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Read(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Store {
    /// Creates an operator key named `name`; returns the key (shown once) and its listing.
    pub async fn create_operator_key(
        &self,
        name: &str,
    ) -> Result<(String, OperatorKey), StoreError> {
        let id = random_hex(6)?;
        let key = format!("sk_{id}_{}", random_hex(32)?);
        let created_at = now_ms();
        let mut conn = self.admin_connection().await?;
        sqlx::query(
            "INSERT INTO operator_keys (id, name, hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(name)
        .bind(hash(&key))
        .bind(created_at)
        .execute(&mut *conn)
        .await?;
        let listed = OperatorKey {
            id,
            name: name.to_owned(),
            created_at,
            revoked_at: None,
        };
        Ok((key, listed))
    }

    /// Revokes the key with public id `id`; false if there is none.
    pub async fn revoke_operator_key(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.admin_connection().await?;
        let done = sqlx::query(
            "UPDATE operator_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every operator key, newest first.
    pub async fn operator_keys(&self) -> Result<Vec<OperatorKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked_at FROM operator_keys ORDER BY created_at DESC",
        )
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OperatorKey {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                revoked_at: r.get(3),
            })
            .collect())
    }

    /// The id of the live operator key `key`, if it is one.
    pub async fn check_operator_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM operator_keys WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash(key))
        .fetch_optional(&self.reads)
        .await?)
    }
}
