//! The batch's SQL: reading the committed state it checks against, and
//! writing its rows, a few statements for the whole batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use crate::store::files::StagedFile;
use crate::store::invocations::InvocationRecord;
use crate::store::tenants::StorageQuotas;
use crate::store::{Backend, CHUNK, build, select_documents};

/// A document's address across tenants: (tenant, collection, key).
pub(super) type FullKey = (Arc<str>, String, String);

/// A document row to write: `None` is a tombstone.
pub(super) struct DocRow {
    pub value: Option<String>,
    pub version: i64,
}

/// A document's committed state: its version, whether it is live (not a
/// tombstone) and the bytes it counts against its tenant's storage.
#[derive(Clone, Copy)]
pub(super) struct Current {
    pub version: i64,
    pub live: bool,
    pub size: i64,
}

/// A blob's committed file and size.
#[derive(Clone)]
pub(super) struct BlobCurrent {
    pub file: String,
    pub size: i64,
}

/// A blob row to write: `None` deletes it.
pub(super) type BlobRow = Option<(BlobCurrent, Arc<StagedFile>)>;

/// A blob's address across tenants: (tenant, name).
pub(super) type BlobKey = (Arc<str>, String);

/// The committed file and size of each blob at `keys` that exists.
pub(super) async fn current_blobs(
    conn: &mut AnyConnection,
    keys: &[BlobKey],
) -> Result<HashMap<BlobKey, BlobCurrent>, sqlx::Error> {
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new(
            "SELECT tenant, name, file, size FROM blobs WHERE (tenant, name) IN (",
        );
        let mut list = q.separated(", ");
        for (tenant, name) in chunk {
            list.push("(")
                .push_bind_unseparated(tenant.to_string())
                .push_unseparated(", ")
                .push_bind_unseparated(name)
                .push_unseparated(")");
        }
        q.push(")");
        for row in build(&mut q, Backend::of_connection(conn))?
            .fetch_all(&mut *conn)
            .await?
        {
            let tenant: String = row.get(0);
            let blob = BlobCurrent {
                file: row.get(2),
                size: row.get(3),
            };
            found.insert((Arc::from(tenant), row.get(1)), blob);
        }
    }
    Ok(found)
}

/// Writes (or, for `None`, deletes) each blob row.
pub(super) async fn write_blob_rows(
    conn: &mut AnyConnection,
    rows: &BTreeMap<BlobKey, BlobRow>,
    now: i64,
) -> Result<(), sqlx::Error> {
    for ((tenant, name), row) in rows {
        match row {
            Some((current, file)) => {
                sqlx::query(
                    "INSERT INTO blobs (tenant, name, file, size, content_type, etag, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant, name) DO UPDATE SET file = excluded.file, \
                     size = excluded.size, content_type = excluded.content_type, \
                     etag = excluded.etag, created_at = excluded.created_at",
                )
                .bind(&**tenant)
                .bind(name)
                .bind(&current.file)
                .bind(current.size)
                .bind(&file.content_type)
                .bind(&file.etag)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM blobs WHERE tenant = $1 AND name = $2")
                    .bind(&**tenant)
                    .bind(name)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// The committed state of each document at `keys` that has a row.
pub(super) async fn current_versions(
    conn: &mut AnyConnection,
    keys: &[FullKey],
) -> Result<HashMap<FullKey, Current>, sqlx::Error> {
    let mut versions = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut q = select_documents(
            "tenant, collection, key, version, CASE WHEN value IS NULL THEN 0 ELSE 1 END, \
             COALESCE(octet_length(key) + octet_length(value), 0)",
            chunk.iter().map(|(t, c, k)| (&**t, c.as_str(), k.as_str())),
        );
        for row in build(&mut q, Backend::of_connection(conn))?
            .fetch_all(&mut *conn)
            .await?
        {
            let tenant: String = row.get(0);
            let current = Current {
                version: row.get(3),
                live: row.get::<i64, _>(4) != 0,
                size: row.get(5),
            };
            versions.insert((Arc::from(tenant), row.get(1), row.get(2)), current);
        }
    }
    Ok(versions)
}

/// Bytes stored now by those of `tenants` that have a storage quota.
pub(super) async fn stored_bytes<'a>(
    conn: &mut AnyConnection,
    tenants: impl Iterator<Item = &'a Arc<str>>,
    quotas: &StorageQuotas,
) -> Result<HashMap<Arc<str>, i64>, sqlx::Error> {
    let mut usage = HashMap::new();
    for tenant in tenants {
        if usage.contains_key(tenant) || quotas.get(tenant).is_none() {
            continue;
        }
        let bytes: Option<i64> =
            sqlx::query_scalar("SELECT stored_bytes FROM tenant_usage WHERE tenant = $1")
                .bind(&**tenant)
                .fetch_optional(&mut *conn)
                .await?;
        usage.insert(tenant.clone(), bytes.unwrap_or(0));
    }
    Ok(usage)
}

/// Inserts the batch's invocation records.
pub(super) async fn insert_records(
    conn: &mut AnyConnection,
    records: &[InvocationRecord],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in records.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new(
            "INSERT INTO invocations (request_id, tenant, function, route, status, outcome, attempts, duration_us, created_at, exceeded_limit) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&r.request_id)
                .push_bind(r.tenant.to_string())
                .push_bind(r.function.to_string())
                .push_bind(r.route.to_string())
                .push_bind(i64::from(r.status))
                .push_bind(r.outcome.as_str())
                .push_bind(i64::from(r.attempts))
                .push_bind(i64::try_from(r.duration_us).unwrap_or(i64::MAX))
                .push_bind(now)
                .push_bind(r.exceeded);
        });
        q.push(" ON CONFLICT (request_id) DO NOTHING");
        build(&mut q, Backend::of_connection(conn))?
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Writes the batch's document rows at their new versions.
pub(super) async fn upsert_documents(
    conn: &mut AnyConnection,
    docs: &[(FullKey, DocRow)],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in docs.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new(
            "INSERT INTO documents (tenant, collection, key, value, version, updated_at) ",
        );
        q.push_values(chunk, |mut b, ((tenant, collection, key), row)| {
            b.push_bind(tenant.to_string())
                .push_bind(collection)
                .push_bind(key)
                .push_bind(&row.value)
                .push_bind(row.version)
                .push_bind(now);
        });
        q.push(
            " ON CONFLICT (tenant, collection, key) DO UPDATE SET \
             value = excluded.value, version = excluded.version, updated_at = excluded.updated_at",
        );
        build(&mut q, Backend::of_connection(conn))?
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Adds what each tenant's stored bytes grew (or shrank) by.
pub(super) async fn add_usage(
    conn: &mut AnyConnection,
    grown: &HashMap<Arc<str>, i64>,
) -> Result<(), sqlx::Error> {
    for (tenant, bytes) in grown.iter().filter(|(_, b)| **b != 0) {
        sqlx::query(
            "INSERT INTO tenant_usage (tenant, stored_bytes) VALUES ($1, $2) \
             ON CONFLICT (tenant) DO UPDATE SET stored_bytes = tenant_usage.stored_bytes + excluded.stored_bytes",
        )
        .bind(&**tenant)
        .bind(*bytes)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
