//! Operator keys and tenants: rare writes, made on their own short
//! connection rather than through the committer, which is for invocations.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Any, Row};

use super::{Store, StoreError, now_ms};
use crate::config::AuthConfig;
use crate::quota::Rate;

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

/// One invocation record, as listed to operators.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    /// The request id (for a message delivery, the delivery run's id).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The function.
    pub function: String,
    /// `METHOD /path` of the route, or `message <topic>`.
    pub route: String,
    /// The HTTP status answered (200/500 for messages).
    pub status: i64,
    /// `ok`, `guest-error`, `trap`, `timeout`, `conflict`, `retry`, …
    pub outcome: String,
    /// The limit it went over, for `limit` and `timeout` outcomes.
    pub limit: Option<String>,
    /// Runs of the function (more than one after write conflicts).
    pub attempts: i64,
    /// Wall time, in microseconds.
    pub duration_us: i64,
    /// Unix ms.
    pub created_at: i64,
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
    pub(super) async fn admin_connection(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        Ok(self.writes.acquire().await?)
    }

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

    /// The most recent invocation records, newest first, optionally of one
    /// tenant and function.
    pub async fn invocations(
        &self,
        tenant: Option<&str>,
        function: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Invocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT request_id, tenant, function, route, status, outcome, attempts, duration_us, created_at, \
             exceeded_limit \
             FROM invocations WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR function = $2) \
             ORDER BY created_at DESC, request_id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(function)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Invocation {
                request_id: r.get(0),
                tenant: r.get(1),
                function: r.get(2),
                route: r.get(3),
                status: r.get(4),
                outcome: r.get(5),
                attempts: r.get(6),
                duration_us: r.get(7),
                created_at: r.get(8),
                limit: r.get(9),
            })
            .collect())
    }

    /// Runs `statement` on one tenant's row in a write transaction that tells
    /// other nodes when it changed the row; true if it did.
    async fn write_tenant(
        &self,
        statement: sqlx::query::Query<'_, Any, sqlx::any::AnyArguments>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.admin_connection().await?;
        let mut tx = super::begin_write(&mut conn).await?;
        let done = statement.execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            super::cluster::changed(&mut tx).await?;
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
        let mut tx = super::begin_write(&mut conn).await?;
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
        ] {
            sqlx::query(statement).bind(name).execute(&mut *tx).await?;
        }
        super::functions::forget_unused_components(&mut tx).await?;
        super::cluster::changed(&mut tx).await?;
        tx.commit().await?;
        // The rows are gone, so the files are unreachable: a tenant made
        // again under this name starts with no blobs.
        let files = self.files.clone();
        let tenant = name.to_owned();
        tokio::task::spawn_blocking(move || files.remove_tenant(&tenant))
            .await
            .map_err(|e| StoreError::Files(e.to_string()))?
            .map_err(|e| StoreError::Files(e.to_string()))?;
        Ok(deleted == 1)
    }
}
