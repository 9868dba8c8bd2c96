//! The committer's transaction on SQLite: one thread owns one rusqlite
//! connection and runs each batch there, start to commit, with prepared
//! single-row statements.
//!
//! sqlx's SQLite driver runs every statement on a worker thread and pays a
//! thread handoff for each (tens of microseconds on two cores, far more than
//! the statement); a batch made about ten of them, and under load the
//! handoffs took more CPU than the writes. Here a batch costs one handoff.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use super::publish::publish_now;
use super::tx::{BlobCurrent, BlobKey, BlobRow, Current, DocRow, FullKey, Tx, TxError};
use super::{Context, Ran, batch};
use crate::config::Synchronous;
use crate::config::names::IDEMPOTENCY_COLLECTION;
use crate::store::files::StagedFile;
use crate::store::invocations::InvocationRecord;
use crate::store::locks::Plan;
use crate::store::queue::{
    self, Claim, DeadLetterFilter, DeliveryEnd, Lease, NewMessage, ScheduleRow, Subscriptions, Tick,
};

/// One batch for the thread, and where its result goes.
struct Job {
    batch: super::Batch,
    reply: oneshot::Sender<(super::Batch, Ran)>,
}

/// The handle to the committer's SQLite thread.
pub(in crate::store) struct Thread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Thread {
    /// Opens the database file at `path` for writing and starts the thread.
    pub(super) fn start(
        path: PathBuf,
        synchronous: Synchronous,
        ctx: Arc<Context>,
    ) -> Result<Self, TxError> {
        let conn = open(&path, synchronous)?;
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("sluice-commit".into())
            .spawn(move || {
                // Replaced blob files are removed on the runtime's blocking pool.
                let _runtime = runtime.enter();
                let mut conn = conn;
                while let Ok(Job { mut batch, reply }) = rx.recv() {
                    let ran = run(&mut conn, &mut batch, &ctx);
                    let _ = reply.send((batch, ran));
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `batch` on the thread; gives it back with the result.
    pub(super) async fn run(&self, batch: super::Batch) -> (super::Batch, Ran) {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.jobs.send(Job { batch, reply }) {
            let gone = std::io::Error::other("the committer's SQLite thread has stopped");
            return (refused.0.batch, Ran::failed(gone.into()));
        }
        match answer.await {
            Ok(done) => done,
            // The thread died with the batch (it cannot panic on our code's
            // account; a rusqlite panic would be a bug): nothing was written.
            Err(_) => {
                let gone = std::io::Error::other("the committer's SQLite thread has stopped");
                (super::Batch::default(), Ran::failed(gone.into()))
            }
        }
    }
}

/// Opens and prepares a write connection.
fn open(path: &std::path::Path, synchronous: Synchronous) -> Result<Connection, TxError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Store::open set WAL, which the file keeps.
    conn.execute_batch(&crate::store::sqlite_pragmas(synchronous))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Runs one batch to its commit on `conn`, and recounts pending deliveries
/// when the batch asks for it.
fn run(conn: &mut Connection, batch: &mut super::Batch, ctx: &Context) -> Ran {
    let mut ran = Ran::default();
    let result = match LiteTx::begin(conn) {
        Ok(tx) => {
            let requests = batch.requests.iter().map(|(r, _)| r);
            let ops = &batch.ops;
            let write = batch::write(tx, requests, ops, &mut ran.answers, ctx, &mut ran.effects);
            now_or_never(write)
        }
        Err(e) => Err(e),
    };
    ran.outcomes = result;
    if ran.outcomes.is_ok() && ran.effects.recount {
        ran.counts = Some(count_pending(conn));
    }
    ran
}

/// Runs a future whose every step is synchronous (a [`LiteTx`]'s) to its end.
fn now_or_never<T>(future: impl Future<Output = Result<T, TxError>>) -> Result<T, TxError> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => Err(std::io::Error::other("a SQLite batch step waited").into()),
    }
}

fn count_pending(conn: &Connection) -> Result<HashMap<String, i64>, TxError> {
    let mut statement = conn.prepare_cached(queue::COUNT_PENDING)?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The committer's open transaction on the thread's connection; rolled
/// back unless committed.
struct LiteTx<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl<'c> LiteTx<'c> {
    /// Takes the write lock at once (as `store::locks::begin_admin` does).
    fn begin(conn: &'c mut Connection) -> Result<Self, TxError> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Self { conn, open: true })
    }
}

impl Drop for LiteTx<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "rolling back a failed batch failed");
        }
    }
}

