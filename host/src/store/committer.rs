//! Group commit: one task, one connection, many invocations per transaction.
//!
//! An fsync costs the same for one row or a thousand, so the committer takes
//! every request that queued up while the previous transaction was being
//! written and commits them together. Each request's reads are checked
//! against the current versions (as updated by the requests before it in the
//! same batch): a request whose reads are stale is answered `Conflict` and
//! contributes nothing, without failing the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Acquire, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{now_ms, select_documents};
use crate::staging::{DocKey, StagedMessage, StagedWrite, Staging};

/// Rows per multi-row statement; keeps well under SQLite's 32766 bound variables.
const CHUNK: usize = 1_000;

/// The record of one invocation, committed with its writes.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    /// The request id.
    pub request_id: String,
    /// The function's tenant.
    pub tenant: Arc<str>,
    /// The function's name.
    pub function: Arc<str>,
    /// `METHOD /pattern`.
    pub route: Arc<str>,
    /// The HTTP status answered.
    pub status: u16,
    /// `ok`, `guest-error`, `trap`, `timeout`, `conflict`, `invalid-response`.
    pub outcome: &'static str,
    /// How many times the function ran.
    pub attempts: u32,
    /// Wall time from receive to commit, in microseconds.
    pub duration_us: u64,
}

/// What an invocation asks to commit. Every key and topic is inside the
/// record's tenant.
#[derive(Debug)]
pub struct CommitRequest {
    /// What it read and staged.
    pub staging: Staging,
    /// Its invocation record.
    pub record: InvocationRecord,
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything is durable.
    Committed,
    /// A document it read changed since; nothing was written.
    Conflict(DocKey),
}

/// Why a commit failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The transaction failed; nothing of the batch was written.
    #[error("database error: {0}")]
    Database(String),
    /// The committer task is gone (shutting down).
    #[error("the committer has stopped")]
    Closed,
}

enum Job {
    Commit {
        request: Box<CommitRequest>,
        reply: Option<oneshot::Sender<Result<CommitOutcome, CommitError>>>,
    },
    Flush(oneshot::Sender<()>),
}

/// A handle to the committer task.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the task that owns `conn`.
    pub(super) fn start(conn: SqliteConnection, max_batch: usize) -> Self {
        let (jobs, rx) = mpsc::channel(max_batch * 8);
        tokio::spawn(run(conn, rx, max_batch));
        Self { jobs }
    }

    /// Commits `request` and waits until it is durable or refused.
    ///
    /// The commit runs on the committer's task: dropping this future (a
    /// client that went away) does not stop a commit already queued.
    pub async fn commit(&self, request: CommitRequest) -> Result<CommitOutcome, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Commit {
                request: Box::new(request),
                reply: Some(reply),
            })
            .await
            .map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)?
    }

    /// Queues `request` without waiting: for invocations that staged nothing,
    /// whose record need not hold up the response. It is committed with the
    /// next commit someone waits for, and at most 100 ms later.
    pub async fn submit(&self, request: CommitRequest) {
        let sent = self.jobs.send(Job::Commit {
            request: Box::new(request),
            reply: None,
        });
        if sent.await.is_err() {
            tracing::warn!("committer stopped; invocation record dropped");
        }
    }

    /// Waits until every job queued before this call is done.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// How long a record that nobody waits for may be held back.
