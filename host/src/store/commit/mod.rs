//! Group commit: one task, one connection, many invocations per transaction.
//!
//! An fsync costs the same for one row or a thousand, so the committer takes
//! every request that queued up while the previous transaction was being
//! written and commits them together. Each request's reads are checked
//! against the current versions (as updated by the requests before it in the
//! same batch): a request whose reads are stale is answered `Conflict` and
//! contributes nothing, without failing the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::{AnyConnection, Connection};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

mod batch;
mod lite;
mod ops;
mod pg;
mod publish;
mod tx;

pub(super) use ops::Op;
use ops::{Answer, OpReply};

use super::files::Files;
use super::invocations::InvocationRecord;
use super::queue::{self, DeliveryEnd, Depth, Subscriptions};
use super::staging::{DocKey, Staging};
use super::tenants::StorageQuotas;

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
    /// Consumer runs that led to the messages and events it makes: 0 for a
    /// request, one more than its message's for a consumer. Bounds loops
    /// (a consumer writing what it subscribes to).
    pub hops: u32,
    /// Its trace, when traces are exported.
    pub trace: Option<CommitTrace>,
}

/// What a traced invocation's commit carries to its trace.
#[derive(Debug)]
pub struct CommitTrace {
    /// The `traceparent` the messages and events it makes carry, so that
    /// their consumers continue its trace.
    pub traceparent: String,
    /// Its `persist` span, where the batch's size and the wait before the
    /// batch are recorded (`batch`, `wait_us`).
    pub span: tracing::Span,
    /// When it was handed to the committer.
    pub queued: Instant,
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
    /// Which of a tenant's usage rows this committer adds to on
    /// PostgreSQL: committers on different nodes rarely share one, so they
    /// do not queue on it.
    pub usage_shard: i64,
}

/// Where the committer writes.
pub(super) enum Db {
    /// A PostgreSQL connection of sqlx's, on the committer's task.
    Pg(AnyConnection),
    /// An SQLite connection on the committer's own thread.
    Lite(lite::Thread),
}

impl Db {
    /// The committer's SQLite thread on the database file at `path`.
    pub(super) fn sqlite(
        path: std::path::PathBuf,
        synchronous: crate::config::Synchronous,
        ctx: &Arc<Context>,
    ) -> Result<Self, String> {
        lite::Thread::start(path, synchronous, ctx.clone())
            .map(Db::Lite)
            .map_err(|e| e.to_string())
    }
}

/// The jobs one transaction carries: commits, with whoever waits for each,
/// and queue operations.
#[derive(Default)]
pub(super) struct Batch {
    requests: Vec<(CommitRequest, Reply)>,
    ops: Vec<Op>,
}

/// What running a batch gave.
pub(super) struct Ran {
    /// Each request's outcome, or why the transaction failed.
    outcomes: Result<Vec<CommitOutcome>, tx::TxError>,
    /// The queue operations' answers, in order, sent once the transaction commits.
    answers: Vec<Answer>,
    effects: Effects,
    /// Pending deliveries counted afresh, when the batch asked for it.
    counts: Option<Result<HashMap<String, i64>, tx::TxError>>,
}

impl Default for Ran {
    fn default() -> Self {
        Self {
            outcomes: Ok(Vec::new()),
            answers: Vec::new(),
            effects: Effects::default(),
            counts: None,
        }
    }
}

impl Ran {
    fn failed(error: tx::TxError) -> Self {
        Self {
            outcomes: Err(error),
            ..Self::default()
        }
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
    /// Commits still to be refused as conflicts: a test's fault injection.
    conflicts: Arc<AtomicU32>,
}

impl Committer {
    /// Starts the task that commits through `db`.
    pub(super) fn start(db: Db, max_batch: usize, ctx: Arc<Context>) -> Self {
        let (jobs, rx) = mpsc::channel(max_batch * 8);
        tokio::spawn(run(db, rx, max_batch, ctx));
        Self {
            jobs,
            conflicts: Arc::default(),
        }
    }