impl Tx for LiteTx<'_> {
    const SHARED: bool = false;

    async fn lock(&mut self, _plan: &Plan) -> Result<(), TxError> {
        Ok(())
    }

    async fn current_versions(
        &mut self,
        keys: &[FullKey],
    ) -> Result<HashMap<FullKey, Current>, TxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT version, CASE WHEN value IS NULL THEN 0 ELSE 1 END, \
             COALESCE(octet_length(key) + octet_length(value), 0) \
             FROM documents WHERE tenant = ?1 AND collection = ?2 AND key = ?3",
        )?;
        let mut found = HashMap::with_capacity(keys.len());
        for key in keys {
            let (tenant, collection, k) = key;
            let current = statement
                .query_row(params![&**tenant, collection, k], |r| {
                    Ok(Current {
                        version: r.get(0)?,
                        live: r.get::<_, i64>(1)? != 0,
                        size: r.get(2)?,
                    })
                })
                .optional()?;
            if let Some(current) = current {
                found.insert(key.clone(), current);
            }
        }
        Ok(found)
    }

    async fn current_blobs(
        &mut self,
        keys: &[BlobKey],
    ) -> Result<HashMap<BlobKey, BlobCurrent>, TxError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT file, size FROM blobs WHERE tenant = ?1 AND name = ?2")?;
        let mut found = HashMap::with_capacity(keys.len());
        for key in keys {
            let blob = statement
                .query_row(params![&*key.0, key.1], |r| {
                    Ok(BlobCurrent {
                        file: r.get(0)?,
                        size: r.get(1)?,
                    })
                })
                .optional()?;
            if let Some(blob) = blob {
                found.insert(key.clone(), blob);
            }
        }
        Ok(found)
    }

    async fn current_leases(&mut self, ids: &[&str]) -> Result<HashMap<String, String>, TxError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT lease_token FROM deliveries WHERE id = ?1 AND lease_token IS NOT NULL",
        )?;
        let mut leases = HashMap::with_capacity(ids.len());
        for id in ids {
            let token: Option<String> = statement.query_row([id], |r| r.get(0)).optional()?;
            if let Some(token) = token {
                leases.insert((*id).to_owned(), token);
            }
        }
        Ok(leases)
    }

    async fn stored_bytes(
        &mut self,
        tenants: &[Arc<str>],
    ) -> Result<HashMap<Arc<str>, i64>, TxError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT stored_bytes FROM tenant_usage WHERE tenant = ?1")?;
        let mut usage = HashMap::with_capacity(tenants.len());
        for tenant in tenants {
            let bytes: Option<i64> = statement.query_row([&**tenant], |r| r.get(0)).optional()?;
            usage.insert(tenant.clone(), bytes.unwrap_or(0));
        }
        Ok(usage)
    }

    async fn upsert_documents(
        &mut self,
        docs: &[(FullKey, DocRow)],
        now: i64,
    ) -> Result<(), TxError> {
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO documents (tenant, collection, key, value, version, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (tenant, collection, key) DO UPDATE SET \
             value = excluded.value, version = excluded.version, updated_at = excluded.updated_at",
        )?;
        for ((tenant, collection, key), row) in docs {
            statement.execute(params![
                &**tenant,
                collection,
                key,
                row.value,
                row.version,
                now
            ])?;
        }
        Ok(())
    }

    async fn enqueue(
        &mut self,
        messages: Vec<NewMessage>,
        subscriptions: &Subscriptions,
        deltas: &mut HashMap<Arc<str>, i64>,
        window_ms: i64,
        now: i64,
    ) -> Result<(), TxError> {
        // Keys older than the window no longer count: forget them first.
        let mut forget = self.conn.prepare_cached(
            "UPDATE outbox SET idempotency_key = NULL \
             WHERE tenant = ?1 AND topic = ?2 AND idempotency_key = ?3 AND created_at < ?4",
        )?;
        for m in messages.iter().filter(|m| m.idempotency_key.is_some()) {
            let before = now.saturating_sub(window_ms);
            forget.execute(params![&*m.tenant, m.topic, m.idempotency_key, before])?;
        }
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO outbox (id, tenant, topic, payload, idempotency_key, available_at, created_at, request_id, hops, trace) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        )?;
        let mut deliver = self.conn.prepare_cached(
            "INSERT INTO deliveries (id, message_id, tenant, function, available_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for m in &messages {
            let id = uuid::Uuid::now_v7().to_string();
            let inserted = insert.execute(params![
                id,
                &*m.tenant,
                m.topic,
                m.payload,
                m.idempotency_key,
                m.available_at,
                now,
                m.request_id,
                m.hops,
                m.trace
            ])? == 1;
            if !inserted {
                continue;
            }
            let targets = queue::targets(m, subscriptions);
            *deltas.entry(m.tenant.clone()).or_default() += targets.len() as i64;
            for function in targets {
                let delivery = uuid::Uuid::now_v7().to_string();
                deliver.execute(params![
                    delivery,
                    id,
                    &*m.tenant,
                    &*function,
                    m.available_at
                ])?;
            }
        }
        Ok(())
    }

    async fn end_deliveries(&mut self, ends: &[DeliveryEnd], now: i64) -> Result<(), TxError> {
        let mut remove = self
            .conn
            .prepare_cached("DELETE FROM deliveries WHERE id = ?1")?;
        let mut retry = self.conn.prepare_cached(
            "UPDATE deliveries SET available_at = ?1, lease_until = NULL, lease_token = NULL, \
             last_error = ?2 WHERE id = ?3",
        )?;
        let mut bury = self.conn.prepare_cached(
            "INSERT INTO dead_letters (id, message_id, tenant, function, attempts, last_error, failed_at) \
             SELECT id, message_id, tenant, function, attempts, ?1, ?2 FROM deliveries WHERE id = ?3",
        )?;
        for end in ends {
            match end {
                DeliveryEnd::Done(lease) => {
                    remove.execute([&lease.delivery_id])?;
                }
                DeliveryEnd::Retry { lease, at, error } => {
                    retry.execute(params![at, error, lease.delivery_id])?;
                }
                DeliveryEnd::Dead { lease, error } => {
                    bury.execute(params![error, now, lease.delivery_id])?;
                    remove.execute([&lease.delivery_id])?;
                }
            }
        }
        Ok(())
    }

    async fn add_usage(
        &mut self,
        grown: &HashMap<Arc<str>, i64>,
        _shard: i64,
    ) -> Result<(), TxError> {
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO tenant_usage (tenant, stored_bytes) VALUES (?1, ?2) \
             ON CONFLICT (tenant) DO UPDATE SET stored_bytes = tenant_usage.stored_bytes + excluded.stored_bytes",
        )?;
        for (tenant, bytes) in grown.iter().filter(|(_, b)| **b != 0) {
            statement.execute(params![&**tenant, bytes])?;
        }
        Ok(())
    }

    async fn insert_records(
        &mut self,
        records: &[InvocationRecord],
        now: i64,
    ) -> Result<(), TxError> {
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO invocations (request_id, tenant, function, route, status, outcome, \
             attempts, duration_us, created_at, exceeded_limit, stages) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (request_id) DO NOTHING",
        )?;
        for r in records {
            statement.execute(params![
                r.request_id,
                &*r.tenant,
                &*r.function,
                &*r.route,
                r.status,
                r.outcome.as_str(),
                r.attempts,
                i64::try_from(r.duration_us).unwrap_or(i64::MAX),
                now,
                r.exceeded,
                r.stages.to_column()
            ])?;
        }
        Ok(())
    }

    async fn write_blob_rows(
        &mut self,
        rows: &BTreeMap<BlobKey, BlobRow>,
        now: i64,
    ) -> Result<(), TxError> {
        let mut put = self.conn.prepare_cached(
            "INSERT INTO blobs (tenant, name, file, size, content_type, etag, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (tenant, name) DO UPDATE SET file = excluded.file, \
             size = excluded.size, content_type = excluded.content_type, \
             etag = excluded.etag, created_at = excluded.created_at",
        )?;
        let mut delete = self
            .conn
            .prepare_cached("DELETE FROM blobs WHERE tenant = ?1 AND name = ?2")?;
        for ((tenant, name), row) in rows {
            match row {
                Some((current, file)) => {
                    put.execute(params![
                        &**tenant,
                        name,
                        current.file,
                        current.size,
                        file.content_type,
                        file.etag,
                        now
                    ])?;
                }
                None => {
                    delete.execute(params![&**tenant, name])?;
                }
            }
        }
        Ok(())
    }

    async fn publish(&mut self, files: &[Arc<StagedFile>]) -> Result<(), TxError> {
        // This is the committer's own thread: it may block.
        Ok(publish_now(files)?)
    }

    async fn claim(
        &mut self,
        claim: &Claim,
        now: i64,
    ) -> Result<Vec<(String, Lease, u32)>, TxError> {
        let token = uuid::Uuid::now_v7().to_string();
        let mut statement = self.conn.prepare_cached(
            "UPDATE deliveries SET lease_until = ?1, lease_token = ?2, attempts = attempts + 1 \
             WHERE id = ?3 AND (lease_until IS NULL OR lease_until <= ?4) RETURNING attempts",
        )?;
        let until = now.saturating_add(claim.lease_ms);
        let mut won = Vec::new();
        for id in &claim.ids {
            let attempts: Option<i64> = statement
                .query_row(params![until, token, id, now], |r| r.get(0))
                .optional()?;
            if let Some(attempts) = attempts {
                let lease = Lease {
                    delivery_id: id.clone(),
                    token: token.clone(),
                };
                won.push((
                    id.clone(),
                    lease,
                    u32::try_from(attempts).unwrap_or(u32::MAX),
                ));
            }
        }
        Ok(won)
    }

    async fn tick(
        &mut self,
        tick: &Tick,
        subscriptions: &Subscriptions,
        deltas: &mut HashMap<Arc<str>, i64>,
        now: i64,
    ) -> Result<bool, TxError> {
        let moved = self
            .conn
            .prepare_cached(
                "UPDATE schedules SET next_tick = ?1, last_tick = coalesce(?2, last_tick) \
             WHERE tenant = ?3 AND function = ?4 AND name = ?5 AND next_tick = ?6",
            )?
            .execute(params![
                tick.next,
                tick.fired.as_ref().map(|(at, _)| *at),
                &*tick.tenant,
                &*tick.function,
                tick.name,
                tick.expect_next
            ])?
            == 1;
        if moved && let Some(message) = queue::tick_message(tick, now) {
            self.enqueue(vec![message], subscriptions, deltas, i64::MAX, now)
                .await?;
        }
        Ok(moved)
    }

    async fn register_schedules(&mut self, rows: &[ScheduleRow]) -> Result<Vec<i64>, TxError> {
        let mut statement = self.conn.prepare_cached(queue::schedules::REGISTER)?;
        let mut next = Vec::with_capacity(rows.len());
        for row in rows {
            let tick: i64 = statement.query_row(
                params![
                    &*row.tenant,
                    &*row.function,
                    row.name,
                    row.cron,
                    row.timezone,
                    row.first_tick
                ],
                |r| r.get(0),
            )?;
            next.push(tick);
        }
        Ok(next)
    }

    async fn replay(&mut self, filter: &DeadLetterFilter, now: i64) -> Result<u64, TxError> {
        const MATCHING: &str = "(?1 IS NULL OR d.id = ?1) AND (?2 IS NULL OR d.tenant = ?2) \
                                AND (?3 IS NULL OR d.function = ?3)";
        let which = params![filter.id, filter.tenant, filter.function];
        let moved = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO deliveries (id, message_id, tenant, function, available_at) \
             SELECT d.id, d.message_id, d.tenant, d.function, ?4 FROM dead_letters d \
             WHERE {MATCHING} ON CONFLICT DO NOTHING"
            ))?
            .execute(params![filter.id, filter.tenant, filter.function, now])?;
        self.conn
            .prepare_cached(&format!(
                "DELETE FROM dead_letters WHERE id IN (SELECT d.id FROM dead_letters d WHERE {MATCHING})"
            ))?
            .execute(which)?;
        Ok(moved as u64)
    }

    async fn forget_answers(&mut self, before: i64) -> Result<HashMap<Arc<str>, i64>, TxError> {
        let mut statement = self.conn.prepare_cached(
            "DELETE FROM documents WHERE collection = ?1 AND updated_at < ?2 \
             RETURNING tenant, COALESCE(octet_length(key) + octet_length(value), 0)",
        )?;
        let mut rows = statement.query(params![IDEMPOTENCY_COLLECTION, before])?;
        let mut freed: HashMap<Arc<str>, i64> = HashMap::new();
        while let Some(row) = rows.next()? {
            let (tenant, size): (String, i64) = (row.get(0)?, row.get(1)?);
            *freed.entry(tenant.into()).or_default() -= size;
        }
        Ok(freed)
    }

    async fn collect_garbage(&mut self, window_ms: i64, now: i64) -> Result<u64, TxError> {
        let deleted = self
            .conn
            .prepare_cached(
                "DELETE FROM outbox WHERE created_at < ?1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = outbox.id) \
             AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.message_id = outbox.id)",
            )?
            .execute([now.saturating_sub(window_ms)])?;
        Ok(deleted as u64)
    }

    async fn release(&mut self, leases: &[Lease]) -> Result<u64, TxError> {
        let mut statement = self.conn.prepare_cached(
            "UPDATE deliveries SET lease_until = NULL, lease_token = NULL, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = ?1 AND lease_token = ?2",
        )?;
        let mut released = 0;
        for lease in leases {
            released += statement.execute(params![lease.delivery_id, lease.token])? as u64;
        }
        Ok(released)
    }

    async fn release_leases(&mut self) -> Result<u64, TxError> {
        let released = self.conn.execute(
            "UPDATE deliveries SET lease_until = NULL, lease_token = NULL WHERE lease_token IS NOT NULL",
            [],
        )?;
        Ok(released as u64)
    }

    async fn commit(mut self) -> Result<(), TxError> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_commit_rolls_back() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .expect("table");
        {
            let tx = LiteTx::begin(&mut conn).expect("begin");
            tx.conn
                .execute("INSERT INTO t VALUES (1)", [])
                .expect("insert");
            // Dropped without committing: a failed batch.
        }
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 0);
    }
}
