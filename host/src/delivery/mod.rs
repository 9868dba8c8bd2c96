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

mod consume;
pub mod schedule;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::catalog::{ConsumerKey, Live};
use crate::config::QueueConfig;
use crate::metrics::Metrics;
use crate::pipeline::persist::Persist;
use crate::runtime::Runtime;
use crate::store::{Claim, Due, Lease, Store, now_ms};

/// What delivery needs: the live consumers, the store, the runtime and the
/// commit policy it shares with the request pipeline.
pub struct Dispatcher {
    /// The consumers and schedules live now.
    pub live: Arc<Live>,
    /// Where deliveries are leased and ended.
    pub store: Store,
    /// Runs the consumers.
    pub runtime: Arc<Runtime>,
    /// Commits what a consumer staged with the delivery's end.
    pub persist: Arc<Persist>,
    /// Message counts.
    pub metrics: Arc<Metrics>,
    /// Delivery settings.
    pub queue: QueueConfig,
}

/// How long shutdown waits for messages being handled.
const DRAIN: Duration = Duration::from_secs(10);

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
    /// The tenant whose delivery started last: the next turn is the one after.
    last_tenant: Option<Arc<str>>,
    /// Each tenant's consumer that started last.
    last_consumer: HashMap<Arc<str>, ConsumerKey>,
}