    /// Refuses the next `n` commits that wrote or read something as if a
    /// document they read had changed, without writing them, so that a
    /// test sees its function run again (`sluice-test`'s fault injection).
    pub fn inject_conflicts(&self, n: u32) {
        self.conflicts.store(n, Ordering::SeqCst);
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
        if self.conflicts.load(Ordering::Relaxed) > 0
            && let Some(key) = request.staging.some_key()
            && self
                .conflicts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Ok(CommitOutcome::Conflict(key));
        }
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

async fn run(mut db: Db, mut rx: mpsc::Receiver<Job>, max_batch: usize, ctx: Arc<Context>) {
    let mut pending = Batch::default();
    let mut flushes = Vec::new();
    // Records of invocations that staged nothing wait (up to RECORD_DELAY)
    // to ride along with the next commit someone waits for, rather than
    // paying a transaction and an fsync of their own.
    let mut held_since: Option<Instant> = None;
    let mut backoff = MIN_BACKOFF;
    let mut broken = false;
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
                Job::Commit { request, reply } => pending.requests.push((*request, reply)),
                Job::Op(op) => pending.ops.push(op),
                Job::Flush(done) => flushes.push(done),
            }
            if pending.requests.len() + pending.ops.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        let urgent = !open
            || timed_out
            || !flushes.is_empty()
            || !pending.ops.is_empty()
            || pending.requests.len() >= max_batch
            || pending.requests.iter().any(|(_, reply)| reply.is_some());
        if !urgent {
            held_since.get_or_insert_with(Instant::now);
            continue;
        }
        let work = !pending.requests.is_empty() || !pending.ops.is_empty();
        // The last reconnect failed: try again before the batch, so the
        // first batch after the database returns commits.
        if work
            && broken
            && let Db::Pg(conn) = &mut db
            && let Ok(fresh) = super::connect_writer(&ctx.writer).await
        {
            tracing::info!("committer reconnected to the database");
            *conn = fresh;
            broken = false;
            backoff = MIN_BACKOFF;
        }
        if work
            && !commit_batch(&mut db, &mut pending, &ctx).await
            && let Db::Pg(conn) = &mut db
            && conn.ping().await.is_err()
        {
            // The connection is gone (the database restarted, the network
            // dropped): connect again, pausing between failed attempts so a
            // database that stays down gets 503s, not a busy loop.
            match super::connect_writer(&ctx.writer).await {
                Ok(fresh) => {
                    tracing::info!("committer reconnected to the database");
                    *conn = fresh;
                    broken = false;
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    broken = true;
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

/// Times PostgreSQL may abort a batch (a deadlock it broke) before its
/// requests are answered with the error.
const ATTEMPTS: u32 = 5;

/// Runs one batch in a PostgreSQL transaction, again from the start if
/// PostgreSQL aborted it in a way that running again can cure.
async fn run_pg(conn: &mut AnyConnection, pending: &Batch, ctx: &Context) -> Ran {
    let mut ran = Ran::default();
    for attempt in 1..=ATTEMPTS {
        ran = Ran::default();
        ran.outcomes = match conn.begin().await {
            Ok(tx) => {
                let requests = pending.requests.iter().map(|(r, _)| r);
                let (answers, effects) = (&mut ran.answers, &mut ran.effects);
                batch::write(pg::PgTx(tx), requests, &pending.ops, answers, ctx, effects).await
            }
            Err(e) => Err(e.into()),
        };
        match &ran.outcomes {
            Err(tx::TxError::Sqlx(e))
                if attempt < ATTEMPTS && crate::store::locks::retryable(e) =>
            {
                tracing::info!(attempt, error = %e, "batch aborted by the database; running it again");
            }
            _ => break,
        }
    }
    if ran.outcomes.is_ok() && ran.effects.recount {
        ran.counts = Some(queue::count_pending(&mut *conn).await.map_err(Into::into));
    }
    ran
}

/// Commits one batch; false if it failed (and nothing of it was written).
async fn commit_batch(db: &mut Db, pending: &mut Batch, ctx: &Context) -> bool {
    let size = pending.requests.len() + pending.ops.len();
    for trace in pending
        .requests
        .iter()
        .filter_map(|(r, _)| r.trace.as_ref())
    {
        trace.span.record("batch", size);
        let waited = trace.queued.elapsed().as_micros();
        trace
            .span
            .record("wait_us", u64::try_from(waited).unwrap_or(u64::MAX));
    }
    let ran = match db {
        Db::Pg(conn) => run_pg(conn, pending, ctx).await,
        Db::Lite(thread) => {
            let (back, ran) = thread.run(std::mem::take(pending)).await;
            *pending = back;
            ran
        }
    };
    let Ran {
        outcomes,
        answers,
        effects,
        counts,
    } = ran;
    match counts {
        Some(Ok(counts)) => ctx.depth.replace(counts),
        // Committed all the same; the counts catch up at the next recount.
        Some(Err(e)) => tracing::warn!(error = %e, "counting pending deliveries failed"),
        None => {}
    }
    match outcomes {
        Ok(outcomes) => {
            tracing::trace!(size, "batch committed");
            for ((_, reply), outcome) in pending.requests.drain(..).zip(outcomes) {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(outcome));
                }
            }
            for (op, answer) in pending.ops.drain(..).zip(answers) {
                op.answer(answer);
            }
            let enqueued =
                effects.recount || effects.rescheduled || effects.deltas.values().any(|&d| d > 0);
            ctx.depth.apply(&effects.deltas);
            if enqueued {
                ctx.ready.notify_one();
                // Other nodes' dispatchers learn of them at once, not at their next poll.
                if let Db::Pg(conn) = db
                    && let Err(e) = crate::store::notices::deliveries_added(conn).await
                {
                    tracing::warn!(error = %e, "could not tell other nodes of new deliveries");
                }
            }
            true
        }
        Err(e) => {
            tracing::error!(size, error = %e, "batch commit failed; nothing of it was written");
            let err = CommitError::Database(e.to_string());
            for (_, reply) in pending.requests.drain(..) {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            for op in pending.ops.drain(..) {
                op.fail(&err);
            }
            false
        }
    }
}
