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

use sqlx::{Any, AnyConnection, Connection, QueryBuilder, Row};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::files::{Files, StagedFile};
use super::queue::{self, DeliveryEnd, Depth, NewMessage, Subscriptions};
use super::{CHUNK, now_ms, select_documents};
use crate::staging::{DocKey, Parts, StagedBlob, StagedWrite, Staging};

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
    /// `ok`, `guest-error`, `trap`, `timeout`, `limit`, `conflict`, `invalid-response`.
    pub outcome: &'static str,
    /// The limit it went over (`memory_bytes`, …), if that is how it ended.
    pub exceeded: Option<&'static str>,
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
    /// For a consumer: how the delivery it handled ends.
    pub delivery: Option<DeliveryEnd>,
}

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything is durable.
    Committed,
    /// A document it read changed since; nothing was written.
    Conflict(DocKey),
    /// The delivery's lease ran out and someone else holds it now; nothing
    /// was written, so the message's effects happen once, on the new holder.
    LeaseLost,
    /// Its writes would take the tenant past `max_stored_bytes`; nothing was written.
    OverQuota {
        /// Bytes the tenant stores now.
        used: u64,
        /// What the writes would add.
        adding: u64,
        /// The tenant's quota.
        quota: u64,
    },
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

/// A reply to whoever waits for an operation.
type OpReply<T> = oneshot::Sender<Result<T, CommitError>>;

/// Queue and schedule writes, run in the batch's transaction after its commits.
pub(super) enum Op {
    Claim(queue::Claim, OpReply<Vec<(String, queue::Lease, u32)>>),
    Tick(queue::Tick, OpReply<bool>),
    Register(Vec<queue::ScheduleRow>, OpReply<Vec<i64>>),
    Replay(queue::DeadLetterFilter, OpReply<u64>),
    Collect(OpReply<u64>),
    ReleaseLeases(OpReply<u64>),
    Release(Vec<queue::Lease>, OpReply<u64>),
    ForgetBlobs(Vec<(String, String)>, OpReply<u64>),
}

/// Sends an operation's result once its transaction is settled.
type Settle = Box<dyn FnOnce(Option<&CommitError>) + Send>;

fn settle<T: Send + 'static>(reply: OpReply<T>, value: T) -> Settle {
    Box::new(move |failed| {
        let _ = reply.send(match failed {
            None => Ok(value),
            Some(e) => Err(e.clone()),
        });
    })
}

impl Op {
    /// Answers the waiter with `error` without running.
    fn fail(self, error: &CommitError) {
        let e = error.clone();
        match self {
            Op::Claim(_, r) => drop(r.send(Err(e))),
            Op::Tick(_, r) => drop(r.send(Err(e))),
            Op::Register(_, r) => drop(r.send(Err(e))),
            Op::Replay(_, r)
            | Op::Collect(r)
            | Op::ReleaseLeases(r)
            | Op::Release(_, r)
            | Op::ForgetBlobs(_, r) => {
                drop(r.send(Err(e)));
            }
        }
    }

    /// Runs in the batch's transaction; the result reaches the waiter once
    /// the transaction is settled.
    async fn apply(
        self,
        conn: &mut AnyConnection,
        ctx: &Context,
        effects: &mut Effects,
        now: i64,
    ) -> Result<Settle, sqlx::Error> {
        match self {
            Op::Claim(claim, reply) => finish(reply, queue::claim(conn, &claim, now).await),
            Op::Tick(tick, reply) => {
                let moved =
                    queue::tick(conn, &tick, &ctx.subscriptions, &mut effects.deltas, now).await;
                finish(reply, moved)
            }
            Op::Register(rows, reply) => {
                finish(reply, queue::register_schedules(conn, &rows).await)
            }
            Op::Replay(filter, reply) => {
                let replayed = queue::replay(conn, &filter, now).await;
                if matches!(replayed, Ok(n) if n > 0) {
                    effects.recount = true;
                }
                finish(reply, replayed)
            }
            Op::Collect(reply) => finish(
                reply,
                queue::collect_garbage(conn, ctx.window_ms, now).await,
            ),
            Op::ReleaseLeases(reply) => finish(reply, queue::release_leases(conn).await),
            Op::Release(leases, reply) => finish(reply, queue::release(conn, &leases).await),
            Op::ForgetBlobs(missing, reply) => {
                finish(reply, super::blobs::forget(conn, &missing).await)
            }
        }
    }
}

