//! One delivery: the consumer's `message-handler` run by the persist stage,
//! which commits what it staged with the delivery's end (done, retried
//! later, or dead), or, when it fails, the end alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::{Instrument, info_span};

use super::Dispatcher;
use crate::catalog::Consumer;
use crate::pipeline::persist::{self, Attempt, Invocation, Invoked, Refused};
use crate::runtime::bindings::{Message, MessageError};
use crate::store::{DeliveryEnd, Due, Lease, Outcome, StageTimes, Staging};
use crate::telemetry;

/// A leased delivery to its consumer.
struct Delivery<'a> {
    dispatcher: &'a Dispatcher,
    consumer: &'a Consumer,
    message: Message,
    lease: Lease,
    /// This delivery's attempt number, counted by its claims.
    attempt: u32,
    /// Consumer runs that led to the message.
    hops: u32,
    invoked: Invoked,
}

/// Runs one delivery to its commit. Re-runs the function after a write
/// conflict, as the request pipeline does.
pub(super) async fn consume(
    dispatcher: &Dispatcher,
    consumer: &Consumer,
    due: Due,
    lease: Lease,
    attempt: u32,
) {
    let function = &consumer.function;
    let request_id = uuid::Uuid::now_v7().to_string();
    let span = info_span!(
        "message",
        request_id = %request_id,
        tenant = %due.tenant,
        function = %due.function,
        topic = %due.topic,
        message_id = %due.message_id,
        version = function.version,
        attempt,
        outcome = Empty,
        otel.name = Empty,
        otel.kind = "consumer",
    );
    if telemetry::enabled() {
        span.record("otel.name", format!("message {}", due.topic));
        if let Some(parent) = &due.trace {
            telemetry::continue_from_traceparent(&span, parent);
        }
    }
    let invoked = Invoked {
        request_id,
        tenant: function.tenant.clone(),
        function: function.name.clone(),
        route: Arc::from(format!("message {}", due.topic)),
        started: Instant::now(),
        timeout: Duration::from_millis(function.limits.timeout_ms),
        hops: due.hops.saturating_add(1),
        stages: StageTimes::default(),
    };
    let held = lease.clone();
    let delivery = Delivery {
        dispatcher,
        consumer,
        message: Message {
            id: due.message_id,
            topic: due.topic,
            payload: due.payload,
            attempt,
            enqueued_at: u64::try_from(due.enqueued_at).unwrap_or(0),
            idempotency_key: due.idempotency_key,
        },
        lease,
        attempt,
        hops: due.hops,
        invoked,
    };
    match dispatcher.persist.run(delivery).instrument(span).await {
        Ok(()) | Err(persist::Error::Conflict { .. } | persist::Error::OverQuota { .. }) => {}
        Err(persist::Error::LeaseLost) => {
            tracing::warn!("lease expired before the commit; another runner has the message");
        }
        // The database went away: give the lease back as soon as it
        // answers again, rather than waiting the lease out.
        Err(persist::Error::Unavailable(e)) => {
            tracing::error!(error = %e, "commit failed; the lease goes back once the database answers");
            let lease_ms = dispatcher.queue.lease_ms;
            tokio::spawn(give_back(dispatcher.store.clone(), held, lease_ms));
        }
    }
}

/// Releases `lease` (and the attempt its claim counted) once the database
/// answers, trying until the lease would have run out anyway.
async fn give_back(store: crate::store::Store, lease: crate::store::Lease, lease_ms: u64) {
    let until = tokio::time::Instant::now() + Duration::from_millis(lease_ms);
    let mut pause = Duration::from_millis(100);
    while tokio::time::Instant::now() + pause < until {
        tokio::time::sleep(pause).await;
        match store.release(vec![lease.clone()]).await {
            Ok(released) => {
                if released > 0 {
                    tracing::info!(delivery = %lease.delivery_id, "lease given back after the database returned");
                    store.deliveries_ready().notify_one();
                }
                return;
            }
            Err(_) => pause = (pause * 2).min(Duration::from_secs(2)),
        }
    }
}

impl Invocation for Delivery<'_> {
    type Answer = ();

    fn invoked(&self) -> &Invoked {
        &self.invoked
    }

    async fn attempt(&mut self, n: u32, deadline: tokio::time::Instant) -> Attempt<()> {
        let d = self.dispatcher;
        let function = &self.consumer.function;
        if self.hops >= d.queue.max_hops {
            // Consumers feeding each other (or themselves) without end:
            // stop the chain here, where an operator can inspect and replay it.
            let error = format!(
                "loop-detected: the message is {} consumer runs from the request or \
                 schedule that began it; [queue] max_hops is {}",
                self.hops, d.queue.max_hops
            );
            tracing::warn!(hops = self.hops, "message dead-lettered: loop detected");
            d.metrics.message(
                &function.tenant,
                &function.name,
                Outcome::LoopDetected.as_str(),
            );
            return Attempt {
                staging: Staging::default(),
                outcome: Outcome::LoopDetected,
                status: 508,
                exceeded: None,
                delivery: Some(DeliveryEnd::Dead {
                    lease: self.lease.clone(),
                    error,
                }),
                answer: (),
            };
        }
        let ran = (d.runtime)
            .deliver(function, &d.store, &self.message, deadline)
            .instrument(info_span!("process", run = n))
            .await;
        let mut exceeded = None;
        let (staging, end, outcome) = match ran {
            Ok(finished) => match finished.result {
                Ok(()) => (
                    finished.staging,
                    DeliveryEnd::Done(self.lease.clone()),
                    Outcome::Ok,
                ),
                Err(MessageError::GiveUp(e)) => {
                    let end = DeliveryEnd::Dead {
                        lease: self.lease.clone(),
                        error: format!("gave up: {e}"),
                    };
                    (Staging::default(), end, Outcome::GiveUp)
                }
                Err(MessageError::Retry(e)) => {
                    let end = self.failed(format!("retry: {e}"));
                    (Staging::default(), end, Outcome::Retry)
                }
            },
            Err(e) => {
                exceeded = e.exceeded();
                (Staging::default(), self.failed(e.to_string()), e.outcome())
            }
        };
        if let DeliveryEnd::Retry { error, .. } | DeliveryEnd::Dead { error, .. } = &end {
            let dead = matches!(end, DeliveryEnd::Dead { .. });
            tracing::warn!(%outcome, error = %error, dead, "message failed");
        }
        d.metrics
            .message(&function.tenant, &function.name, outcome.as_str());
        Attempt {
            staging,
            outcome,
            status: if outcome == Outcome::Ok { 200 } else { 500 },
            exceeded,
            delivery: Some(end),
            answer: (),
        }
    }

    fn refused(&self, why: &persist::Error) -> Refused {
        let (status, end) = match why {
            persist::Error::Conflict { .. } | persist::Error::LeaseLost => (
                409,
                Some(self.failed("write conflicts on every run".into())),
            ),
            // Retried later: the tenant may free space or get a larger quota.
            persist::Error::OverQuota {
                used,
                adding,
                quota,
            } => (
                507,
                Some(self.failed(format!(
                    "storage quota: {used} of {quota} bytes stored, the writes add {adding}"
                ))),
            ),
            // The lease runs out and the message is delivered again.
            persist::Error::Unavailable(_) => (503, None),
        };
        Refused {
            status,
            delivery: end,
        }
    }
}

impl Delivery<'_> {
    /// How this attempt ends after failing: retried later, or dead.
    fn failed(&self, error: String) -> DeliveryEnd {
        self.consumer.failed(&self.lease, self.attempt, error)
    }
}
