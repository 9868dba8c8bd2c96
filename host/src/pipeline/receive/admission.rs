//! Admission, checked at the receive stage: per-tenant request rates (a
//! token bucket per tenant) and requests in flight per function and per
//! tenant. Both are per host: with several nodes, each node admits up to
//! the limit.
//!
//! Hand-written rather than `governor`: that crate fixes a quota per limiter,
//! and here every tenant has its own, changed at run time by the admin API;
//! a bucket is a few lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::Rate;
use crate::runtime::Function;

/// What admits requests: every tenant's rate and what is running.
pub struct Admission {
    rates: Rates,
    running: Concurrency,
    /// `[limits] tenant_concurrency`.
    tenant_concurrency: usize,
}

impl Admission {
    /// No rates yet; at most `tenant_concurrency` requests of one tenant at once.
    pub fn new(tenant_concurrency: usize) -> Self {
        Self {
            rates: Rates::default(),
            running: Concurrency::default(),
            tenant_concurrency,
        }
    }

    /// Sets (or, with `None`, removes) `tenant`'s rate.
    pub fn set_rate(&self, tenant: &str, rate: Option<Rate>) {
        self.rates.set(tenant, rate);
    }

    /// Takes a token for one request of `tenant`, or says how long until
    /// one is available.
    pub fn admit(&self, tenant: &str) -> Result<(), Duration> {
        self.rates.admit(tenant)
    }

    /// Lets one more request of `function` run, under its own concurrency
    /// limit and its tenant's, until the permit drops.
    pub fn enter(&self, function: &Function) -> Result<Permit<'_>, Busy> {
        self.running.enter(
            &function.tenant,
            &function.name,
            function.limits.concurrency,
            self.tenant_concurrency,
        )
    }
}

fn capacity(rate: &Rate) -> f64 {
    rate.burst
        .map_or(rate.requests_per_second, f64::from)
        .max(1.0)
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every tenant's rate and bucket.
#[derive(Debug, Default)]
struct Rates {
    rates: RwLock<HashMap<String, Rate>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Rates {
    /// Sets (or, with `None`, removes) `tenant`'s rate.
    fn set(&self, tenant: &str, rate: Option<Rate>) {
        let mut rates = self.rates.write().unwrap_or_else(|e| e.into_inner());
        let before = match rate {
            Some(rate) => rates.insert(tenant.to_owned(), rate),
            None => rates.remove(tenant),
        };
        if before == rate {
            // The same rate again (another node's change, re-applied): the
            // bucket keeps what it has.
            return;
        }
        // A new rate starts from a full bucket.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.remove(tenant);
    }

    /// Takes a token for one request of `tenant`, or says how long until
    /// one is available.
    fn admit(&self, tenant: &str) -> Result<(), Duration> {
        let rate = {
            let rates = self.rates.read().unwrap_or_else(|e| e.into_inner());
            match rates.get(tenant) {
                Some(rate) => *rate,
                None => return Ok(()),
            }
        };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: capacity(&rate),
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate.requests_per_second;
        bucket.tokens = (bucket.tokens + refill).min(capacity(&rate));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate.requests_per_second.max(f64::MIN_POSITIVE);
        Err(Duration::from_secs_f64(wait.min(3600.0)))
    }
}

/// Requests in flight, per function and per tenant.
#[derive(Debug, Default)]
struct Concurrency {
    running: Mutex<Running>,
}

#[derive(Debug, Default)]
struct Running {
    tenants: HashMap<Arc<str>, usize>,
    functions: HashMap<(Arc<str>, Arc<str>), usize>,
}

/// Which concurrency limit refused a request, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    /// The function runs its `limits.concurrency` requests already.
    #[error("the function runs {0} requests already (limit concurrency); retry shortly")]
    Function(usize),
    /// The tenant runs `[limits] tenant_concurrency` requests already.
    #[error("the tenant runs {0} requests already (limit tenant_concurrency); retry shortly")]
    Tenant(usize),
}

impl Busy {
    /// The limit's name, as configuration names it.
    pub fn name(self) -> &'static str {
        match self {
            Busy::Function(_) => "concurrency",
            Busy::Tenant(_) => "tenant_concurrency",
        }
    }

    /// The limit's value.
    pub fn value(self) -> usize {
        match self {
            Busy::Function(n) | Busy::Tenant(n) => n,
        }
    }
}

impl Concurrency {
    /// Counts one request of `tenant`'s `function` as running until the
    /// permit drops, or refuses it when either is at its limit.
    fn enter(
        &self,
        tenant: &Arc<str>,
        function: &Arc<str>,
        function_max: usize,
        tenant_max: usize,
    ) -> Result<Permit<'_>, Busy> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Running { tenants, functions } = &mut *running;
        let of_tenant = tenants.get(tenant).copied().unwrap_or(0);
        if of_tenant >= tenant_max {
            return Err(Busy::Tenant(tenant_max));
        }
        let key = (tenant.clone(), function.clone());
        if functions.get(&key).copied().unwrap_or(0) >= function_max {
            return Err(Busy::Function(function_max));
        }
        *functions.entry(key.clone()).or_insert(0) += 1;
        *tenants.entry(tenant.clone()).or_insert(0) += 1;
        Ok(Permit {
            concurrency: self,
            key,
        })
    }
}

/// One running request; dropping it frees its place.
#[derive(Debug)]
pub struct Permit<'a> {
    concurrency: &'a Concurrency,
    key: (Arc<str>, Arc<str>),
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut running = (self.concurrency.running.lock()).unwrap_or_else(|e| e.into_inner());
        let Running { tenants, functions } = &mut *running;
        // Entries at zero go, so the maps hold only what is running.
        release(functions, &self.key);
        release(tenants, &self.key.0);
    }
}

fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_bucket_is_refused_and_others_are_not() {
        let quotas = Rates::default();
        quotas.set(
            "a",
            Some(Rate {
                requests_per_second: 1.0,
                burst: Some(3),
            }),
        );
        for _ in 0..3 {
            assert!(quotas.admit("a").is_ok());
        }
        let wait = quotas.admit("a").expect_err("over the burst");
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1));
        assert!(quotas.admit("b").is_ok(), "no rate, no limit");
        quotas.set("a", None);
        assert!(quotas.admit("a").is_ok());
    }

    #[test]
    fn concurrency_is_counted_per_function_and_per_tenant() {
        let running = Concurrency::default();
        let (t, f, g): (Arc<str>, Arc<str>, Arc<str>) = ("t".into(), "f".into(), "g".into());
        let first = running.enter(&t, &f, 2, 3).expect("first");
        let _second = running.enter(&t, &f, 2, 3).expect("second");
        assert_eq!(running.enter(&t, &f, 2, 3).err(), Some(Busy::Function(2)));
        let _third = running.enter(&t, &g, 2, 3).expect("another function");
        assert_eq!(running.enter(&t, &g, 2, 3).err(), Some(Busy::Tenant(3)));
        drop(first);
        assert!(
            running.enter(&t, &f, 2, 3).is_ok(),
            "a dropped permit frees its place"
        );
        let other: Arc<str> = "u".into();
        assert!(
            running.enter(&other, &f, 2, 3).is_ok(),
            "other tenants are apart"
        );
    }
}
