//! What happens after a commit: messages, document events and schedule ticks
//! delivered to consumer functions.
//!
//! A delivery runs its own short pipeline: **claim** (lease due deliveries,
//! within each function's and the host's concurrency) → **process** (the
//! function's `message-handler` on a fresh instance) → **persist** (its
//! staged writes, its sends and the delivery's end in one transaction).
//! Delivery is at least once; a message's effects commit exactly once,
//! because the commit that carries them also removes the delivery, and only
//! while the runner still holds its lease.

pub mod schedule;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, info_span};

use crate::app::App;
use crate::config::QueueConfig;
use crate::manifest::MessagesManifest;
use crate::runtime::bindings::{Message, MessageError};
use crate::runtime::{Function, Invocation};
use crate::staging::Staging;
use crate::store::{
    Claim, CommitOutcome, CommitRequest, DeliveryEnd, Due, InvocationRecord, Lease, now_ms,
};

/// How long shutdown waits for messages being handled.
const DRAIN: Duration = Duration::from_secs(10);

/// A function that consumes messages, with its retry policy.
#[derive(Clone)]
pub struct Consumer {
    /// The compiled function.
    pub function: Function,
    /// Deliveries before the dead letters.
    pub max_attempts: u32,
    /// First retry delay in milliseconds.
    pub backoff_ms: u64,
    /// Longest retry delay in milliseconds.
    pub max_backoff_ms: u64,
    /// Most of its messages handled at once.
    pub concurrency: usize,
}

impl Consumer {
    /// The policy from the manifest's `[messages]`, defaults from `config`.
    pub fn new(
        function: Function,
        manifest: Option<&MessagesManifest>,
        config: &QueueConfig,
    ) -> Self {
        Self {
            function,
            max_attempts: manifest
                .and_then(|m| m.max_attempts)
                .unwrap_or(config.max_attempts)
                .max(1),
            backoff_ms: manifest
                .and_then(|m| m.backoff_ms)
                .unwrap_or(config.backoff_ms),
            max_backoff_ms: manifest
                .and_then(|m| m.max_backoff_ms)
                .unwrap_or(config.max_backoff_ms),
            concurrency: manifest
                .and_then(|m| m.concurrency)
                .unwrap_or(config.concurrency)
                .max(1),
        }
    }

    /// Delay before attempt `attempt + 1`: exponential, capped, with jitter
    /// ("equal jitter": at least half the delay, so retries never bunch up
    /// at zero, and never more than the whole).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
        let delay = exp.min(self.max_backoff_ms.max(self.backoff_ms));
        let half = delay / 2;
        let mut bytes = [0u8; 8];
        let random = match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => 0,
        };
        Duration::from_millis(half + random % (delay - half + 1))
    }

    /// How a failed attempt ends: another try later, or the dead letters.
    fn failed(&self, lease: &Lease, attempt: u32, error: String) -> DeliveryEnd {
        if attempt >= self.max_attempts {
            let error = format!("{error} (attempt {attempt} of {})", self.max_attempts);
            return DeliveryEnd::Dead {
                lease: lease.clone(),
                error,
            };
        }
        let delay = i64::try_from(self.backoff(attempt).as_millis()).unwrap_or(i64::MAX);
        DeliveryEnd::Retry {
            lease: lease.clone(),
            at: now_ms().saturating_add(delay),
            error,
        }
    }
}

/// A consumer's address: (tenant, function).
pub type ConsumerKey = (Arc<str>, Arc<str>);

/// A leased delivery: the message, the lease and the attempt number.
type Claimed = (Due, Lease, u32);

/// What the dispatcher holds: deliveries running and deliveries leased
/// ahead, per consumer.
///
/// Leasing is a write, so the dispatcher leases ahead in batches (up to
/// twice a function's concurrency) instead of one delivery per free slot:
/// a completion then starts the next message at once, without waiting for a
/// transaction.
#[derive(Default)]
struct Slots {
    running: HashMap<ConsumerKey, usize>,
    total: usize,
    ahead: HashMap<ConsumerKey, VecDeque<Claimed>>,
}

