//! A per-tenant, in-memory cache of byte values with expiry.
//!
//! For data that is read often and may be a little stale, and for counters
//! such as rate limits. Keys are 1 to 512 bytes without control characters
//! and belong to the function's tenant.
//!
//! Unlike [`documents`](crate::documents) and [`blobs`](crate::blobs), the
//! cache is **not transactional**:
//!
//! - A [`set`], [`delete`] or [`increment`] takes effect at once. It stays
//!   even if the handler then returns an error or panics, and a handler that
//!   runs again after a write conflict does it again.
//! - Each host node has its own cache, in its memory; a restart empties it.
//! - The host evicts entries when the tenant's cache is full, so a value
//!   may be gone before its TTL.
//!
//! Never keep there what must not be lost: the cache only saves work.
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_sdk::{cache, documents::Collection, Error};
//!
//! fn price(sku: &str) -> Result<u64, Error> {
//!     let key = format!("price/{sku}");
//!     if let Some(price) = cache::get_json::<u64>(&key)? {
//!         return Ok(price);
//!     }
//!     let price = Collection::<u64>::open("prices")
//!         .get(sku)?
//!         .ok_or_else(|| Error::not_found("no such product"))?
//!         .value;
//!     cache::set_json(&key, &price, Some(Duration::from_secs(30)))?;
//!     Ok(price)
//! }
//! ```
//!
//! Every call returns a [`CallError`], which `?` turns into the right error
//! for a handler or a consumer.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CallError;
use crate::wit::sluice::function::cache as wit;

/// The value at `key`, or `None` if it is absent, expired or evicted.
///
/// ```no_run
/// # use sluice_sdk::{cache, Error};
/// # fn f() -> Result<(), Error> {
/// if let Some(bytes) = cache::get("banner")? {
///     println!("{} cached bytes", bytes.len());
/// }
/// # Ok(()) }
/// ```
pub fn get(key: impl AsRef<str>) -> Result<Option<Vec<u8>>, CallError> {
    Ok(wit::get(key.as_ref())?)
}

