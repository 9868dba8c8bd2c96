//! Keyrings: the verification keys and claim rules of the host, or of a
//! tenant with token settings of its own, with the JWKS they take keys from.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{decode, decode_header, get_current_timestamp};
use serde_json::{Map, Value};

use super::jwks::Jwks;
use super::key::{Key, KeyError};
use super::{Error, Principal};
use crate::config::AuthConfig;

/// The verification keys and claim rules.
pub struct Keyring {
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    tenant_claim: String,
    roles_claim: String,
    /// The settings it was built from (JSON), so a node re-applying the
    /// same settings keeps it and its fetched JWKS.
    source: String,
    /// Clock skew allowed on `exp`.
    leeway: u64,
    /// Longest bearer token looked at.
    max_token_bytes: usize,
    /// Tokens it verified, until they expire: a client sends the same token
    /// with every request, and checking its signature each time was most of
    /// what authentication cost.
    verified: moka::sync::Cache<String, Arc<Verified>>,
}

/// A token this keyring verified.
struct Verified {
    principal: Principal,
    /// Its `exp` (Unix seconds): accepted while now ≤ exp + leeway.
    exp: u64,
    /// The JWKS keys at the time: a refetch may have dropped the key that
    /// signed it, so a new key set verifies again.
    keyset: Option<Arc<Vec<Key>>>,
}

/// Most verified tokens a keyring remembers.
const VERIFIED: u64 = 10_000;

/// Longest a verified token is remembered, whatever its `exp`.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

fn verified_cache() -> moka::sync::Cache<String, Arc<Verified>> {
    moka::sync::Cache::builder()
        .max_capacity(VERIFIED)
        .time_to_live(VERIFIED_FOR)
        .build()
}

