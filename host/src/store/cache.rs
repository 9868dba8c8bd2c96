//! The `cache` capability: a per-tenant, in-process cache of byte values
//! with expiry (moka). Not transactional: a function's sets take effect at
//! once and survive its failure. Each tenant has its own cache, bounded in
//! bytes, so no tenant can read or evict another's entries.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::CacheConfig;
use crate::config::names::is_valid_key;
use moka::Expiry;
use moka::ops::compute::Op;

/// Why a cache call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The key is empty, too long or has control characters.
    #[error("cache keys are 1-512 bytes without control characters")]
    InvalidKey,
    /// The value is over `max_value_bytes`.
    #[error("a value of {size} bytes is larger than the {max} bytes a cache entry may hold")]
    TooLarge {
        /// The value's size.
        size: usize,
        /// `max_value_bytes`.
        max: usize,
    },
    /// `increment` found a value that is not a decimal integer.
    #[error("the value at {0:?} is not a decimal integer")]
    NotACounter(String),
    /// The TTL is 0 or longer than [`MAX_TTL`].
    #[error("a TTL is 1 ms to 366 days")]
    InvalidTtl,
    /// `increment` would overflow a signed 64-bit integer.
    #[error("incrementing {0:?} would overflow")]
    Overflow(String),
}

/// An entry: its bytes and how its expiry is set when it is written.
#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Option<Duration>,
    /// An increment keeps the expiry the entry already has.
    keep_expiry: bool,
}

struct Ttl;

impl Expiry<String, Entry> for Ttl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        if entry.keep_expiry {
            remaining
        } else {
            entry.ttl
        }
    }
}

/// Bytes an entry counts against its tenant's bound, with a little for the
/// bookkeeping so that empty values are not free.
fn weight(key: &str, entry: &Entry) -> u32 {
    u32::try_from(key.len() + entry.bytes.len() + 64).unwrap_or(u32::MAX)
}

/// Every tenant's cache.
pub struct Caches {
    config: CacheConfig,
    tenants: RwLock<HashMap<Arc<str>, TenantCache>>,
}

impl Caches {
    /// No caches yet; each tenant's is made on first use.
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            config: config.clone(),
            tenants: RwLock::default(),
        }
    }

    /// `tenant`'s cache.
    pub fn tenant(&self, tenant: &Arc<str>) -> TenantCache {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        if let Some(cache) = tenants.get(tenant) {
            return cache.clone();
        }
        drop(tenants);
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| TenantCache {
                entries: moka::sync::Cache::builder()
                    .max_capacity(self.config.tenant_bytes)
                    .weigher(|k: &String, v: &Entry| weight(k, v))
                    .expire_after(Ttl)
                    .build(),
                max_value_bytes: self.config.max_value_bytes,
            })
            .clone()
    }
}

/// One tenant's cache. Cheap to clone: clones share the entries.
#[derive(Clone)]
pub struct TenantCache {
    entries: moka::sync::Cache<String, Entry>,
    max_value_bytes: usize,
}

/// The longest TTL an entry may have.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

fn check_ttl(ttl: Option<Duration>) -> Result<(), CacheError> {
    match ttl {
        Some(ttl) if ttl.is_zero() || ttl > MAX_TTL => Err(CacheError::InvalidTtl),
        _ => Ok(()),
    }
}

fn check_key(key: &str) -> Result<(), CacheError> {
    if !is_valid_key(key) {
        return Err(CacheError::InvalidKey);
    }
    Ok(())
}