const RECORD_DELAY: Duration = Duration::from_millis(100);

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut batch: Vec<(CommitRequest, Reply)> = Vec::with_capacity(max_batch);
    let mut flushes = Vec::new();
    // Records of invocations that staged nothing wait (up to RECORD_DELAY)
    // to ride along with the next commit someone waits for, rather than
    // paying a transaction and an fsync of their own.
    let mut held_since: Option<Instant> = None;
    let mut open = true;
    while open {
        let due = held_since.map(|t| t + RECORD_DELAY);
        let first = match due {
            None => rx.recv().await,
            Some(due) => tokio::select! {
                job = rx.recv() => job,
                () = tokio::time::sleep_until(due) => None,
            },
        };
        let timed_out = first.is_none() && due.is_some_and(|d| Instant::now() >= d);
        open = first.is_some() || timed_out;
        let mut next = first;
        while let Some(job) = next.take() {
            match job {
                Job::Commit { request, reply } => batch.push((*request, reply)),
                Job::Flush(done) => flushes.push(done),
            }
            if batch.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        let urgent = !open
            || timed_out
            || !flushes.is_empty()
            || batch.len() >= max_batch
            || batch.iter().any(|(_, reply)| reply.is_some());
        if !urgent {
            held_since.get_or_insert_with(Instant::now);
            continue;
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, &mut batch).await;
        }
        held_since = None;
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

type Reply = Option<oneshot::Sender<Result<CommitOutcome, CommitError>>>;

async fn commit_batch(conn: &mut SqliteConnection, batch: &mut Vec<(CommitRequest, Reply)>) {
    let size = batch.len();
    let result = write_batch(conn, batch.iter_mut().map(|(r, _)| r)).await;
    match result {
        Ok(outcomes) => {
            tracing::trace!(size, "batch committed");
            for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(outcome));
                }
            }
        }
        Err(e) => {
            tracing::error!(size, error = %e, "batch commit failed; nothing of it was written");
            let err = CommitError::Database(e.to_string());
            for (_, reply) in batch.drain(..) {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// A document's address across tenants: (tenant, collection, key).
type FullKey = (Arc<str>, String, String);

struct DocRow {
    value: Option<String>,
    version: i64,
}

struct OutboxRow {
    tenant: Arc<str>,
    message: StagedMessage,
    request_id: String,
}

async fn write_batch<'a>(
    conn: &mut SqliteConnection,
    requests: impl Iterator<Item = &'a mut CommitRequest>,
) -> Result<Vec<CommitOutcome>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let now = now_ms();

    let mut parts = Vec::new();
    let mut keys: Vec<FullKey> = Vec::new();
    for request in requests {
        let staging = std::mem::take(&mut request.staging);
        let (reads, writes, messages) = staging.into_parts();
        for DocKey { collection, key } in reads.keys().chain(writes.keys()) {
            keys.push((
                request.record.tenant.clone(),
                collection.clone(),
                key.clone(),
            ));
        }
        parts.push((request, reads, writes, messages));
    }
    keys.sort();
    keys.dedup();
    let mut versions = current_versions(&mut tx, &keys).await?;

    let mut outcomes = Vec::with_capacity(parts.len());
    let mut docs: BTreeMap<FullKey, DocRow> = BTreeMap::new();
    let mut outbox = Vec::new();
    let mut records = Vec::new();
    for (request, reads, writes, messages) in parts {
        let tenant = &request.record.tenant;
        let full = |k: &DocKey| (tenant.clone(), k.collection.clone(), k.key.clone());
        let stale = reads
            .iter()
            .find(|(k, read)| versions.get(&full(k)).copied().unwrap_or(0) != **read as i64);
        if let Some((key, _)) = stale {
            outcomes.push(CommitOutcome::Conflict(key.clone()));
            continue;
        }
        for (k, write) in writes {
            let key = full(&k);
            let version = versions.get(&key).copied().unwrap_or(0) + 1;
            versions.insert(key.clone(), version);
            let value = match write {
                StagedWrite::Put(v) => Some(v),
                StagedWrite::Delete => None,
            };
            docs.insert(key, DocRow { value, version });
        }
        outbox.extend(messages.into_iter().map(|message| OutboxRow {
            tenant: tenant.clone(),
            message,
            request_id: request.record.request_id.clone(),
        }));
        records.push(request.record.clone());
        outcomes.push(CommitOutcome::Committed);
    }

    let docs: Vec<_> = docs.into_iter().collect();
    for chunk in docs.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
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
        q.build().execute(&mut *tx).await?;
    }
    for chunk in outbox.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO outbox (id, tenant, topic, payload, idempotency_key, available_at, created_at, request_id) ",
        );
        q.push_values(chunk, |mut b, row| {
            let delay = i64::try_from(row.message.delay_ms).unwrap_or(i64::MAX);
            b.push_bind(uuid::Uuid::now_v7().to_string())
                .push_bind(row.tenant.to_string())
                .push_bind(&row.message.topic)
                .push_bind(&row.message.payload)
                .push_bind(&row.message.idempotency_key)
                .push_bind(now.saturating_add(delay))
                .push_bind(now)
                .push_bind(&row.request_id);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    insert_records(&mut tx, &records, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

async fn current_versions(
    conn: &mut SqliteConnection,
    keys: &[FullKey],
) -> Result<HashMap<FullKey, i64>, sqlx::Error> {
    let mut versions = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let mut q = select_documents(
            "tenant, collection, key, version",
            chunk.iter().map(|(t, c, k)| (&**t, c.as_str(), k.as_str())),
        );
        for row in q.build().fetch_all(&mut *conn).await? {
            let tenant: String = row.get(0);
            versions.insert((Arc::from(tenant), row.get(1), row.get(2)), row.get(3));
        }
    }
    Ok(versions)
}

async fn insert_records(
    conn: &mut SqliteConnection,
    records: &[InvocationRecord],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in records.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO invocations (request_id, tenant, function, route, status, outcome, attempts, duration_us, created_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&r.request_id)
                .push_bind(r.tenant.to_string())
                .push_bind(r.function.to_string())
                .push_bind(r.route.to_string())
                .push_bind(i64::from(r.status))
                .push_bind(r.outcome)
                .push_bind(i64::from(r.attempts))
                .push_bind(i64::try_from(r.duration_us).unwrap_or(i64::MAX))
                .push_bind(now);
        });
        q.push(" ON CONFLICT (request_id) DO NOTHING");
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}
