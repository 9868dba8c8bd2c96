//! Keys published at a JWKS URL: fetched, cached, and fetched again when a
//! token names a key id the cache does not have (key rotation) or the cache
//! is an hour old. Refetches for unknown ids are at most one per
//! [`COOLDOWN`], so tokens with made-up ids cannot make the host hammer the
//! identity provider.

use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::key::{Key, validation};
use crate::config::AuthConfig;

/// Least time between two fetches caused by unknown key ids.
pub const COOLDOWN: Duration = Duration::from_secs(10);

/// Age after which the keys are fetched again before use.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document read.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// An HTTP(S) client for JWKS documents (rustls, Mozilla's roots).
#[derive(Clone)]
pub struct JwksClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl JwksClient {
    /// A client that speaks HTTPS (and plain HTTP, for a provider on loopback).
    pub fn new() -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS setup: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Fetches and parses the JWKS document at `url`.
    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("cannot reach it: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("it answered {}", response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map_err(|e| format!("reading it: {e}"))?
                .to_bytes();
            serde_json::from_slice::<JwkSet>(&body)
                .map_err(|e| format!("it is not a JWKS document: {e}"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
    }
}

/// The keys of one JWKS URL.
pub struct Jwks {
    url: String,
    /// Issuer, audience and leeway the keys' checks apply.
    rules: AuthConfig,
    keys: RwLock<Arc<Vec<Key>>>,
    fetched: Mutex<Option<Instant>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Jwks {
    /// Keys from `url`, not fetched yet, checked under `rules`.
    pub fn new(url: &str, rules: &AuthConfig) -> Self {
        Self {
            url: url.to_owned(),
            rules: AuthConfig {
                keys: Vec::new(),
                ..rules.clone()
            },
            keys: RwLock::new(Arc::new(Vec::new())),
            fetched: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys as last fetched.
    pub(super) fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn fetched(&self) -> Option<Instant> {
        *self.fetched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the keys were never fetched or are an hour old.
    pub fn is_stale(&self) -> bool {
        self.fetched().is_none_or(|at| at.elapsed() > MAX_AGE)
    }

    /// True when an unknown key id may cause a fetch now.
    pub fn may_refetch(&self) -> bool {
        self.fetched().is_none_or(|at| at.elapsed() >= COOLDOWN)
    }

    /// Fetches the keys unless another caller did within `min_age`; keeps
    /// the old keys if the fetch fails.
    pub async fn refresh(&self, client: &JwksClient, min_age: Duration) -> Result<(), String> {
        let _one_at_a_time = self.refresh.lock().await;
        if self.fetched().is_some_and(|at| at.elapsed() < min_age) {
            return Ok(());
        }
        // Counted as a fetch even if it fails: a dead provider is asked once
        // per cooldown, not once per request.
        *self.fetched.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let set = client.fetch(&self.url).await.map_err(|e| {
            let url = crate::config::redact_url(&self.url);
            tracing::warn!(%url, error = %e, "fetching the JWKS failed; keeping the keys we had");
            format!("jwks_url {url}: {e}")
        })?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter_map(|jwk| usable(jwk, &self.rules))
            .collect();
        let url = crate::config::redact_url(&self.url);
        tracing::info!(%url, keys = keys.len(), "JWKS fetched");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }
}

/// The key of a JWK meant for signatures, checked with its `alg` or the one
/// its key type implies; `None` for encryption keys and key types we cannot
/// verify with.
fn usable(jwk: &Jwk, rules: &AuthConfig) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let named = jwk
        .common
        .key_algorithm
        .and_then(|a| serde_json::to_value(a).ok())
        .and_then(|v| v.as_str().and_then(|s| Algorithm::from_str(s).ok()));
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        // Shared secrets do not belong in a published key set; other key
        // types cannot verify anything we accept.
        _ => None,
    };
    let algorithm = named.or(implied)?;
    if matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return None;
    }
    Some(Key {
        kid: jwk.common.key_id.clone(),
        key: DecodingKey::from_jwk(jwk).ok()?,
        validation: validation(algorithm, rules),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signing_keys_we_can_verify_with_are_kept() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "sig", "use": "sig", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AQAB", "y": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "sXch", "e": "AQAB"},
        ]}))
        .expect("a JWKS document");
        let rules = AuthConfig::default();
        let kept: Vec<(Option<String>, Vec<Algorithm>)> = set
            .keys
            .iter()
            .filter_map(|jwk| usable(jwk, &rules))
            .map(|k| (k.kid, k.validation.algorithms))
            .collect();
        assert_eq!(
            kept,
            [
                (Some("sig".into()), vec![Algorithm::RS256]),
                (Some("ec".into()), vec![Algorithm::ES256]),
                (Some("ps".into()), vec![Algorithm::PS256]),
            ]
        );
    }
}