/// Hands a result over for settling, or answers an error at once (the
/// whole batch then rolls back).
fn finish<T: Send + 'static>(
    reply: OpReply<T>,
    result: Result<T, sqlx::Error>,
) -> Result<Settle, sqlx::Error> {
    match result {
        Ok(value) => Ok(settle(reply, value)),
        Err(e) => {
            let _ = reply.send(Err(CommitError::Database(e.to_string())));
            Err(e)
        }
    }
}

enum Job {
    Commit {
        request: Box<CommitRequest>,
        reply: Option<oneshot::Sender<Result<CommitOutcome, CommitError>>>,
    },
    Op(Op),
    Flush(oneshot::Sender<()>),
}

/// What the committer needs beyond its connection.
pub(super) struct Context {
    /// Who receives which topic.
    pub subscriptions: Arc<Subscriptions>,
    /// Woken after a transaction that created deliveries.
    pub ready: Arc<Notify>,
    /// How long an idempotency key counts, in milliseconds.
    pub window_ms: i64,
    /// Deliveries waiting per tenant, updated after each transaction.
    pub depth: Arc<Depth>,
    /// Tenants' `max_stored_bytes`.
    pub storage_quotas: Arc<StorageQuotas>,
    /// Blob directories, for renaming staged files and deleting replaced ones.
    pub files: Arc<Files>,
    /// How to connect again when the connection is lost.
    pub writer: super::Writer,
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

/// What a batch changes about the queue, applied once it commits.
#[derive(Default)]
struct Effects {
    /// Deliveries added (or removed, negative) per tenant.
    deltas: HashMap<Arc<str>, i64>,
    /// Deliveries were added in a way that is counted afresh (replays).
    recount: bool,
    /// A delivery was given a new due time (a retry).
    rescheduled: bool,
}

/// A handle to the committer task.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the task that owns `conn`.
    pub(super) fn start(conn: AnyConnection, max_batch: usize, ctx: Context) -> Self {
        let (jobs, rx) = mpsc::channel(max_batch * 8);
        tokio::spawn(run(conn, rx, max_batch, ctx));
        Self { jobs }
    }

    /// Runs a queue or schedule operation in the next transaction.
    pub(super) async fn op<T>(
        &self,
        make: impl FnOnce(OpReply<T>) -> Op,
    ) -> Result<T, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Op(make(reply)))
            .await
            .map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)?
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

/// Pauses between attempts to reconnect to a database that went away.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long a record that nobody waits for may be held back.
const RECORD_DELAY: Duration = Duration::from_millis(100);

