//! Tenants and their settings (rate, token keys, quotas): rare writes, made
//! on their own short connection rather than through the committer, each
//! telling the other nodes that something changed. Also each tenant's
//! storage quota as the committer checks it.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{Any, Row};

use super::{Store, StoreError, now_ms};
use crate::config::{AuthConfig, Rate};

/// A tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    /// Its name, the first segment of its routes.
    pub name: String,
    /// Unix ms.
    pub created_at: i64,
    /// The operator key that created it, or `manifest`.
    pub created_by: String,
    /// Its request rate limit, if any.
    pub rate: Option<Rate>,
    /// Its own token settings, if any; shown without secrets.
    #[serde(serialize_with = "redacted")]
    pub auth: Option<AuthConfig>,
    /// Most functions it may deploy, if limited.
    pub max_functions: Option<u32>,
    /// Most bytes of documents it may store, if limited.
    pub max_stored_bytes: Option<u64>,
}

/// A tenant's quotas; `None` lifts a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// Most functions it may deploy.
    pub max_functions: Option<u32>,
    /// Most bytes of documents it may store.
    pub max_stored_bytes: Option<u64>,
}

/// The tenant's token settings without key material: which keys, not what they are.
fn redacted<S: serde::Serializer>(auth: &Option<AuthConfig>, s: S) -> Result<S::Ok, S::Error> {
    let view = auth.as_ref().map(|a| {
        serde_json::json!({
            "keys": a.keys.iter().map(|k| serde_json::json!({"kid": k.kid, "algorithm": k.algorithm})).collect::<Vec<_>>(),
            "jwks_url": a.jwks_url,
            "issuer": a.issuer,
            "audience": a.audience,
            "leeway_seconds": a.leeway_seconds,
            "tenant_claim": a.tenant_claim,
            "roles_claim": a.roles_claim,
        })
    });
    serde::Serialize::serialize(&view, s)
}

const TENANT_COLUMNS: &str = "name, created_at, created_by, requests_per_second, burst, auth, max_functions, max_stored_bytes";

fn tenant(r: &sqlx::any::AnyRow) -> Tenant {
    let rps: Option<f64> = r.get(3);
    let burst: Option<i64> = r.get(4);
    Tenant {
        name: r.get(0),
        created_at: r.get(1),
        created_by: r.get(2),
        rate: rps.map(|requests_per_second| Rate {
            requests_per_second,
            burst: burst.and_then(|b| u32::try_from(b).ok()),
        }),
        auth: r
            .get::<Option<String>, _>(5)
            .and_then(|text| serde_json::from_str(&text).ok()),
        max_functions: r
            .get::<Option<i64>, _>(6)
            .and_then(|n| u32::try_from(n).ok()),
        max_stored_bytes: r
            .get::<Option<i64>, _>(7)
            .and_then(|n| u64::try_from(n).ok()),
    }
}

/// Each tenant's `max_stored_bytes`, for the committer to check writes against.
#[derive(Debug, Default)]
pub struct StorageQuotas {
    quotas: std::sync::RwLock<HashMap<String, u64>>,
}

impl StorageQuotas {
    /// Sets (or, with `None`, lifts) `tenant`'s quota.
    pub fn set(&self, tenant: &str, quota: Option<u64>) {
        let mut quotas = self.quotas.write().unwrap_or_else(|e| e.into_inner());
        match quota {
            Some(q) => quotas.insert(tenant.to_owned(), q),
            None => quotas.remove(tenant),
        };
    }

    pub(super) fn get(&self, tenant: &str) -> Option<u64> {
        let quotas = self.quotas.read().unwrap_or_else(|e| e.into_inner());
        quotas.get(tenant).copied()
    }
}

/// The bytes tenant `$1` stores: the sum of its usage rows (one on
/// SQLite; on PostgreSQL one per committer that added to it).
pub(super) const STORED_BYTES: &str =
    "SELECT CAST(SUM(stored_bytes) AS BIGINT) FROM tenant_usage WHERE tenant = $1";

