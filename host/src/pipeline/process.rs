//! Process: hand the checked request to the tenant's component. Returns what
//! the function answered and what it staged; the function sees no
//! credentials and no hop-by-hop headers.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;

use super::authenticate::Principal;
use crate::runtime::bindings::{Claims, Request};
use crate::runtime::{Function, Invocation, InvokeError, Runtime};
use crate::store::{StagedFile, Store};

/// Headers the function never sees: credentials and connection management.
const HIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Builds the WIT request the function receives.
pub fn request(
    parts: &Parts,
    params: Vec<(String, String)>,
    body: Bytes,
    principal: Option<Principal>,
    request_id: &str,
) -> Request {
    let query = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    // Also drop headers the `connection` header names as hop-by-hop.
    let named_hop: Vec<String> = parts
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !HIDDEN_HEADERS.contains(&n) && !named_hop.iter().any(|h| h == n)
        })
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        params,
        query,
        headers,
        body: body.to_vec(),
        claims: principal.map(|p| Claims {
            subject: p.subject,
            tenant: p.tenant,
            roles: p.roles,
            all: serde_json::Value::Object(p.claims).to_string(),
        }),
        request_id: request_id.to_owned(),
    }
}

/// Runs the function on a fresh instance, under its limits, until
/// `deadline`; `upload` is the request's raw body, staged by validate.
pub async fn run(
    runtime: &Runtime,
    store: &Store,
    function: &Function,
    request: &Request,
    upload: Option<Arc<StagedFile>>,
    deadline: tokio::time::Instant,
) -> Result<Invocation, InvokeError> {
    runtime
        .invoke(function, store, request, upload, deadline)
        .await
}