impl Keyring {
    /// Builds the keyring. Each key's `Validation` allows only that key's algorithm.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let keys = config
            .keys
            .iter()
            .enumerate()
            .map(|(index, k)| Key::new(index, k, config))
            .collect::<Result<_, _>>()?;
        let jwks = match &config.jwks_url {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Some(Arc::new(Jwks::new(url, config)))
            }
            Some(url) => {
                return Err(KeyError::Material {
                    index: 0,
                    message: format!("jwks_url {url:?} must be an https:// (or http://) URL"),
                });
            }
            None => None,
        };
        Ok(Self {
            keys,
            jwks,
            tenant_claim: config.tenant_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            source: source(config),
            leeway: config.leeway_seconds,
            max_token_bytes: config.max_token_bytes,
            verified: verified_cache(),
        })
    }

    /// Whether it was built from `config`.
    pub fn built_from(&self, config: &AuthConfig) -> bool {
        self.source == source(config)
    }

    /// A keyring that verifies nothing: every token is refused.
    pub fn empty(config: &AuthConfig) -> Self {
        Self {
            keys: Vec::new(),
            jwks: None,
            tenant_claim: config.tenant_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            source: source(config),
            leeway: config.leeway_seconds,
            max_token_bytes: config.max_token_bytes,
            verified: verified_cache(),
        }
    }

    /// The JWKS this keyring takes keys from, if any.
    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_deref()
    }

    /// Who `token` says the caller is, once its signature and claims are
    /// checked; a token checked before is taken from the cache until it
    /// expires.
    pub(super) fn caller(&self, token: &str) -> Result<Principal, Error> {
        // Before any decoding: a huge token costs base64 and crypto work.
        if token.len() > self.max_token_bytes {
            return Err(Error::TokenTooLarge(self.max_token_bytes));
        }
        let keyset = self.jwks.as_ref().map(|j| j.keys());
        let same_keys = |v: &Verified| match (&v.keyset, &keyset) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if let Some(v) = self.verified.get(token)
            && same_keys(&v)
            && get_current_timestamp() <= v.exp.saturating_add(self.leeway)
        {
            return Ok(v.principal.clone());
        }
        let claims = self.verify(token)?;
        let exp = claims.get("exp").and_then(Value::as_u64);
        let principal = self.principal(claims)?;
        if let Some(exp) = exp {
            let verified = Verified {
                principal: principal.clone(),
                exp,
                keyset,
            };
            self.verified.insert(token.to_owned(), Arc::new(verified));
        }
        Ok(principal)
    }

    /// Verifies `token` and returns its claims.
    ///
    /// Only keys that fit the token's header are tried: with a `kid`, the
    /// keys with that `kid` and no other (a token never falls back to a key
    /// it did not name); without one, every key. Of those, only keys of the
    /// token's `alg`, so the refusal names the check that failed rather
    /// than the last key's algorithm.
    fn verify(&self, token: &str) -> Result<Map<String, Value>, Error> {
        let header = decode_header(token).map_err(|_| Error::InvalidToken("malformed"))?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: this host understands no header extension.
            return Err(Error::InvalidToken(
                "it names critical header parameters the host does not support",
            ));
        }
        let published = self.jwks.as_ref().map(|j| j.keys());
        let named: Vec<&Key> = self
            .keys
            .iter()
            .chain(published.iter().flat_map(|keys| keys.iter()))
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        if named.is_empty() {
            return Err(Error::UnknownKey);
        }
        let mut candidates = named
            .into_iter()
            .filter(|k| k.validation.algorithms.contains(&header.alg))
            .peekable();
        if candidates.peek().is_none() {
            return Err(Error::InvalidToken("algorithm does not match the key"));
        }
        let mut last = Error::InvalidToken("bad signature");
        for key in candidates {
            use jsonwebtoken::errors::ErrorKind;
            match decode::<Map<String, Value>>(token, &key.key, &key.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(Error::Expired),
                        ErrorKind::ImmatureSignature => return Err(Error::NotYetValid),
                        ErrorKind::InvalidIssuer => Error::InvalidToken("wrong issuer"),
                        ErrorKind::InvalidAudience => Error::InvalidToken("wrong audience"),
                        ErrorKind::MissingRequiredClaim(_) => {
                            Error::InvalidToken("a required claim is missing")
                        }
                        ErrorKind::InvalidSignature => Error::InvalidToken("bad signature"),
                        _ => Error::InvalidToken("malformed"),
                    }
                }
            }
        }
        Err(last)
    }

    fn principal(&self, mut claims: Map<String, Value>) -> Result<Principal, Error> {
        // Reserved for the host's word that a webhook was verified: a
        // token cannot pass for one.
        claims.remove("webhook");
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())
            .ok_or(Error::InvalidToken("`sub` must be a non-empty string"))?
            .to_owned();
        // RFC 7519 §4.1.1: `iss` is one StringOrURI, never a list.
        if claims.get("iss").is_some_and(|iss| !iss.is_string()) {
            return Err(Error::InvalidToken("`iss` must be a string"));
        }
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .ok_or(Error::WrongTenant)?
            .to_owned();
        let roles = match claims.get(&self.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Ok(Principal {
            subject,
            tenant,
            roles,
            claims,
        })
    }
}

fn source(config: &AuthConfig) -> String {
    serde_json::to_string(config).unwrap_or_default()
}

/// The keyrings of tenants with their own auth settings; the others use the host's.
#[derive(Default)]
pub struct TenantKeyrings {
    tenants: std::sync::RwLock<std::collections::HashMap<String, Arc<Keyring>>>,
}

impl TenantKeyrings {
    /// Sets (or, with `None`, removes) `tenant`'s own keyring.
    pub fn set(&self, tenant: &str, keyring: Option<Keyring>) {
        let mut map = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        match keyring {
            Some(k) => map.insert(tenant.to_owned(), Arc::new(k)),
            None => map.remove(tenant),
        };
    }

    /// `tenant`'s own keyring, if it has one.
    pub fn get(&self, tenant: &str) -> Option<Arc<Keyring>> {
        let map = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        map.get(tenant).cloned()
    }
}
