//! What a function consumes: its consumer (with the retry policy of its
//! deliveries) and its schedules.

use std::sync::Arc;
use std::time::Duration;

use crate::config::QueueConfig;
use crate::config::manifest::{MessagesManifest, Schedule};
use crate::runtime::Function;
use crate::store::{DeliveryEnd, Lease, now_ms};

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
    pub fn failed(&self, lease: &Lease, attempt: u32, error: String) -> DeliveryEnd {
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

/// A schedule of a loaded function.
#[derive(Clone)]
pub struct Scheduled {
    /// The function's tenant.
    pub tenant: Arc<str>,
    /// The function.
    pub function: Arc<str>,
    /// The schedule.
    pub schedule: Schedule,
}