async fn run(mut conn: AnyConnection, mut rx: mpsc::Receiver<Job>, max_batch: usize, ctx: Context) {
    let mut batch: Vec<(CommitRequest, Reply)> = Vec::with_capacity(max_batch);
    let mut ops = Vec::new();
    let mut flushes = Vec::new();
    // Records of invocations that staged nothing wait (up to RECORD_DELAY)
    // to ride along with the next commit someone waits for, rather than
    // paying a transaction and an fsync of their own.
    let mut held_since: Option<Instant> = None;
    let mut backoff = MIN_BACKOFF;
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
                Job::Op(op) => ops.push(op),
                Job::Flush(done) => flushes.push(done),
            }
            if batch.len() + ops.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        let urgent = !open
            || timed_out
            || !flushes.is_empty()
            || !ops.is_empty()
            || batch.len() >= max_batch
            || batch.iter().any(|(_, reply)| reply.is_some());
        if !urgent {
            held_since.get_or_insert_with(Instant::now);
            continue;
        }
        if (!batch.is_empty() || !ops.is_empty())
            && !commit_batch(&mut conn, &mut batch, &mut ops, &ctx).await
            && conn.ping().await.is_err()
        {
            // The connection is gone (the database restarted, the network
            // dropped): connect again, pausing between failed attempts so a
            // database that stays down gets 503s, not a busy loop.
            match super::connect_writer(&ctx.writer).await {
                Ok(fresh) => {
                    tracing::info!("committer reconnected to the database");
                    conn = fresh;
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "committer cannot reach the database");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        held_since = None;
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

type Reply = Option<oneshot::Sender<Result<CommitOutcome, CommitError>>>;

/// Commits one batch; false if it failed (and nothing of it was written).
async fn commit_batch(
    conn: &mut AnyConnection,
    batch: &mut Vec<(CommitRequest, Reply)>,
    ops: &mut Vec<Op>,
    ctx: &Context,
) -> bool {
    let size = batch.len() + ops.len();
    let mut settles = Vec::with_capacity(ops.len());
    let mut effects = Effects::default();
    let result = write_batch(
        conn,
        batch.iter_mut().map(|(r, _)| r),
        ops,
        &mut settles,
        ctx,
        &mut effects,
    )
    .await;
    let result = match result {
        Ok(outcomes) if effects.recount => match queue::count_pending(&mut *conn).await {
            Ok(counts) => {
                ctx.depth.replace(counts);
                Ok(outcomes)
            }
            // Committed all the same; the counts catch up at the next recount.
            Err(e) => {
                tracing::warn!(error = %e, "counting pending deliveries failed");
                Ok(outcomes)
            }
        },
        other => other,
    };
    match result {
        Ok(outcomes) => {
            tracing::trace!(size, "batch committed");
            for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(outcome));
                }
            }
            for settle in settles {
                settle(None);
            }
            let enqueued =
                effects.recount || effects.rescheduled || effects.deltas.values().any(|&d| d > 0);
            ctx.depth.apply(&effects.deltas);
            if enqueued {
                ctx.ready.notify_one();
                // Other nodes' dispatchers learn of them at once, not at their next poll.
                if let Err(e) = super::cluster::deliveries_added(conn).await {
                    tracing::warn!(error = %e, "could not tell other nodes of new deliveries");
                }
            }
            true
        }
        Err(e) => {
            tracing::error!(size, error = %e, "batch commit failed; nothing of it was written");
            let err = CommitError::Database(e.to_string());
            for (_, reply) in batch.drain(..) {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            for settle in settles {
                settle(Some(&err));
            }
            for op in ops.drain(..) {
                op.fail(&err);
            }
            false
        }
    }
}

/// A document's address across tenants: (tenant, collection, key).
type FullKey = (Arc<str>, String, String);

struct DocRow {
    value: Option<String>,
    version: i64,
}

/// A document's committed state: its version, whether it is live (not a
/// tombstone) and the bytes it counts against its tenant's storage.
#[derive(Clone, Copy)]
struct Current {
    version: i64,
    live: bool,
    size: i64,
}

/// A blob's committed file and size.
#[derive(Clone)]
struct BlobCurrent {
    file: String,
    size: i64,
}

/// A blob row to write: `None` deletes it.
type BlobRow = Option<(BlobCurrent, Arc<StagedFile>)>;

/// The bytes a live document counts: its key and its value.
fn stored_size(key: &str, value: &str) -> i64 {
    i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX)
}

