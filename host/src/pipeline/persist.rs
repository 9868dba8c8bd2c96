//! Persist: run an invocation to its commit. This is the commit policy,
//! for requests and message deliveries alike, and nowhere else:
//!
//! 1. run the function once more ([`Invocation::attempt`]: the process
//!    stage, and for a request the check that its answer can be sent);
//! 2. commit what it staged together with its invocation record (and a
//!    delivery's end) in one transaction — or, when it failed, its record
//!    alone (with a delivery's end): a failed run commits nothing it staged;
//! 3. on a write conflict, run it again, from the first conflict on holding
//!    the contended document's [`Contention`] lock, up to
//!    `runtime.max_conflict_retries` re-runs;
//! 4. one deadline for every run: conflicts buy no time;
//! 5. when its effects cannot commit (they kept conflicting, would take the
//!    tenant past its storage quota, the database failed), record that, and
//!    end a delivery as its consumer's retry policy says.
//!
//! An invocation that staged nothing has nothing to lose: its record is
//! queued for the next batch and the caller does not wait for the fsync.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::field::Empty;
use tracing::{Instrument, Span, info_span};

use crate::catalog::RouteTarget;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::store::staging::DocKey;
use crate::store::{
    CommitError, CommitOutcome, CommitRequest, CommitTrace, DeliveryEnd, DocumentLock,
    InvocationRecord, Outcome, StageTimes, Staging, Store,
};
use crate::telemetry;

/// Why an invocation's effects did not commit. It has been recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Every run hit a write conflict.
    #[error(
        "the documents this request depends on kept changing; gave up after {attempts} attempts"
    )]
    Conflict {
        /// How many times the function ran.
        attempts: u32,
    },
    /// The writes would take the tenant past its storage quota.
    #[error(
        "the tenant stores {used} bytes of its {quota}-byte quota; this request would add {adding}"
    )]
    OverQuota {
        /// Bytes stored now.
        used: u64,
        /// What the invocation would add.
        adding: u64,
        /// The quota.
        quota: u64,
    },
    /// The delivery's lease ran out before the commit: another runner has
    /// the message, and its effects happen once, there. Nothing was recorded.
    #[error("the delivery's lease expired before the commit")]
    LeaseLost,
    /// The database could not commit.
    #[error(transparent)]
    Unavailable(#[from] CommitError),
}

impl Error {
    /// The outcome its record gives it.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Conflict { .. } | Error::LeaseLost => Outcome::Conflict,
            Error::OverQuota { .. } => Outcome::OverQuota,
            Error::Unavailable(_) => Outcome::Unavailable,
        }
    }

    /// The problem a client gets.
    pub fn problem(&self) -> Problem {
        match self {
            Error::Conflict { .. } | Error::LeaseLost => {
                Problem::new(409, "write-conflict", "Write conflict", self.to_string())
            }
            Error::OverQuota { .. } => Problem::new(
                507,
                "storage-quota-exceeded",
                "Storage quota exceeded",
                format!("{self}; nothing was written"),
            ),
            Error::Unavailable(_) => Problem::new(
                503,
                "store-unavailable",
                "Store unavailable",
                "the changes could not be committed; nothing was written",
            )
            .retry_after(Duration::from_secs(1)),
        }
    }
}

/// What an invocation is, as its record says.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// The request id (for a delivery, the delivery run's own).
    pub request_id: String,
    /// The function's tenant.
    pub tenant: Arc<str>,
    /// The function.
    pub function: Arc<str>,
    /// `METHOD /tenant/pattern`, or `message <topic>`.
    pub route: Arc<str>,
    /// When it was received (for a delivery: when the run began).
    pub started: Instant,
    /// The time all its runs together may take.
    pub timeout: Duration,
    /// Consumer runs that led to what it sends and writes (see `CommitRequest::hops`).
    pub hops: u32,
    /// The times of the stages before the function (a request's).
    pub stages: StageTimes,
}