impl Store {
    /// Runs `statement` on one tenant's row in a write transaction that tells
    /// other nodes when it changed the row; true if it did.
    async fn write_tenant(
        &self,
        statement: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        let done = statement.execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            super::notices::changed(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Creates tenant `name`; false if it exists already.
    pub async fn create_tenant(&self, name: &str, created_by: &str) -> Result<bool, StoreError> {
        self.write_tenant(
            sqlx::query(
                "INSERT INTO tenants (name, created_at, created_by) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(now_ms())
            .bind(created_by),
        )
        .await
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reads)
            .await?;
        Ok(rows.iter().map(tenant).collect())
    }

    /// Tenant `name`, if it exists.
    pub async fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.reads)
            .await?;
        Ok(row.as_ref().map(tenant))
    }

    /// The bytes of documents tenant `name` stores now, as its quota counts them.
    pub async fn stored_bytes(&self, name: &str) -> Result<i64, StoreError> {
        let bytes: Option<i64> = sqlx::query_scalar(STORED_BYTES)
            .bind(name)
            .fetch_one(&self.reads)
            .await?;
        Ok(bytes.unwrap_or(0))
    }

    /// Sets (or, with `None`, removes) tenant `name`'s own token settings; false if there is no such tenant.
    pub async fn set_tenant_auth(
        &self,
        name: &str,
        auth: Option<&AuthConfig>,
    ) -> Result<bool, StoreError> {
        let text = auth
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Read(e.to_string()))?;
        self.write_tenant(
            sqlx::query("UPDATE tenants SET auth = $1 WHERE name = $2")
                .bind(text)
                .bind(name),
        )
        .await
    }

    /// Sets (or, with `None`, removes) tenant `name`'s request rate; false if there is no such tenant.
    pub async fn set_tenant_rate(
        &self,
        name: &str,
        rate: Option<Rate>,
    ) -> Result<bool, StoreError> {
        self.write_tenant(
            sqlx::query("UPDATE tenants SET requests_per_second = $1, burst = $2 WHERE name = $3")
                .bind(rate.map(|r| r.requests_per_second))
                .bind(rate.and_then(|r| r.burst).map(i64::from))
                .bind(name),
        )
        .await
    }

    /// Sets tenant `name`'s quotas; false if there is no such tenant.
    pub async fn set_tenant_quota(
        &self,
        name: &str,
        quota: TenantQuota,
    ) -> Result<bool, StoreError> {
        self.write_tenant(
            sqlx::query(
                "UPDATE tenants SET max_functions = $1, max_stored_bytes = $2 WHERE name = $3",
            )
            .bind(quota.max_functions.map(i64::from))
            .bind(quota.max_stored_bytes.and_then(|n| i64::try_from(n).ok()))
            .bind(name),
        )
        .await
    }

    /// Deletes tenant `name` and everything stored for it; false if there was none.
    pub async fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        // Batches on any node that write for it finish first; later ones
        // wait, then find no route to it.
        super::locks::exclude_tenant(&mut tx, name).await?;
        let deleted = sqlx::query("DELETE FROM tenants WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for statement in [
            "DELETE FROM documents WHERE tenant = $1",
            "DELETE FROM deliveries WHERE tenant = $1",
            "DELETE FROM dead_letters WHERE tenant = $1",
            "DELETE FROM outbox WHERE tenant = $1",
            "DELETE FROM schedules WHERE tenant = $1",
            "DELETE FROM functions WHERE tenant = $1",
            "DELETE FROM function_versions WHERE tenant = $1",
            "DELETE FROM tenant_usage WHERE tenant = $1",
            "DELETE FROM blobs WHERE tenant = $1",
            "DELETE FROM tenant_config WHERE tenant = $1",
        ] {
            sqlx::query(statement).bind(name).execute(&mut *tx).await?;
        }
        super::functions::forget_unused_components(&mut tx).await?;
        super::notices::changed(&mut tx).await?;
        tx.commit().await?;
        self.load_configs().await?;
        // The rows are gone, so the files are unreachable: a tenant made
        // again under this name starts with no blobs.
        self.files
            .remove_tenant(name)
            .await
            .map_err(|e| StoreError::Files(e.to_string()))?;
        Ok(deleted == 1)
    }
}