async fn write_batch<'a>(
    conn: &mut AnyConnection,
    requests: impl Iterator<Item = &'a mut CommitRequest>,
    ops: &mut Vec<Op>,
    settles: &mut Vec<Settle>,
    ctx: &Context,
    effects: &mut Effects,
) -> Result<Vec<CommitOutcome>, sqlx::Error> {
    let mut tx = super::begin_write(conn).await?;
    let now = now_ms();

    let mut parts = Vec::new();
    let mut keys: Vec<FullKey> = Vec::new();
    let mut blob_keys: Vec<BlobKey> = Vec::new();
    for request in requests {
        let staging = std::mem::take(&mut request.staging);
        let Parts {
            reads,
            writes,
            messages,
            blobs,
        } = staging.into_parts();
        let tenant = &request.record.tenant;
        for DocKey { collection, key } in reads.keys().chain(writes.keys()) {
            keys.push((tenant.clone(), collection.clone(), key.clone()));
        }
        blob_keys.extend(blobs.keys().map(|name| (tenant.clone(), name.clone())));
        parts.push((request, reads, writes, messages, blobs));
    }
    keys.sort();
    keys.dedup();
    let mut current = current_versions(&mut tx, &keys).await?;
    let mut blobs_now = current_blobs(&mut tx, &blob_keys).await?;
    // Blob rows to write, and files the batch makes visible or replaces.
    let mut blob_rows: BTreeMap<BlobKey, BlobRow> = BTreeMap::new();
    let mut publish: Vec<(Arc<StagedFile>, String)> = Vec::new();
    let mut replaced: Vec<(Arc<str>, String)> = Vec::new();
    let lease_ids: Vec<&str> = parts
        .iter()
        .filter_map(|(r, ..)| r.delivery.as_ref())
        .map(|d| d.lease().delivery_id.as_str())
        .collect();
    let mut leases = queue::current_leases(&mut tx, &lease_ids).await?;
    let tenants = parts.iter().map(|(r, ..)| &r.record.tenant);
    let mut usage = stored_bytes(&mut tx, tenants, ctx).await?;
    // Bytes each tenant's stored documents grow (or shrink) by in this batch.
    let mut grown: HashMap<Arc<str>, i64> = HashMap::new();

    let mut outcomes = Vec::with_capacity(parts.len());
    let mut docs: BTreeMap<FullKey, DocRow> = BTreeMap::new();
    let mut outbox = Vec::new();
    let mut records = Vec::new();
    let mut ends = Vec::new();
    for (request, reads, writes, messages, blobs) in parts {
        let tenant = &request.record.tenant;
        let full = |k: &DocKey| (tenant.clone(), k.collection.clone(), k.key.clone());
        let version = |current: &HashMap<FullKey, Current>, k: &FullKey| {
            current.get(k).map_or(0, |c| c.version)
        };
        let stale = reads
            .iter()
            .find(|(k, read)| version(&current, &full(k)) != **read as i64);
        if let Some((key, _)) = stale {
            outcomes.push(CommitOutcome::Conflict(key.clone()));
            continue;
        }
        if let Some(end) = &request.delivery {
            let lease = end.lease();
            // Removed once used: a second end for one lease in a batch loses.
            if leases.get(&lease.delivery_id) != Some(&lease.token) {
                outcomes.push(CommitOutcome::LeaseLost);
                continue;
            }
        }
        let adding: i64 = writes
            .iter()
            .map(|(k, write)| {
                let before = current.get(&full(k)).map_or(0, |c| c.size);
                let after = match write {
                    StagedWrite::Put(v) => stored_size(&k.key, v),
                    StagedWrite::Delete => 0,
                };
                after - before
            })
            .sum::<i64>()
            + blobs
                .iter()
                .map(|(name, blob)| {
                    let before = blobs_now
                        .get(&(tenant.clone(), name.clone()))
                        .map_or(0, |b| b.size);
                    let after = match blob {
                        StagedBlob::Put(file) => i64::try_from(file.size).unwrap_or(i64::MAX),
                        StagedBlob::Delete => 0,
                    };
                    after - before
                })
                .sum::<i64>();
        if adding > 0
            && let Some(quota) = ctx.storage_quotas.get(tenant)
        {
            let used = usage.get(tenant).copied().unwrap_or(0);
            if used.saturating_add(adding) > i64::try_from(quota).unwrap_or(i64::MAX) {
                outcomes.push(CommitOutcome::OverQuota {
                    used: u64::try_from(used).unwrap_or(0),
                    adding: u64::try_from(adding).unwrap_or(0),
                    quota,
                });
                continue;
            }
        }
        *usage.entry(tenant.clone()).or_default() += adding;
        *grown.entry(tenant.clone()).or_default() += adding;
        if let Some(end) = &request.delivery {
            let lease = end.lease();
            leases.remove(&lease.delivery_id);
            if matches!(end, DeliveryEnd::Retry { .. }) {
                effects.rescheduled = true;
            } else {
                *effects.deltas.entry(tenant.clone()).or_default() -= 1;
            }
            ends.push(end.clone());
        }
        for (k, write) in writes {
            let key = full(&k);
            let before = current.get(&key).copied();
            let was_live = before.is_some_and(|c| c.live);
            let version = before.map_or(0, |c| c.version) + 1;
            let (value, kind) = match write {
                StagedWrite::Put(v) => {
                    (Some(v), Some(if was_live { "updated" } else { "created" }))
                }
                StagedWrite::Delete => (None, was_live.then_some("deleted")),
            };
            current.insert(
                key.clone(),
                Current {
                    version,
                    live: value.is_some(),
                    size: value.as_deref().map_or(0, |v| stored_size(&k.key, v)),
                },
            );
            if let Some(kind) = kind
                && ctx.subscriptions.wants_events(tenant, &k.collection)
            {
                outbox.push(NewMessage {
                    tenant: tenant.clone(),
                    topic: format!("documents.{}.{kind}", k.collection),
                    payload: serde_json::json!({
                        "event": kind,
                        "collection": k.collection,
                        "key": k.key,
                        "version": version,
                    })
                    .to_string()
                    .into_bytes(),
                    idempotency_key: None,
                    available_at: now,
                    request_id: request.record.request_id.clone(),
                    to: None,
                });
            }
            docs.insert(key, DocRow { value, version });
        }
        for (name, blob) in blobs {
            let key = (tenant.clone(), name);
            let before = blobs_now.remove(&key);
            if let Some(before) = &before {
                replaced.push((tenant.clone(), before.file.clone()));
            }
            match blob {
                StagedBlob::Put(file) => {
                    let now = BlobCurrent {
                        file: uuid::Uuid::now_v7().simple().to_string(),
                        size: i64::try_from(file.size).unwrap_or(i64::MAX),
                    };
                    publish.push((file.clone(), now.file.clone()));
                    blobs_now.insert(key.clone(), now.clone());
                    blob_rows.insert(key, Some((now, file)));
                }
                StagedBlob::Delete if before.is_some() => {
                    blob_rows.insert(key, None);
                }
                StagedBlob::Delete => {}
            }
        }
        outbox.extend(messages.into_iter().map(|message| NewMessage {
            tenant: tenant.clone(),
            topic: message.topic,
            payload: message.payload,
            idempotency_key: message.idempotency_key,
            available_at: now.saturating_add(i64::try_from(message.delay_ms).unwrap_or(i64::MAX)),
            request_id: request.record.request_id.clone(),
            to: None,
        }));
        records.push(request.record.clone());
        outcomes.push(CommitOutcome::Committed);
    }

    let docs: Vec<_> = docs.into_iter().collect();
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
        super::build(&mut q)?.execute(&mut *tx).await?;
    }
    if !outbox.is_empty() {
        let deltas = &mut effects.deltas;
        queue::enqueue(
            &mut tx,
            outbox,
            &ctx.subscriptions,
            deltas,
            ctx.window_ms,
            now,
        )
        .await?;
    }
    queue::end_deliveries(&mut tx, &ends, now).await?;
    for (tenant, bytes) in grown.into_iter().filter(|(_, b)| *b != 0) {
        sqlx::query(
            "INSERT INTO tenant_usage (tenant, stored_bytes) VALUES ($1, $2) \
             ON CONFLICT (tenant) DO UPDATE SET stored_bytes = tenant_usage.stored_bytes + excluded.stored_bytes",
        )
        .bind(&*tenant)
        .bind(bytes)
        .execute(&mut *tx)
        .await?;
    }
    insert_records(&mut tx, &records, now).await?;
    write_blob_rows(&mut tx, &blob_rows, now).await?;
    for op in std::mem::take(ops) {
        match op.apply(&mut tx, ctx, effects, now).await {
            Ok(settle) => settles.push(settle),
            Err(e) => return Err(e),
        }
    }
    // Staged blob files become visible under the names the rows above
    // give them; until the commit below, no row refers to them, so nothing
    // serves them, and start-up repair deletes them after a crash.
    publish_files(&publish).await?;
    if !publish.is_empty() {
        crash_point("blob-commit");
    }
    if let Err(e) = tx.commit().await {
        remove_files(
            &ctx.files,
            publish
                .iter()
                .map(|(f, id)| (f.dir().tenant().into(), id.clone())),
        );
        return Err(e);
    }
    drop(publish);
    remove_files(&ctx.files, replaced);
    Ok(outcomes)
}

