//! The committer's transaction on PostgreSQL, through sqlx: the batch's
//! reads and row writes as a few multi-row statements for the whole batch
//! (a round trip to the server is the cost to save), and the queue's SQL
//! from [`crate::store::queue`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use super::publish::publish_files;
use super::tx::{BlobCurrent, BlobKey, BlobRow, Current, DocRow, FullKey, Tx, TxError};
use crate::config::names::IDEMPOTENCY_COLLECTION;
use crate::store::files::StagedFile;
use crate::store::invocations::InvocationRecord;
use crate::store::locks::Plan;
use crate::store::queue::{
    self, Claim, DeadLetterFilter, DeliveryEnd, Lease, NewMessage, ScheduleRow, Subscriptions, Tick,
};
use crate::store::{Backend, CHUNK, build, select_documents};

/// The committer's open transaction on a sqlx connection.
pub(super) struct PgTx<'c>(pub sqlx::Transaction<'c, Any>);

impl Tx for PgTx<'_> {
    const SHARED: bool = true;

    async fn lock(&mut self, plan: &Plan) -> Result<(), TxError> {
        Ok(plan.take(&mut self.0).await?)
    }

    async fn current_versions(
        &mut self,
        keys: &[FullKey],
    ) -> Result<HashMap<FullKey, Current>, TxError> {
        Ok(current_versions(&mut self.0, keys).await?)
    }

    async fn current_blobs(
        &mut self,
        keys: &[BlobKey],
    ) -> Result<HashMap<BlobKey, BlobCurrent>, TxError> {
        Ok(current_blobs(&mut self.0, keys).await?)
    }

    async fn current_leases(&mut self, ids: &[&str]) -> Result<HashMap<String, String>, TxError> {
        Ok(queue::current_leases(&mut self.0, ids).await?)
    }

    async fn stored_bytes(
        &mut self,
        tenants: &[Arc<str>],
    ) -> Result<HashMap<Arc<str>, i64>, TxError> {
        Ok(stored_bytes(&mut self.0, tenants).await?)
    }

    async fn upsert_documents(
        &mut self,
        docs: &[(FullKey, DocRow)],
        now: i64,
    ) -> Result<(), TxError> {
        Ok(upsert_documents(&mut self.0, docs, now).await?)
    }

    async fn enqueue(
        &mut self,
        messages: Vec<NewMessage>,
        subscriptions: &Subscriptions,
        deltas: &mut HashMap<Arc<str>, i64>,
        window_ms: i64,
        now: i64,
    ) -> Result<(), TxError> {
        let conn = &mut self.0;
        Ok(queue::enqueue(conn, messages, subscriptions, deltas, window_ms, now).await?)
    }

    async fn end_deliveries(&mut self, ends: &[DeliveryEnd], now: i64) -> Result<(), TxError> {
        Ok(queue::end_deliveries(&mut self.0, ends, now).await?)
    }

    async fn add_usage(
        &mut self,
        grown: &HashMap<Arc<str>, i64>,
        shard: i64,
    ) -> Result<(), TxError> {
        Ok(add_usage(&mut self.0, grown, shard).await?)
    }

    async fn insert_records(
        &mut self,
        records: &[InvocationRecord],
        now: i64,
    ) -> Result<(), TxError> {
        Ok(insert_records(&mut self.0, records, now).await?)
    }

    async fn write_blob_rows(
        &mut self,
        rows: &BTreeMap<BlobKey, BlobRow>,
        now: i64,
    ) -> Result<(), TxError> {
        Ok(write_blob_rows(&mut self.0, rows, now).await?)
    }

    async fn publish(&mut self, files: &[Arc<StagedFile>]) -> Result<(), TxError> {
        Ok(publish_files(files).await?)
    }

    async fn claim(
        &mut self,
        claim: &Claim,
        now: i64,
    ) -> Result<Vec<(String, Lease, u32)>, TxError> {
        Ok(queue::claim(&mut self.0, claim, now).await?)
    }

    async fn tick(
        &mut self,
        tick: &Tick,
        subscriptions: &Subscriptions,
        deltas: &mut HashMap<Arc<str>, i64>,
        now: i64,
    ) -> Result<bool, TxError> {
        Ok(queue::tick(&mut self.0, tick, subscriptions, deltas, now).await?)
    }

    async fn register_schedules(&mut self, rows: &[ScheduleRow]) -> Result<Vec<i64>, TxError> {
        Ok(queue::register_schedules(&mut self.0, rows).await?)
    }

    async fn replay(&mut self, filter: &DeadLetterFilter, now: i64) -> Result<u64, TxError> {
        Ok(queue::replay(&mut self.0, filter, now).await?)
    }

    async fn forget_answers(&mut self, before: i64) -> Result<HashMap<Arc<str>, i64>, TxError> {
        let rows = sqlx::query(
            "DELETE FROM documents WHERE collection = $1 AND updated_at < $2 \
             RETURNING tenant, CAST(COALESCE(octet_length(key) + octet_length(value), 0) AS BIGINT)",
        )
        .bind(IDEMPOTENCY_COLLECTION)
        .bind(before)
        .fetch_all(&mut *self.0)
        .await?;
        let mut freed: HashMap<Arc<str>, i64> = HashMap::new();
        for row in rows {
            let (tenant, size): (String, i64) = (row.get(0), row.get(1));
            *freed.entry(tenant.into()).or_default() -= size;
        }
        Ok(freed)
    }

    async fn collect_garbage(&mut self, window_ms: i64, now: i64) -> Result<u64, TxError> {
        Ok(queue::collect_garbage(&mut self.0, window_ms, now).await?)
    }

    async fn release(&mut self, leases: &[Lease]) -> Result<u64, TxError> {
        Ok(queue::release(&mut self.0, leases).await?)
    }

    async fn release_leases(&mut self) -> Result<u64, TxError> {
        Ok(queue::release_leases(&mut self.0).await?)
    }

    async fn commit(self) -> Result<(), TxError> {
        Ok(self.0.commit().await?)
    }
}

