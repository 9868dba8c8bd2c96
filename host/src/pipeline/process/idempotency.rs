//! Idempotency keys (the IETF `Idempotency-Key` header) on routes that ask
//! for them: a request that commits stores its answer in the same
//! transaction, as a document of the tenant's host-only collection, and a
//! retry with the same key within the window gets that answer again,
//! marked `idempotent-replayed: true`, without running the function.
//!
//! Keys are the caller's own (scoped by its subject), and the answer is
//! replayed only to the same request: the same method, path, query and
//! body, else 422. A retry that arrives while the first is still running
//! runs too, but the two cannot both commit: the stored answer is a
//! document both read absent, so the second to commit conflicts, runs
//! again as every conflict does, and finds the first's answer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::request::Parts;
use serde::{Deserialize, Serialize};

use crate::catalog::RouteTarget;
use crate::config::names::IDEMPOTENCY_COLLECTION;
use crate::pipeline::authenticate::Principal;
use crate::pipeline::validate::Validated;
use crate::problem::Problem;
use crate::runtime::bindings::Response;
use crate::runtime::sha256_hex;
use crate::store::staging::{DocKey, StagedWrite};
use crate::store::{Staging, Store, now_ms};

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The response header that marks a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";

/// Longest key accepted, in bytes.
const MAX_KEY: usize = 255;

/// Why a request's key could not be honoured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the header is not a key.
    #[error("the Idempotency-Key header must be 1-{MAX_KEY} visible ASCII characters")]
    Invalid,
    /// 422: the key was used for another request.
    #[error(
        "this Idempotency-Key was used for a different request (method, path, query or body); \
         use a new key for a new request"
    )]
    Reused,
    /// 503: the stored answers could not be read.
    #[error("the stored answers could not be read")]
    Unavailable,
}

impl Error {
    /// The problem the client gets.
    pub fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            Error::Invalid => Problem::new(
                400,
                "idempotency-key-invalid",
                "Invalid Idempotency-Key",
                detail,
            ),
            Error::Reused => Problem::new(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                detail,
            ),
            Error::Unavailable => {
                Problem::new(503, "store-unavailable", "Store unavailable", detail)
                    .retry_after(std::time::Duration::from_secs(1))
            }
        }
    }
}

/// A request that carries a key its route honours.
#[derive(Debug)]
pub struct Idempotent {
    /// Where its answer is stored.
    key: DocKey,
    /// What makes a retry the same request.
    fingerprint: String,
    /// How long the answer is replayed, in milliseconds.
    window_ms: i64,
}

/// An answer as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    /// Unix ms after which it is no longer replayed.
    expires: i64,
    status: u16,
    headers: Vec<(String, String)>,
    /// Base64: a body need not be text.
    body: String,
}

/// What the store holds for a key.
pub enum Found {
    /// Nothing to replay (no answer, or an expired one); `version` is what
    /// was read, for the commit to check that no other answer came first.
    Nothing {
        /// The document's version read (0: absent).
        version: u64,
    },
    /// The committed answer to the same request.
    Answer(Response),
}

impl Idempotent {
    /// The key of a request `target` serves, if the route honours keys and
    /// the request sends one; `window` is how long answers count.
    pub fn of(
        target: &RouteTarget,
        parts: &Parts,
        caller: Option<&Principal>,
        body: &Validated,
        window: std::time::Duration,
    ) -> Result<Option<Self>, Error> {
        if !target.idempotent {
            return Ok(None);
        }
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(None);
        };
        let key = value.to_str().map_err(|_| Error::Invalid)?;
        if key.is_empty() || key.len() > MAX_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Invalid);
        }
        // Routes with keys are never public: there is always a subject.
        let subject = caller.map_or("", |c| c.subject.as_str());
        let content = match &body.upload {
            Some(upload) => upload.etag.as_bytes(),
            None => &body.body,
        };
        let fingerprint = [
            parts.method.as_str().as_bytes(),
            parts.uri.path().as_bytes(),
            parts.uri.query().unwrap_or("").as_bytes(),
            content_type(&parts.headers),
            content,
        ]
        .join(&0);
        Ok(Some(Self {
            key: DocKey {
                collection: IDEMPOTENCY_COLLECTION.to_owned(),
                key: sha256_hex(&[subject.as_bytes(), key.as_bytes()].join(&0)),
            },
            fingerprint: sha256_hex(&fingerprint),
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
        }))
    }

    /// What `tenant`'s store holds for this key now; `Err` when it holds
    /// the answer to another request.
    pub async fn lookup(&self, store: &Store, tenant: &str) -> Result<Found, Error> {
        let stored = store
            .get_document(tenant, &self.key.collection, &self.key.key)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading a stored answer failed");
                Error::Unavailable
            })?;
        let Some(document) = stored else {
            return Ok(Found::Nothing { version: 0 });
        };
        let version = document.version;
        let Some(stored) = (document.value.as_deref())
            .and_then(|v| serde_json::from_str::<Stored>(v).ok())
            .filter(|s| s.expires > now_ms())
        else {
            return Ok(Found::Nothing { version });
        };
        if stored.fingerprint != self.fingerprint {
            return Err(Error::Reused);
        }
        Ok(Found::Answer(Response {
            status: stored.status,
            headers: stored.headers,
            body: STANDARD.decode(stored.body).unwrap_or_default(),
        }))
    }

    /// Stages `response` as this key's answer, with the read of `version`
    /// the commit checks: it commits only if no other answer did first.
    pub fn stage(&self, staging: &mut Staging, version: u64, response: &Response) {
        let stored = Stored {
            fingerprint: self.fingerprint.clone(),
            expires: now_ms().saturating_add(self.window_ms),
            status: response.status,
            headers: response.headers.clone(),
            body: STANDARD.encode(&response.body),
        };
        let Ok(value) = serde_json::to_string(&stored) else {
            return;
        };
        staging.record_read(self.key.clone(), version);
        staging.host_write(self.key.clone(), StagedWrite::Put(value));
    }
}

/// The request's media type, part of what makes two requests the same.
fn content_type(headers: &HeaderMap) -> &[u8] {
    headers
        .get(http::header::CONTENT_TYPE)
        .map_or(&[], |v| v.as_bytes())
}