/// A blob's address across tenants: (tenant, name).
type BlobKey = (Arc<str>, String);

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
        for row in super::build(&mut q)?.fetch_all(&mut *conn).await? {
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

/// Renames staged files to their committed names and syncs the
/// directories, off the async threads. On failure, undoes what it did.
async fn publish_files(files: &[(Arc<StagedFile>, String)]) -> Result<(), sqlx::Error> {
    if files.is_empty() {
        return Ok(());
    }
    let files = files.to_vec();
    let published = tokio::task::spawn_blocking(move || {
        let mut done: Vec<&(Arc<StagedFile>, String)> = Vec::new();
        let result = (|| {
            for entry @ (file, id) in &files {
                file.dir().publish(file, id)?;
                done.push(entry);
            }
            let mut synced: Vec<&str> = Vec::new();
            for (file, _) in &files {
                let dir = file.dir();
                if !synced.contains(&dir.tenant()) {
                    dir.sync_objects()?;
                    synced.push(dir.tenant());
                }
            }
            Ok::<_, std::io::Error>(())
        })();
        if result.is_err() {
            for (file, id) in done {
                file.dir().remove_objects(std::slice::from_ref(id));
            }
        }
        result
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    published.map_err(sqlx::Error::Io)
}

/// Deletes committed files nobody refers to any more, in the background:
/// a reader that already opened one keeps reading it.
fn remove_files(files: &Arc<Files>, ids: impl IntoIterator<Item = (Arc<str>, String)>) {
    let ids: Vec<_> = ids.into_iter().collect();
    if ids.is_empty() {
        return;
    }
    let files = files.clone();
    tokio::task::spawn_blocking(move || {
        for (tenant, id) in ids {
            match files.tenant(&tenant) {
                Ok(dir) => dir.remove_objects(std::slice::from_ref(&id)),
                Err(e) => tracing::warn!(%tenant, error = %e, "blob directory unavailable"),
            }
        }
    });
}

/// A debug-build fault point for the crash tests: `SLUICE_FAULT=<name>`
/// aborts the process here, as a power cut would.
fn crash_point(name: &str) {
    if cfg!(debug_assertions) && std::env::var("SLUICE_FAULT").is_ok_and(|v| v == name) {
        tracing::error!(fault = name, "SLUICE_FAULT: aborting");
        std::process::abort();
    }
}

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
        for row in super::build(&mut q)?.fetch_all(&mut *conn).await? {
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

/// Bytes stored now by the tenants of `parts` that have a storage quota.
async fn stored_bytes<'a>(
    conn: &mut AnyConnection,
    tenants: impl Iterator<Item = &'a Arc<str>>,
    ctx: &Context,
) -> Result<HashMap<Arc<str>, i64>, sqlx::Error> {
    let mut usage = HashMap::new();
    for tenant in tenants {
        if usage.contains_key(tenant) || ctx.storage_quotas.get(tenant).is_none() {
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

async fn insert_records(
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
                .push_bind(r.outcome)
                .push_bind(i64::from(r.attempts))
                .push_bind(i64::try_from(r.duration_us).unwrap_or(i64::MAX))
                .push_bind(now)
                .push_bind(r.exceeded);
        });
        q.push(" ON CONFLICT (request_id) DO NOTHING");
        super::build(&mut q)?.execute(&mut *conn).await?;
    }
    Ok(())
}