impl Invoked {
    /// A request to `target`, received at `started`, that took `stages` to
    /// get to its function.
    pub fn request(
        target: &RouteTarget,
        request_id: &str,
        started: Instant,
        stages: StageTimes,
    ) -> Self {
        let function = &target.function;
        Self {
            request_id: request_id.to_owned(),
            tenant: function.tenant.clone(),
            function: function.name.clone(),
            route: target.name.clone(),
            started,
            timeout: Duration::from_millis(function.limits.timeout_ms),
            hops: 0,
            stages,
        }
    }
}

/// One run of the function, ready for the commit.
pub struct Attempt<A> {
    /// What it staged; committed only if the run succeeded.
    pub staging: Staging,
    /// How the run ended.
    pub outcome: Outcome,
    /// The status the record gives it.
    pub status: u16,
    /// The limit it went over, if that is how it ended.
    pub exceeded: Option<&'static str>,
    /// For a delivery: how the delivery ends if this commits.
    pub delivery: Option<DeliveryEnd>,
    /// What the caller gets once it is settled.
    pub answer: A,
}

/// How an invocation whose effects were refused is recorded and, for a
/// delivery, ended.
pub struct Refused {
    /// The status its record gives it.
    pub status: u16,
    /// For a delivery: how it ends instead (retried later, or dead).
    pub delivery: Option<DeliveryEnd>,
}

/// One kind of invocation persist runs to a commit: a request, a delivery.
pub trait Invocation: Send {
    /// What a settled run hands back to the caller.
    type Answer: Send;

    /// What it is, for its record.
    fn invoked(&self) -> &Invoked;

    /// Runs the function for the `n`th time (from 1), stopping it at `deadline`.
    fn attempt(
        &mut self,
        n: u32,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Attempt<Self::Answer>> + Send;

    /// How it is recorded and ended when its effects are refused for `why`.
    fn refused(&self, why: &Error) -> Refused;
}

/// The commit policy and what it needs: the store, the contention locks
/// and the re-run allowance.
pub struct Persist {
    store: Store,
    contention: Contention,
    max_conflict_retries: u32,
    metrics: Arc<Metrics>,
}

impl Persist {
    /// Commits through `store`; an invocation runs again at most
    /// `max_conflict_retries` times after write conflicts.
    pub fn new(store: Store, max_conflict_retries: u32, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            contention: Contention::default(),
            max_conflict_retries,
            metrics,
        }
    }

    /// Runs `invocation` until one of its runs is settled: committed (its
    /// effects if it succeeded, its record if it failed), or refused.
    pub async fn run<I: Invocation>(&self, mut invocation: I) -> Result<I::Answer, Error> {
        let (tenant, timeout) = {
            let invoked = invocation.invoked();
            (invoked.tenant.clone(), invoked.timeout)
        };
        let deadline = tokio::time::Instant::now() + timeout;
        // Held from the first conflict on: see `Contention`.
        let mut serialized = None;
        let mut n = 0;
        let mut ran = Duration::ZERO;
        loop {
            n += 1;
            let running = Instant::now();
            let attempt = invocation.attempt(n, deadline).await;
            ran += running.elapsed();
            let ok = attempt.outcome == Outcome::Ok;
            let record = record(
                invocation.invoked(),
                attempt.status,
                attempt.outcome,
                attempt.exceeded,
                (n, ran),
            );
            let staging = if ok {
                attempt.staging
            } else {
                Staging::default()
            };
            Span::current().record("outcome", attempt.outcome.as_str());
            if staging.is_empty() && attempt.delivery.is_none() {
                self.record_only(record).await;
                return Ok(attempt.answer);
            }
            let stage = Instant::now();
            let span = info_span!("persist", batch = Empty, wait_us = Empty);
            let trace = telemetry::traceparent(&Span::current()).map(|traceparent| CommitTrace {
                traceparent,
                span: span.clone(),
                queued: tokio::time::Instant::now(),
            });
            let committed = (self.store.committer())
                .commit(CommitRequest {
                    staging,
                    record,
                    delivery: attempt.delivery,
                    hops: invocation.invoked().hops,
                    trace,
                })
                .instrument(span)
                .await;
            if ok {
                self.metrics.stage_done("persist", stage);
            }
            let refused = match committed {
                Ok(CommitOutcome::Committed) => return Ok(attempt.answer),
                Ok(CommitOutcome::Conflict(key)) if n <= self.max_conflict_retries => {
                    tracing::debug!(attempts = n, collection = %key.collection, key = %key.key,
                        "write conflict; running the function again");
                    if serialized.is_none() {
                        serialized = Some(self.contention.lock(&self.store, &tenant, &key).await);
                    }
                    continue;
                }
                Ok(CommitOutcome::Conflict(_)) => Error::Conflict { attempts: n },
                Ok(CommitOutcome::OverQuota {
                    used,
                    adding,
                    quota,
                }) => Error::OverQuota {
                    used,
                    adding,
                    quota,
                },
                Ok(CommitOutcome::LeaseLost) => return Err(Error::LeaseLost),
                Err(e) => Error::Unavailable(e),
            };
            self.refuse(&invocation, &refused, (n, ran)).await;
            return Err(refused);
        }
    }