impl TenantCache {
    /// The value at `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        check_key(key)?;
        Ok(self.entries.get(key).map(|e| e.bytes.to_vec()))
    }

    /// Sets `key`, expiring after `ttl` (never, if `None`, until evicted).
    pub fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), CacheError> {
        check_key(key)?;
        check_ttl(ttl)?;
        if value.len() > self.max_value_bytes {
            return Err(CacheError::TooLarge {
                size: value.len(),
                max: self.max_value_bytes,
            });
        }
        let entry = Entry {
            bytes: value.into(),
            ttl,
            keep_expiry: false,
        };
        self.entries.insert(key.to_owned(), entry);
        Ok(())
    }

    /// Removes `key`; true if it was there and not expired.
    pub fn delete(&self, key: &str) -> Result<bool, CacheError> {
        check_key(key)?;
        Ok(self.entries.remove(key).is_some())
    }

    /// Adds `delta` to the decimal counter at `key` (0 if absent, which then
    /// gets `ttl`) and returns the new value. Atomic per key.
    pub fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, CacheError> {
        check_key(key)?;
        check_ttl(ttl)?;
        let mut result = Err(CacheError::InvalidKey);
        self.entries.entry_by_ref(key).and_compute_with(|current| {
            let (old, keep_expiry) = match &current {
                None => (Some(0), false),
                Some(e) => (
                    std::str::from_utf8(&e.value().bytes)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok()),
                    true,
                ),
            };
            let Some(old) = old else {
                result = Err(CacheError::NotACounter(key.to_owned()));
                return Op::Nop;
            };
            let Some(new) = old.checked_add(delta) else {
                result = Err(CacheError::Overflow(key.to_owned()));
                return Op::Nop;
            };
            result = Ok(new);
            Op::Put(Entry {
                bytes: new.to_string().into_bytes().into(),
                ttl,
                keep_expiry,
            })
        });
        result
    }

    /// Bytes the tenant's entries count now (after pending evictions).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches(tenant_bytes: u64) -> Caches {
        Caches::new(&CacheConfig {
            tenant_bytes,
            max_value_bytes: 1024,
        })
    }

    #[test]
    fn tenants_do_not_share_keys() {
        let caches = caches(1 << 20);
        let (a, b) = (caches.tenant(&"a".into()), caches.tenant(&"b".into()));
        a.set("k", b"from a", None).expect("set");
        assert_eq!(b.get("k").expect("get"), None);
        b.set("k", b"from b", None).expect("set");
        assert_eq!(a.get("k").expect("get").as_deref(), Some(&b"from a"[..]));
    }

    #[test]
    fn counters_count_and_refuse_other_values() {
        let cache = caches(1 << 20).tenant(&"a".into());
        assert_eq!(cache.increment("n", 2, None), Ok(2));
        assert_eq!(cache.increment("n", -5, None), Ok(-3));
        assert_eq!(cache.get("n").expect("get").as_deref(), Some(&b"-3"[..]));
        cache.set("s", b"text", None).expect("set");
        assert!(matches!(
            cache.increment("s", 1, None),
            Err(CacheError::NotACounter(_))
        ));
        cache
            .set("max", i64::MAX.to_string().as_bytes(), None)
            .expect("set");
        assert!(matches!(
            cache.increment("max", 1, None),
            Err(CacheError::Overflow(_))
        ));
    }

    #[test]
    fn expiry_and_bounds() {
        let cache = caches(1 << 20).tenant(&"a".into());
        cache
            .set("short", b"x", Some(Duration::from_millis(1)))
            .expect("set");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(cache.get("short").expect("get"), None);
        assert_eq!(
            cache.set("big", &[0; 2048], None),
            Err(CacheError::TooLarge {
                size: 2048,
                max: 1024
            })
        );
        assert_eq!(cache.get(""), Err(CacheError::InvalidKey));
        let forever = Some(Duration::from_millis(u64::MAX));
        assert_eq!(cache.set("k", b"v", forever), Err(CacheError::InvalidTtl));
        assert_eq!(
            cache.increment("k", 1, Some(Duration::ZERO)),
            Err(CacheError::InvalidTtl)
        );
        assert_eq!(cache.get("a\0b"), Err(CacheError::InvalidKey));
    }

    #[test]
    fn a_full_tenant_evicts_its_own_entries_only() {
        let caches = caches(16 * 1024);
        let (a, b) = (caches.tenant(&"a".into()), caches.tenant(&"b".into()));
        b.set("keep", b"b's", None).expect("set");
        for i in 0..1000 {
            a.set(&format!("k{i}"), &[1; 512], None).expect("set");
        }
        assert!(a.weighted_size() <= 16 * 1024);
        assert_eq!(b.get("keep").expect("get").as_deref(), Some(&b"b's"[..]));
    }
}