impl Slots {
    fn finished(&mut self, key: &ConsumerKey) {
        if let Some(n) = self.running.get_mut(key) {
            *n = n.saturating_sub(1);
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Consumers whose leased-ahead deliveries ran low, with how many more
    /// to lease for each.
    fn wanted(&self, app: &App) -> Vec<(Arc<str>, Arc<str>, usize)> {
        let catalog = app.catalog.load();
        catalog
            .consumers
            .iter()
            .filter_map(|(key, c)| {
                let ahead = self.ahead.get(key).map_or(0, VecDeque::len);
                if ahead > c.concurrency / 2 {
                    return None;
                }
                let running = self.running.get(key).copied().unwrap_or(0);
                let room = (2 * c.concurrency).saturating_sub(running + ahead);
                (room > 0).then(|| (key.0.clone(), key.1.clone(), room))
            })
            .collect()
    }

    /// Starts leased deliveries while their function and the host have room.
    fn start(
        &mut self,
        app: &Arc<App>,
        tasks: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<ConsumerKey>,
    ) {
        let max = app.queue.max_concurrency.max(1);
        let catalog = app.catalog.load();
        for (key, queue) in &mut self.ahead {
            // Taken down since it was leased: the lease expires and, should
            // the function come back, the message is delivered then.
            let Some(consumer) = catalog.consumers.get(key) else {
                continue;
            };
            let running = self.running.entry(key.clone()).or_default();
            while self.total < max && *running < consumer.concurrency {
                let Some((due, lease, attempt)) = queue.pop_front() else {
                    break;
                };
                *running += 1;
                self.total += 1;
                let (app, done, key) = (app.clone(), done.clone(), key.clone());
                let consumer = consumer.clone();
                tasks.spawn(async move {
                    consume(&app, &consumer, due, lease, attempt).await;
                    let _ = done.send(key);
                });
            }
        }
    }

    /// Gives back the leases of deliveries that never started.
    async fn release(self, app: &App) {
        let leases: Vec<Lease> = self
            .ahead
            .into_values()
            .flatten()
            .map(|(_, lease, _)| lease)
            .collect();
        if leases.is_empty() {
            return;
        }
        if let Err(e) = app.store.release(leases).await {
            tracing::warn!(error = %e, "giving back unstarted deliveries failed; their leases will expire");
        }
    }
}

/// Claims due deliveries and runs them until `stop` turns true, then waits
/// (up to 10 s) for the ones running.
pub async fn dispatch(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut changes = app.changes.subscribe();
    let lease_ms = i64::try_from(app.queue.lease_ms).unwrap_or(i64::MAX);
    let poll = Duration::from_millis(app.queue.poll_ms.max(10));
    let mut slots = Slots::default();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ConsumerKey>();
    let mut tasks = JoinSet::new();
    // `None`: unknown; `Some(None)`: nothing due later.
    let mut next_due: Option<Option<i64>> = None;
    loop {
        while let Ok(key) = done_rx.try_recv() {
            slots.finished(&key);
        }
        while tasks.try_join_next().is_some() {}
        if *stop.borrow() {
            break;
        }
        slots.start(&app, &mut tasks, &done_tx);
        let wanted = slots.wanted(&app);
        let mut more = false;
        if !wanted.is_empty() {
            match claim(&app, &wanted, lease_ms).await {
                Ok(claimed) => {
                    // As many as asked for: more may be waiting.
                    more = !claimed.is_empty() && claimed.len() >= wanted.iter().map(|w| w.2).sum();
                    for claimed in claimed {
                        let key: ConsumerKey = (
                            claimed.0.tenant.as_str().into(),
                            claimed.0.function.as_str().into(),
                        );
                        slots.ahead.entry(key).or_default().push_back(claimed);
                    }
                    slots.start(&app, &mut tasks, &done_tx);
                }
                Err(e) => tracing::error!(error = %e, "claiming deliveries failed"),
            }
        }
        if more {
            continue;
        }
        // The next due time changes only when deliveries are added or
        // rescheduled (the committer says so) or when it has passed: a
        // completion alone does not need the query.
        let now = now_ms();
        let known = match next_due {
            Some(Some(t)) => t > now,
            Some(None) => true,
            None => false,
        };
        if !known {
            next_due = Some(app.store.next_due().await.unwrap_or(None));
        }
        let wake = match next_due.flatten() {
            Some(next) if next > now => {
                Duration::from_millis(u64::try_from(next - now).unwrap_or(0)).min(poll)
            }
            _ => poll,
        };
        tokio::select! {
            () = app.store.deliveries_ready().notified() => next_due = None,
            Some(key) = done_rx.recv() => slots.finished(&key),
            // A deploy may have added a consumer with messages waiting.
            _ = changes.changed() => next_due = None,
            () = tokio::time::sleep(wake) => next_due = None,
            _ = stop.changed() => {}
        }
    }
    slots.release(&app).await;
    if !tasks.is_empty() {
        tracing::info!(running = tasks.len(), "waiting for messages being handled");
    }
    let drained = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!("messages still being handled after {DRAIN:?}; their leases will expire");
    }
}

/// Finds due deliveries of the `wanted` functions (up to the number given
/// for each) and leases them.
async fn claim(
    app: &App,
    wanted: &[(Arc<str>, Arc<str>, usize)],
    lease_ms: i64,
) -> Result<Vec<Claimed>, String> {
    let due = app
        .store
        .due_deliveries(wanted)
        .await
        .map_err(|e| e.to_string())?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids = due.iter().map(|d| d.id.clone()).collect();
    let won = app
        .store
        .claim(Claim { ids, lease_ms })
        .await
        .map_err(|e| e.to_string())?;
    let mut by_id: HashMap<String, Due> = due.into_iter().map(|d| (d.id.clone(), d)).collect();
    Ok(won
        .into_iter()
        .filter_map(|(id, lease, attempt)| by_id.remove(&id).map(|d| (d, lease, attempt)))
        .collect())
}

/// Runs one delivery: the function, then one commit of its effects and the
/// delivery's end. Re-runs the function after a write conflict, as the
/// HTTP pipeline does.
async fn consume(app: &App, consumer: &Consumer, due: Due, lease: Lease, attempt: u32) {
    let request_id = uuid::Uuid::now_v7().to_string();
    let span = info_span!(
        "message",
        request_id = %request_id,
        tenant = %due.tenant,
        function = %due.function,
        topic = %due.topic,
        message_id = %due.message_id,
        version = consumer.function.version,
        attempt,
    );
    let started = Instant::now();
    let message = Message {
        id: due.message_id,
        topic: due.topic,
        payload: due.payload,
        attempt,
        enqueued_at: u64::try_from(due.enqueued_at).unwrap_or(0),
        idempotency_key: due.idempotency_key,
    };
    async {
        let mut runs = 0;
        let mut serialized = None;
        loop {
            runs += 1;
            let mut exceeded = None;
            let outcome = app
                .runtime
                .deliver(&consumer.function, &app.store, &message)
                .instrument(info_span!("process", run = runs))
                .await;
            let (staging, end, label) = match outcome {
                Ok(Invocation {
                    result: Ok(()),
                    staging,
                }) => (staging, DeliveryEnd::Done(lease.clone()), "ok"),
                Ok(Invocation {
                    result: Err(MessageError::GiveUp(e)),
                    ..
                }) => {
                    let end = DeliveryEnd::Dead {
                        lease: lease.clone(),
                        error: format!("gave up: {e}"),
                    };
                    (Staging::default(), end, "give-up")
                }
                Ok(Invocation {
                    result: Err(MessageError::Retry(e)),
                    ..
                }) => {
                    let end = consumer.failed(&lease, attempt, format!("retry: {e}"));
                    (Staging::default(), end, "retry")
                }
                Err(e) => {
                    exceeded = e.exceeded();
                    let label = e.outcome();
                    let end = consumer.failed(&lease, attempt, e.to_string());
                    (Staging::default(), end, label)
                }
            };
            if let DeliveryEnd::Retry { error, .. } | DeliveryEnd::Dead { error, .. } = &end {
                tracing::warn!(outcome = label, error = %error, dead = matches!(end, DeliveryEnd::Dead { .. }), "message failed");
            }
            let function = &consumer.function;
            app.metrics.message(&function.tenant, &function.name, label);
            let status = if label == "ok" { 200 } else { 500 };
            let mut record = record(consumer, &request_id, &message.topic, status, label, runs, started);
            record.exceeded = exceeded;
            let committed = app
                .store
                .committer()
                .commit(CommitRequest {
                    staging,
                    record,
                    delivery: Some(end),
                })
                .instrument(info_span!("persist"))
                .await;
            match committed {
                Ok(CommitOutcome::Committed) => return,
                Ok(CommitOutcome::Conflict(key)) if runs <= app.max_conflict_retries => {
                    tracing::debug!(runs, collection = %key.collection, key = %key.key,
                        "write conflict; running the function again");
                    if serialized.is_none() {
                        serialized = Some(
                            app.contention
                                .lock(&app.store, &consumer.function.tenant, &key)
                                .await,
                        );
                    }
                }
                Ok(CommitOutcome::Conflict(_)) => {
                    let end = consumer.failed(&lease, attempt, "write conflicts on every run".into());
                    end_without_effects(app, consumer, &request_id, &message.topic, end, runs, started).await;
                    return;
                }
                // Retried later: the tenant may free space or get a larger quota.
                Ok(CommitOutcome::OverQuota { used, adding, quota }) => {
                    let error = format!("storage quota: {used} of {quota} bytes stored, the writes add {adding}");
                    let end = consumer.failed(&lease, attempt, error);
                    end_without_effects(app, consumer, &request_id, &message.topic, end, runs, started).await;
                    return;
                }
                Ok(CommitOutcome::LeaseLost) => {
                    tracing::warn!("lease expired before the commit; another runner has the message");
                    return;
                }
                Err(e) => {
                    // The lease runs out and the message is delivered again.
                    tracing::error!(error = %e, "commit failed");
                    return;
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// The invocation record of a delivery.
fn record(
    consumer: &Consumer,
    request_id: &str,
    topic: &str,
    status: u16,
    outcome: &'static str,
    runs: u32,
    started: Instant,
) -> InvocationRecord {
    InvocationRecord {
        request_id: request_id.to_owned(),
        tenant: consumer.function.tenant.clone(),
        function: consumer.function.name.clone(),
        route: format!("message {topic}").into(),
        status,
        outcome,
        exceeded: None,
        attempts: runs,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

/// Commits only the delivery's end and the record: for a delivery whose
/// function kept conflicting.
async fn end_without_effects(
    app: &App,
    consumer: &Consumer,
    request_id: &str,
    topic: &str,
    end: DeliveryEnd,
    runs: u32,
    started: Instant,
) {
    let request = CommitRequest {
        staging: Staging::default(),
        record: record(consumer, request_id, topic, 409, "conflict", runs, started),
        delivery: Some(end),
    };
    if let Err(e) = app.store.committer().commit(request).await {
        tracing::error!(error = %e, "commit failed");
    }
}

/// How often delivered messages and expired idempotency keys are dropped.
const COLLECT_EVERY: Duration = Duration::from_secs(60);

/// Drops delivered messages older than the idempotency window, every
/// minute, until `stop` turns true.
pub async fn collect_garbage(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(COLLECT_EVERY) => {}
            _ = stop.changed() => return,
        }
        match app.store.collect_garbage().await {
            Ok(0) => {}
            Ok(dropped) => tracing::debug!(dropped, "delivered messages dropped"),
            Err(e) => tracing::warn!(error = %e, "dropping delivered messages failed"),
        }
    }
}