/// The committed file and size of each blob at `keys` that exists.
async fn current_blobs(
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
async fn write_blob_rows(
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
async fn current_versions(
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

/// Bytes stored now by each of `tenants`: the sum of its committers' rows.
async fn stored_bytes(
    conn: &mut AnyConnection,
    tenants: &[Arc<str>],
) -> Result<HashMap<Arc<str>, i64>, sqlx::Error> {
    let mut usage = HashMap::new();
    for tenant in tenants {
        let bytes: Option<i64> = sqlx::query_scalar(crate::store::tenants::STORED_BYTES)
            .bind(&**tenant)
            .fetch_one(&mut *conn)
            .await?;
        usage.insert(tenant.clone(), bytes.unwrap_or(0));
    }
    Ok(usage)
}

/// Inserts the batch's invocation records.
async fn insert_records(
    conn: &mut AnyConnection,
    records: &[InvocationRecord],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in records.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new(
            "INSERT INTO invocations (request_id, tenant, function, route, status, outcome, attempts, duration_us, created_at, exceeded_limit, stages) ",
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
                .push_bind(r.exceeded)
                .push_bind(r.stages.to_column());
        });
        q.push(" ON CONFLICT (request_id) DO NOTHING");
        build(&mut q, Backend::of_connection(conn))?
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Writes the batch's document rows at their new versions.
async fn upsert_documents(
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

/// Adds what each tenant's stored bytes grew (or shrank) by to this
/// committer's row of it: one statement, rows in tenant order (so two
/// committers sharing a row lock them in one order).
async fn add_usage(
    conn: &mut AnyConnection,
    grown: &HashMap<Arc<str>, i64>,
    shard: i64,
) -> Result<(), sqlx::Error> {
    let mut grown: Vec<_> = grown.iter().filter(|(_, b)| **b != 0).collect();
    if grown.is_empty() {
        return Ok(());
    }
    grown.sort_unstable();
    for chunk in grown.chunks(CHUNK) {
        let mut q =
            QueryBuilder::<Any>::new("INSERT INTO tenant_usage (tenant, shard, stored_bytes) ");
        q.push_values(chunk, |mut b, (tenant, bytes)| {
            b.push_bind(tenant.to_string())
                .push_bind(shard)
                .push_bind(**bytes);
        });
        q.push(
            " ON CONFLICT (tenant, shard) DO UPDATE \
             SET stored_bytes = tenant_usage.stored_bytes + excluded.stored_bytes",
        );
        build(&mut q, Backend::Postgres)?
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