    /// Records a refusal, with the delivery's end its consumer chose.
    async fn refuse<I: Invocation>(&self, invocation: &I, why: &Error, runs: (u32, Duration)) {
        Span::current().record("outcome", why.outcome().as_str());
        let refused = invocation.refused(why);
        let record = record(
            invocation.invoked(),
            refused.status,
            why.outcome(),
            None,
            runs,
        );
        let Some(end) = refused.delivery else {
            self.record_only(record).await;
            return;
        };
        let request = CommitRequest {
            staging: Staging::default(),
            record,
            delivery: Some(end),
            hops: 0,
            trace: None,
        };
        if let Err(e) = self.store.committer().commit(request).await {
            tracing::error!(error = %e, "commit failed");
        }
    }

    /// Queues the record of an invocation with nothing to commit, without
    /// waiting for it.
    async fn record_only(&self, record: InvocationRecord) {
        let request = CommitRequest {
            staging: Staging::default(),
            record,
            delivery: None,
            hops: 0,
            trace: None,
        };
        self.store.committer().submit(request).await;
    }
}

fn record(
    invoked: &Invoked,
    status: u16,
    outcome: Outcome,
    exceeded: Option<&'static str>,
    (attempts, ran): (u32, Duration),
) -> InvocationRecord {
    InvocationRecord {
        request_id: invoked.request_id.clone(),
        tenant: invoked.tenant.clone(),
        function: invoked.function.clone(),
        route: invoked.route.clone(),
        status,
        outcome,
        exceeded,
        attempts,
        duration_us: StageTimes::micros(invoked.started.elapsed()),
        stages: StageTimes {
            process_us: StageTimes::micros(ran),
            ..invoked.stages
        },
    }
}

/// Serialises the re-runs of invocations that conflicted on the same
/// document. Optimistic concurrency alone lets N clients of one hot document
/// waste O(N²) runs (each round only one wins); re-runs that hold the
/// document's lock read fresh data and commit one after another, so every
/// re-run makes progress. First attempts stay lock-free.
struct Contention {
    stripes: Vec<Arc<Mutex<()>>>,
}

impl Default for Contention {
    fn default() -> Self {
        Self {
            stripes: (0..256).map(|_| Arc::new(Mutex::new(()))).collect(),
        }
    }
}

/// Held while an invocation re-runs after a conflict on one document.
struct ContentionGuard {
    _local: OwnedMutexGuard<()>,
    _cluster: Option<DocumentLock>,
}

impl Contention {
    /// Waits for the lock that covers `key` of `tenant`: this node's, then,
    /// on a database other nodes share, the cluster's, so re-runs on one
    /// document from every node take turns.
    async fn lock(&self, store: &Store, tenant: &str, key: &DocKey) -> ContentionGuard {
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((
            tenant,
            &key.collection,
            &key.key,
        ));
        let stripe = &self.stripes[(hash % self.stripes.len() as u64) as usize];
        let local = stripe.clone().lock_owned().await;
        // Without it re-runs still commit correctly, only less fairly.
        let locked = store.lock_document(tenant, &key.collection, &key.key);
        let cluster = locked.await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no cluster-wide re-run lock; re-running without it");
            None
        });
        ContentionGuard {
            _local: local,
            _cluster: cluster,
        }
    }
}
