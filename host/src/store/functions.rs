//! Deployed functions and their versions: rare writes on their own short
//! connection, like tenants.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, now_ms};

/// A version about to be recorded.
pub struct NewVersion<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The function.
    pub name: &'a str,
    /// The manifest as uploaded.
    pub manifest: &'a str,
    /// Schema documents by the path the manifest names them with.
    pub schemas: &'a BTreeMap<String, serde_json::Value>,
    /// Hex SHA-256 of the component.
    pub component: &'a str,
    /// The component's bytes, kept for nodes that have not got them.
    pub bytes: &'a [u8],
    /// Operator key id.
    pub deployed_by: &'a str,
}

/// A stored version, with what is needed to load it.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The tenant.
    pub tenant: String,
    /// The function.
    pub name: String,
    /// Its number.
    pub version: u32,
    /// The manifest as uploaded.
    pub manifest: String,
    /// Schema documents by path.
    pub schemas: BTreeMap<String, serde_json::Value>,
    /// Hex SHA-256 of the component.
    pub component: String,
}

/// A version as listed to operators.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Its number.
    pub version: u32,
    /// True for the live version.
    pub active: bool,
    /// Unix ms.
    pub deployed_at: i64,
    /// Operator key id.
    pub deployed_by: String,
    /// That key's name, if the key still exists.
    pub deployed_by_name: Option<String>,
    /// Hex SHA-256 of the component.
    pub component_sha256: String,
    /// Component bytes.
    pub component_bytes: i64,
}

/// A deployed function as listed: its live version and when it went live.
#[derive(Debug, Clone, Serialize)]
pub struct DeployedFunction {
    /// The tenant.
    pub tenant: String,
    /// The function.
    pub name: String,
    /// The live version.
    pub version: u32,
    /// Unix ms.
    pub activated_at: i64,
    /// Operator key id.
    pub activated_by: String,
    /// How many versions are stored.
    pub versions: i64,
}

/// The number a function's next version gets.
const NEXT_VERSION: &str =
    "SELECT COALESCE(MAX(version), 0) + 1 FROM function_versions WHERE tenant = $1 AND name = $2";