/// `items` (in order) rotated to begin just after `last`, or at the first
/// when `last` is not among them.
fn after<'a, T: Ord + Clone + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    last: Option<&T>,
) -> Vec<T> {
    let items: Vec<T> = items.into_iter().cloned().collect();
    let split = last.map_or(0, |last| items.partition_point(|item| item <= last));
    let mut turns = items[split..].to_vec();
    turns.extend_from_slice(&items[..split]);
    turns
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
    fn wanted(&self, d: &Dispatcher) -> Vec<(Arc<str>, Arc<str>, usize)> {
        let catalog = d.live.load();
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

    /// Starts leased deliveries while their function and the host have
    /// room. Tenants take turns, one delivery each, beginning after the
    /// tenant served last, and so do a tenant's consumers: a tenant with a
    /// long backlog, or many consumers, cannot hold every slot of the host
    /// while another tenant's messages wait.
    fn start(
        &mut self,
        d: &Arc<Dispatcher>,
        tasks: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<ConsumerKey>,
    ) {
        let max = d.queue.max_concurrency.max(1);
        let catalog = d.live.load();
        // Consumers with deliveries waiting, by tenant. Taken down since it
        // was leased: the lease expires and, should the function come back,
        // the message is delivered then.
        let mut waiting: BTreeMap<Arc<str>, Vec<ConsumerKey>> = BTreeMap::new();
        for (key, queue) in &self.ahead {
            if !queue.is_empty() && catalog.consumers.contains_key(key) {
                waiting.entry(key.0.clone()).or_default().push(key.clone());
            }
        }
        for keys in waiting.values_mut() {
            keys.sort();
        }
        // A tenant with nothing waiting starts its next turn at its first consumer.
        self.last_consumer
            .retain(|tenant, _| waiting.contains_key(tenant));
        while self.total < max {
            let mut started = false;
            for tenant in after(waiting.keys(), self.last_tenant.as_ref()) {
                if self.total >= max {
                    break;
                }
                let keys = waiting.get(&tenant).map_or(&[][..], Vec::as_slice);
                let last = self.last_consumer.get(&tenant);
                let next = after(keys.iter(), last).into_iter().find_map(|key| {
                    let consumer = catalog.consumers.get(&key)?;
                    let free = self.running.get(&key).copied().unwrap_or(0) < consumer.concurrency;
                    let ready = self.ahead.get(&key).is_some_and(|q| !q.is_empty());
                    (free && ready).then(|| (key, consumer.clone()))
                });
                let Some((key, consumer)) = next else {
                    continue;
                };
                let Some((due, lease, attempt)) =
                    self.ahead.get_mut(&key).and_then(VecDeque::pop_front)
                else {
                    continue;
                };
                *self.running.entry(key.clone()).or_default() += 1;
                self.total += 1;
                self.last_consumer.insert(tenant.clone(), key.clone());
                self.last_tenant = Some(tenant);
                started = true;
                let (d, done) = (d.clone(), done.clone());
                tasks.spawn(async move {
                    consume::consume(&d, &consumer, due, lease, attempt).await;
                    let _ = done.send(key);
                });
            }
            if !started {
                break;
            }
        }
    }

    /// Gives back the leases of deliveries that never started.
    async fn release(self, d: &Dispatcher) {
        let leases: Vec<Lease> = self
            .ahead
            .into_values()
            .flatten()
            .map(|(_, lease, _)| lease)
            .collect();
        if leases.is_empty() {
            return;
        }
        if let Err(e) = d.store.release(leases).await {
            tracing::warn!(error = %e, "giving back unstarted deliveries failed; their leases will expire");
        }
    }
}

/// Claims due deliveries and runs them until `stop` turns true, then waits
/// (up to 10 s) for the ones running.
pub async fn dispatch(d: Arc<Dispatcher>, mut stop: watch::Receiver<bool>) {
    let mut changes = d.live.changes();
    let lease_ms = i64::try_from(d.queue.lease_ms).unwrap_or(i64::MAX);
    let poll = Duration::from_millis(d.queue.poll_ms.max(10));
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
        slots.start(&d, &mut tasks, &done_tx);
        let wanted = slots.wanted(&d);
        let mut more = false;
        if !wanted.is_empty() {
            match claim(&d.store, &wanted, lease_ms).await {
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
                    slots.start(&d, &mut tasks, &done_tx);
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
            next_due = Some(d.store.next_due().await.unwrap_or(None));
        }
        let wake = match next_due.flatten() {
            Some(next) if next > now => {
                Duration::from_millis(u64::try_from(next - now).unwrap_or(0)).min(poll)
            }
            _ => poll,
        };
        tokio::select! {
            () = d.store.deliveries_ready().notified() => next_due = None,
            Some(key) = done_rx.recv() => slots.finished(&key),
            // A deploy may have added a consumer with messages waiting.
            _ = changes.changed() => next_due = None,
            () = tokio::time::sleep(wake) => next_due = None,
            _ = stop.changed() => {}
        }
    }
    slots.release(&d).await;
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
    store: &Store,
    wanted: &[(Arc<str>, Arc<str>, usize)],
    lease_ms: i64,
) -> Result<Vec<Claimed>, String> {
    let due = store
        .due_deliveries(wanted)
        .await
        .map_err(|e| e.to_string())?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids = due.iter().map(|d| d.id.clone()).collect();
    let won = store
        .claim(Claim { ids, lease_ms })
        .await
        .map_err(|e| e.to_string())?;
    let mut by_id: HashMap<String, Due> = due.into_iter().map(|d| (d.id.clone(), d)).collect();
    Ok(won
        .into_iter()
        .filter_map(|(id, lease, attempt)| by_id.remove(&id).map(|d| (d, lease, attempt)))
        .collect())
}

/// How often delivered messages and expired idempotency keys are dropped.
const COLLECT_EVERY: Duration = Duration::from_secs(60);

/// Drops delivered messages older than the idempotency window, and stored
/// answers to `Idempotency-Key` requests older than `answers_window`,
/// every minute, until `stop` turns true.
pub async fn collect_garbage(
    store: Store,
    answers_window: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(COLLECT_EVERY) => {}
            _ = stop.changed() => return,
        }
        match store.collect_garbage(answers_window).await {
            Ok(0) => {}
            Ok(dropped) => tracing::debug!(dropped, "delivered messages dropped"),
            Err(e) => tracing::warn!(error = %e, "dropping delivered messages failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::after;

    #[test]
    fn turns_begin_after_the_last_served() {
        let items = [1, 3, 5, 7];
        assert_eq!(after(&items, None), [1, 3, 5, 7]);
        assert_eq!(after(&items, Some(&3)), [5, 7, 1, 3]);
        assert_eq!(after(&items, Some(&7)), [1, 3, 5, 7]);
        // Gone since it was served: the turn goes to the next one after it.
        assert_eq!(after(&items, Some(&4)), [5, 7, 1, 3]);
        assert_eq!(after(&[] as &[i32], Some(&4)), [] as [i32; 0]);
    }
}
