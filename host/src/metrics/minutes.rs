//! The last hour, minute by minute, per tenant: requests, server errors,
//! client errors, latency quantiles, message runs and failures. Kept in
//! memory for the console's charts and `GET /v1/stats`; a restart starts
//! it empty, and each node has its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Minutes kept.
const KEPT: usize = 60;

/// Latency buckets: each 2^(1/4) wider than the one before, from 16 µs;
/// the last holds everything above about 16 s. A quantile is read to
/// within a bucket's width, about 19%.
const BUCKETS: usize = 81;

/// Per-minute figures of every tenant.
#[derive(Default)]
pub struct Minutes(Mutex<VecDeque<Minute>>);

/// One minute.
struct Minute {
    /// Unix minutes.
    at: u64,
    tenants: HashMap<String, Figures>,
}

/// One tenant's minute.
struct Figures {
    requests: u64,
    server_errors: u64,
    client_errors: u64,
    latency: [u32; BUCKETS],
    messages: u64,
    message_failures: u64,
}

impl Default for Figures {
    fn default() -> Self {
        Self {
            requests: 0,
            server_errors: 0,
            client_errors: 0,
            latency: [0; BUCKETS],
            messages: 0,
            message_failures: 0,
        }
    }
}

/// One tenant's minute, as `GET /v1/stats` gives it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TenantMinute {
    /// The tenant.
    pub tenant: String,
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx.
    pub server_errors: u64,
    /// Of which 4xx.
    pub client_errors: u64,
    /// Median latency, milliseconds; absent without requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Option<f64>,
    /// Message runs.
    pub messages: u64,
    /// Of which failed (retried or dead-lettered).
    pub message_failures: u64,
}

/// One minute of every tenant.
#[derive(Debug, Clone, Serialize)]
pub struct MinuteFigures {
    /// Its start, Unix milliseconds.
    pub minute: u64,
    /// The tenants that did anything in it.
    pub tenants: Vec<TenantMinute>,
}

impl Minutes {
    /// Counts a request of `tenant` answered with `status` after `took`.
    pub fn request(&self, tenant: &str, status: u16, took: Duration) {
        self.with(tenant, |f| {
            f.requests += 1;
            match status {
                500.. => f.server_errors += 1,
                400..=499 => f.client_errors += 1,
                _ => {}
            }
            f.latency[bucket(took)] += 1;
        });
    }

    /// Counts a message run of `tenant`; `failed` if it did not complete.
    pub fn message(&self, tenant: &str, failed: bool) {
        self.with(tenant, |f| {
            f.messages += 1;
            f.message_failures += u64::from(failed);
        });
    }

    fn with(&self, tenant: &str, update: impl FnOnce(&mut Figures)) {
        if tenant.is_empty() {
            return;
        }
        let now = unix_minute();
        let Ok(mut minutes) = self.0.lock() else {
            return;
        };
        if minutes.back().is_none_or(|m| m.at != now) {
            minutes.push_back(Minute {
                at: now,
                tenants: HashMap::new(),
            });
            while minutes.len() > KEPT {
                minutes.pop_front();
            }
        }
        if let Some(minute) = minutes.back_mut() {
            match minute.tenants.get_mut(tenant) {
                Some(figures) => update(figures),
                None => update(minute.tenants.entry(tenant.to_owned()).or_default()),
            }
        }
    }

    /// The minutes of the last hour that saw anything, oldest first; of
    /// `tenant` only if given.
    pub fn last_hour(&self, tenant: Option<&str>) -> Vec<MinuteFigures> {
        let oldest = unix_minute().saturating_sub(KEPT as u64 - 1);
        let Ok(minutes) = self.0.lock() else {
            return Vec::new();
        };
        minutes
            .iter()
            .filter(|m| m.at >= oldest)
            .map(|m| {
                let mut tenants: Vec<TenantMinute> = (m.tenants.iter())
                    .filter(|(name, _)| tenant.is_none_or(|t| t == name.as_str()))
                    .map(|(name, f)| TenantMinute {
                        tenant: name.clone(),
                        requests: f.requests,
                        server_errors: f.server_errors,
                        client_errors: f.client_errors,
                        p50_ms: quantile(&f.latency, 0.50),
                        p99_ms: quantile(&f.latency, 0.99),
                        messages: f.messages,
                        message_failures: f.message_failures,
                    })
                    .collect();
                tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
                MinuteFigures {
                    minute: m.at * 60_000,
                    tenants,
                }
            })
            .filter(|m| !m.tenants.is_empty())
            .collect()
    }
}

fn unix_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// The bucket of `took`: 4·log2(took / 16 µs), clamped.
fn bucket(took: Duration) -> usize {
    let units = took.as_secs_f64() / 16e-6;
    if units <= 1.0 {
        return 0;
    }
    ((units.log2() * 4.0).ceil() as usize).min(BUCKETS - 1)
}

/// The `q` quantile, in ms: the geometric middle of its bucket.
fn quantile(latency: &[u32; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in latency.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            let upper = 16e-3 * 2f64.powf(i as f64 / 4.0);
            let lower = if i == 0 {
                upper / 2.0
            } else {
                upper / 2f64.powf(0.25)
            };
            return Some(((upper * lower).sqrt() * 1000.0).round() / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_within_a_bucket() {
        let minutes = Minutes::default();
        for i in 1..=100u64 {
            // 1 ms to 100 ms: p50 about 50 ms, p99 about 99 ms.
            minutes.request("acme", 200, Duration::from_millis(i));
        }
        minutes.request("acme", 503, Duration::from_millis(1));
        minutes.request("acme", 404, Duration::from_millis(1));
        minutes.message("acme", true);
        minutes.request("", 404, Duration::from_millis(1));
        let hour = minutes.last_hour(None);
        assert_eq!(hour.len(), 1);
        let acme = &hour[0].tenants[0];
        assert_eq!((acme.tenant.as_str(), acme.requests), ("acme", 102));
        assert_eq!((acme.server_errors, acme.client_errors), (1, 1));
        assert_eq!((acme.messages, acme.message_failures), (1, 1));
        let p50 = acme.p50_ms.unwrap_or_default();
        let p99 = acme.p99_ms.unwrap_or_default();
        assert!((40.0..60.0).contains(&p50), "p50 {p50}");
        assert!((85.0..115.0).contains(&p99), "p99 {p99}");
        assert!(minutes.last_hour(Some("other")).is_empty());
    }
}
