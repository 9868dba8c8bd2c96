//! `sluice:function/cache`: the tenant's in-process cache. Not staged: every
//! call takes effect at once.

use std::time::Duration;

use super::super::bindings::sluice::function::cache::{Error, Host};
use crate::runtime::state::Capabilities;
use crate::store::cache::CacheError;

impl From<CacheError> for Error {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::InvalidKey | CacheError::InvalidTtl => Error::Invalid(e.to_string()),
            CacheError::TooLarge { .. } => Error::TooLarge(e.to_string()),
            CacheError::NotACounter(_) | CacheError::Overflow(_) => {
                Error::NotACounter(e.to_string())
            }
        }
    }
}

impl Host for Capabilities {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.cache.get(&key)?)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), Error> {
        Ok(self
            .cache
            .set(&key, &value, ttl_ms.map(Duration::from_millis))?)
    }

    fn delete(&mut self, key: String) -> Result<bool, Error> {
        Ok(self.cache.delete(&key)?)
    }

    fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> Result<i64, Error> {
        Ok(self
            .cache
            .increment(&key, delta, ttl_ms.map(Duration::from_millis))?)
    }
}