fn version_number(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl Store {
    /// Records `new` as the next version of its function and makes it the
    /// live one, in one transaction; returns its number.
    pub async fn record_version(&self, new: NewVersion<'_>) -> Result<u32, StoreError> {
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        let next: i64 = sqlx::query_scalar(NEXT_VERSION)
            .bind(new.tenant)
            .bind(new.name)
            .fetch_one(&mut *tx)
            .await?;
        let now = now_ms();
        let schemas = serde_json::to_string(new.schemas).unwrap_or_else(|_| "{}".into());
        sqlx::query(
            "INSERT INTO function_versions \
             (tenant, name, version, manifest, schemas, component, size, deployed_at, deployed_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new.tenant)
        .bind(new.name)
        .bind(next)
        .bind(new.manifest)
        .bind(schemas)
        .bind(new.component)
        .bind(i64::try_from(new.bytes.len()).unwrap_or(i64::MAX))
        .bind(now)
        .bind(new.deployed_by)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO components (sha, bytes) VALUES ($1, $2) ON CONFLICT (sha) DO NOTHING",
        )
        .bind(new.component)
        .bind(new.bytes)
        .execute(&mut *tx)
        .await?;
        activate(&mut tx, new.tenant, new.name, next, new.deployed_by, now).await?;
        super::notices::changed(&mut tx).await?;
        tx.commit().await?;
        Ok(version_number(next))
    }

    /// The bytes of component `sha`, if some deploy stored them.
    pub async fn component(&self, sha: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM components WHERE sha = $1")
                .bind(sha)
                .fetch_optional(&self.reads)
                .await?,
        )
    }

    /// The number the next version of `tenant`'s `name` will get.
    pub async fn next_version(&self, tenant: &str, name: &str) -> Result<u32, StoreError> {
        let next: i64 = sqlx::query_scalar(NEXT_VERSION)
            .bind(tenant)
            .bind(name)
            .fetch_one(&self.reads)
            .await?;
        Ok(version_number(next))
    }

    /// Makes `version` the live version of `tenant`'s `name`.
    pub async fn activate_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
        by: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        activate(&mut tx, tenant, name, i64::from(version), by, now_ms()).await?;
        super::notices::changed(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Version `version` of `tenant`'s `name`, if stored.
    pub async fn stored_version(
        &self,
        tenant: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant, name, version, manifest, schemas, component FROM function_versions \
             WHERE tenant = $1 AND name = $2 AND version = $3",
        )
        .bind(tenant)
        .bind(name)
        .bind(i64::from(version))
        .fetch_optional(&self.reads)
        .await?;
        Ok(row.as_ref().map(stored_version))
    }

    /// The live version of every deployed function: what a starting host loads.
    pub async fn live_versions(&self) -> Result<Vec<StoredVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.tenant, v.name, v.version, v.manifest, v.schemas, v.component \
             FROM functions f JOIN function_versions v \
               ON v.tenant = f.tenant AND v.name = f.name AND v.version = f.version \
             ORDER BY v.tenant, v.name",
        )
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.iter().map(stored_version).collect())
    }

    /// The versions of `tenant`'s `name`, newest first.
    pub async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT v.version, CASE WHEN v.version = f.version THEN 1 ELSE 0 END, v.deployed_at, v.deployed_by, k.name, \
                    v.component, v.size \
             FROM function_versions v \
             LEFT JOIN functions f ON f.tenant = v.tenant AND f.name = v.name \
             LEFT JOIN operator_keys k ON k.id = v.deployed_by \
             WHERE v.tenant = $1 AND v.name = $2 ORDER BY v.version DESC",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .iter()
            .map(|r| VersionInfo {
                version: version_number(r.get(0)),
                active: r.get::<i64, _>(1) != 0,
                deployed_at: r.get(2),
                deployed_by: r.get(3),
                deployed_by_name: r.get(4),
                component_sha256: r.get(5),
                component_bytes: r.get(6),
            })
            .collect())
    }

    /// Deployed functions, of one tenant or all, by tenant and name.
    pub async fn deployed_functions(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<DeployedFunction>, StoreError> {
        let rows = sqlx::query(
            "SELECT f.tenant, f.name, f.version, f.activated_at, f.activated_by, \
                    (SELECT COUNT(*) FROM function_versions v WHERE v.tenant = f.tenant AND v.name = f.name) \
             FROM functions f WHERE ($1 IS NULL OR f.tenant = $1) ORDER BY f.tenant, f.name",
        )
        .bind(tenant)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeployedFunction {
                tenant: r.get(0),
                name: r.get(1),
                version: version_number(r.get(2)),
                activated_at: r.get(3),
                activated_by: r.get(4),
                versions: r.get(5),
            })
            .collect())
    }

    /// Removes `tenant`'s deployed `name` and all its versions; returns the
    /// component hashes no version refers to any more.
    pub async fn delete_function(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        let components: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT component FROM function_versions WHERE tenant = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        for statement in [
            "DELETE FROM functions WHERE tenant = $1 AND name = $2",
            "DELETE FROM function_versions WHERE tenant = $1 AND name = $2",
        ] {
            sqlx::query(statement)
                .bind(tenant)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        let mut unused = Vec::new();
        for sha in components {
            let still: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM function_versions WHERE component = $1")
                    .bind(&sha)
                    .fetch_one(&mut *tx)
                    .await?;
            if still == 0 {
                unused.push(sha);
            }
        }
        forget_unused_components(&mut tx).await?;
        super::notices::changed(&mut tx).await?;
        tx.commit().await?;
        Ok(unused)
    }
}

/// Deletes the stored bytes of components no version refers to.
pub(super) async fn forget_unused_components(
    tx: &mut sqlx::AnyConnection,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM components WHERE NOT EXISTS \
         (SELECT 1 FROM function_versions v WHERE v.component = components.sha)",
    )
    .execute(tx)
    .await?;
    Ok(())
}

async fn activate(
    tx: &mut sqlx::AnyConnection,
    tenant: &str,
    name: &str,
    version: i64,
    by: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO functions (tenant, name, version, activated_at, activated_by) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant, name) DO UPDATE SET version = excluded.version, \
           activated_at = excluded.activated_at, activated_by = excluded.activated_by",
    )
    .bind(tenant)
    .bind(name)
    .bind(version)
    .bind(now)
    .bind(by)
    .execute(tx)
    .await?;
    Ok(())
}

fn stored_version(r: &sqlx::any::AnyRow) -> StoredVersion {
    StoredVersion {
        tenant: r.get(0),
        name: r.get(1),
        version: version_number(r.get(2)),
        manifest: r.get(3),
        schemas: serde_json::from_str(r.get::<&str, _>(4)).unwrap_or_default(),
        component: r.get(5),
    }
}