/// The value at `key` parsed as JSON into `T`, or `None` if it is absent,
/// expired or evicted.
///
/// A value that does not parse into `T` (one cached by an older version of
/// the function, say) is an error that names the key; treat it as a miss
/// with `.ok().flatten()` if that suits the function better.
///
/// ```no_run
/// # use sluice_sdk::{cache, Error};
/// # fn f() -> Result<(), Error> {
/// let top: Option<Vec<String>> = cache::get_json("top-posts")?;
/// # Ok(()) }
/// ```
pub fn get_json<T: DeserializeOwned>(key: impl AsRef<str>) -> Result<Option<T>, CallError> {
    let key = key.as_ref();
    wit::get(key)?.map(|bytes| decode(key, &bytes)).transpose()
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, CallError> {
    serde_json::from_slice(bytes).map_err(|err| {
        CallError::permanent(format!(
            "cache: the value at `{key}` is not a valid {}: {err}",
            std::any::type_name::<T>()
        ))
    })
}

/// Sets `key` to `value`, at once. It expires after `ttl` (to the
/// millisecond); with `None` it stays until it is evicted. A TTL of zero,
/// or longer than the host keeps entries (366 days), is an invalid
/// argument.
///
/// ```no_run
/// # use std::time::Duration;
/// # use sluice_sdk::{cache, Error};
/// # fn f() -> Result<(), Error> {
/// cache::set("banner", b"<h1>Sale!</h1>", Some(Duration::from_secs(60)))?;
/// # Ok(()) }
/// ```
pub fn set(
    key: impl AsRef<str>,
    value: impl AsRef<[u8]>,
    ttl: Option<Duration>,
) -> Result<(), CallError> {
    wit::set(key.as_ref(), value.as_ref(), ttl.map(millis))?;
    Ok(())
}

/// Sets `key` to `value` serialized as JSON, at once; expiry as for [`set`].
///
/// ```no_run
/// # use std::time::Duration;
/// # use sluice_sdk::{cache, Error};
/// # fn f() -> Result<(), Error> {
/// cache::set_json("top-posts", &vec!["p1", "p2"], Some(Duration::from_secs(10)))?;
/// # Ok(()) }
/// ```
pub fn set_json<T: Serialize + ?Sized>(
    key: impl AsRef<str>,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), CallError> {
    let json = serde_json::to_vec(value)?;
    set(key, json, ttl)
}

/// Removes `key`, at once; `true` if it was there.
///
/// ```no_run
/// # use sluice_sdk::{cache, Error};
/// # fn f(user: &str) -> Result<(), Error> {
/// // After a change, so the next read computes the value afresh.
/// cache::delete(format!("profile/{user}"))?;
/// # Ok(()) }
/// ```
pub fn delete(key: impl AsRef<str>) -> Result<bool, CallError> {
    Ok(wit::delete(key.as_ref())?)
}

/// Adds `delta` to the counter at `key`, at once, and returns the new value.
///
/// An absent key starts at 0 and expires after `ttl` (as for [`set`]); an
/// existing one keeps its expiry, so the counter covers a fixed window. The value is stored as
/// decimal text, so [`get`] reads it as such; a value that is not a decimal
/// integer is an error.
///
/// ```no_run
/// # use std::time::Duration;
/// # use sluice_sdk::{cache, Error};
/// # fn f(user: &str) -> Result<(), Error> {
/// // At most 100 calls per user per minute, on this node.
/// let calls = cache::increment(format!("rate/{user}"), 1, Some(Duration::from_secs(60)))?;
/// if calls > 100 {
///     return Err(Error::forbidden("too many calls, wait a minute"));
/// }
/// # Ok(()) }
/// ```
pub fn increment(
    key: impl AsRef<str>,
    delta: i64,
    ttl: Option<Duration>,
) -> Result<i64, CallError> {
    Ok(wit::increment(key.as_ref(), delta, ttl.map(millis))?)
}

/// Whole milliseconds, but at least 1 for a TTL that is not zero: the host
/// refuses 0, and a few microseconds should not fail where a millisecond
/// works. Saturates; the host refuses that too.
fn millis(ttl: Duration) -> u64 {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 && !ttl.is_zero() { 1 } else { ms }
}

/// None of these may pass: the key or value is the function's choice, and
/// a value that is not a counter stays one until it is replaced.
impl From<wit::Error> for CallError {
    fn from(err: wit::Error) -> Self {
        match err {
            wit::Error::Invalid(message) => {
                CallError::permanent(format!("cache: invalid argument: {message}"))
            }
            wit::Error::TooLarge(message) => {
                CallError::permanent(format!("cache: value too large: {message}"))
            }
            wit::Error::NotACounter(message) => {
                CallError::permanent(format!("cache: not a counter: {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, MessageError};

    #[test]
    fn ttls_convert_to_milliseconds_round_up_from_zero_and_saturate() {
        assert_eq!(millis(Duration::from_micros(1_500_900)), 1500);
        assert_eq!(millis(Duration::from_secs(5)), 5000);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_cached_value_of_another_shape_is_an_error_that_names_the_key() {
        assert_eq!(decode::<u64>("count/alice", b"42"), Ok(42));
        let err = decode::<u64>("count/alice", b"\"many\"").expect_err("must fail");
        assert!(!err.is_transient());
        assert!(err.message().contains("`count/alice`"), "{err:?}");
    }

    /// A 500 in a handler (see `call`), given up in a consumer.
    #[test]
    fn no_cache_error_is_transient() {
        for (err, prefix) in [
            (
                wit::Error::Invalid("key".to_owned()),
                "cache: invalid argument: ",
            ),
            (
                wit::Error::TooLarge("2 MiB".to_owned()),
                "cache: value too large: ",
            ),
            (
                wit::Error::NotACounter("abc".to_owned()),
                "cache: not a counter: ",
            ),
        ] {
            let err = CallError::from(err);
            assert!(!err.is_transient(), "{err:?}");
            assert!(err.message().starts_with(prefix), "{err:?}");
            assert!(matches!(Error::from(err.clone()), Error::Internal(_)));
            assert!(matches!(MessageError::from(err), MessageError::GiveUp(_)));
        }
    }
}
