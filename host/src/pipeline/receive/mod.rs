//! Receive: check the request's framing ([`framing`]), match method and
//! path against the live catalog's routing table, then admit the request. Returns the route target, its path
//! parameters and a place among the requests running; rejects unknown
//! paths (404), unknown methods on known paths (405), requests over their
//! tenant's rate (429) and requests past the function's or the tenant's
//! concurrency (429); and requests framed past the limits (400, 414, 431).

pub mod admission;
pub mod framing;

use std::sync::Arc;

use std::time::Duration;

use http::header::{ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderValue, Method};

pub use admission::{Admission, Busy, Permit};
pub use framing::Framing;

use crate::catalog::{Catalog, Matched, NoRoute, RouteTarget};
use crate::problem::Problem;

/// Why a request was not received.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path and query are longer than `max_uri_bytes`.
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    /// A header line, or all of them, over its limit.
    #[error("{what} is larger than {max} bytes")]
    HeadersTooLarge {
        /// Which limit.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A `transfer-encoding` other than exactly one `chunked`.
    #[error("transfer-encoding must be exactly `chunked`")]
    TransferCoding,
    /// No route has this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// Routes have this path, but not this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method asked for.
        method: Method,
        /// The path asked for.
        path: String,
        /// The methods that are served there.
        allowed: Vec<Method>,
    },
    /// The tenant is over its request rate.
    #[error("tenant {tenant} is over its request rate; retry in {retry_after:?}")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// When a request will be admitted again.
        retry_after: std::time::Duration,
    },
    /// The function or its tenant has as many requests running as it may.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// A CORS preflight the route's rules do not allow.
    #[error("CORS preflight refused: {0}")]
    CorsRefused(String),
}

impl Error {
    /// The problem the client gets.
    pub fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            Error::UriTooLong(_) => Problem::new(414, "uri-too-long", "URI too long", detail),
            Error::HeadersTooLarge { .. } => Problem::new(
                431,
                "headers-too-large",
                "Request header fields too large",
                detail,
            ),
            Error::TransferCoding => Problem::new(
                400,
                "bad-transfer-encoding",
                "Unsupported transfer coding",
                detail,
            )
            .with_header(http::header::CONNECTION, HeaderValue::from_static("close")),
            Error::NotFound(_) => Problem::new(404, "not-found", "No such route", detail),
            Error::MethodNotAllowed { allowed, .. } => {
                let problem = Problem::new(405, "method-not-allowed", "Method not allowed", detail);
                let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                match HeaderValue::from_str(&list.join(", ")) {
                    Ok(v) => problem.with_header(http::header::ALLOW, v),
                    Err(_) => problem,
                }
            }
            Error::RateLimited { retry_after, .. } => {
                Problem::new(429, "rate-limited", "Too many requests", detail)
                    .retry_after(*retry_after)
            }
            Error::Busy(busy) => Problem::new(
                429,
                &format!("limit:{}", busy.name()),
                "Too many requests running",
                detail,
            )
            .with_limit(busy.name(), busy.value() as u64)
            .retry_after(Duration::from_secs(1)),
            Error::CorsRefused(_) => {
                Problem::new(403, "cors-refused", "Cross-origin call refused", detail)
            }
        }
    }
}

/// A request admitted to its route: what the later stages serve.
pub struct Routed<'a> {
    /// The route's target. It holds its function: a deploy after this
    /// point does not change the version this request runs.
    pub target: Arc<RouteTarget>,
    /// The path parameters, by name.
    pub params: Vec<(String, String)>,
    /// Counts the request as running until it is answered.
    _running: Permit<'a>,
}

/// Finds the route for `method` `path` in `catalog`.
pub fn route(catalog: &Catalog, method: &Method, path: &str) -> Result<Matched, Error> {
    catalog.routes.route(method, path).map_err(|no| match no {
        NoRoute::Path => Error::NotFound(path.to_owned()),
        NoRoute::Method(allowed) => Error::MethodNotAllowed {
            method: method.clone(),
            path: path.to_owned(),
            allowed,
        },
    })
}

/// What a CORS preflight asks: from which origin, which method, with
/// which request headers.
pub struct Preflight<'a> {
    origin: &'a HeaderValue,
    method: &'a HeaderValue,
    headers: Option<&'a HeaderValue>,
}

/// The question of a CORS preflight (`OPTIONS` with `origin` and
/// `access-control-request-method`); `None` for any other request.
pub fn preflight_of(parts: &http::request::Parts) -> Option<Preflight<'_>> {
    if parts.method != Method::OPTIONS {
        return None;
    }
    Some(Preflight {
        origin: parts.headers.get(ORIGIN)?,
        method: parts.headers.get(ACCESS_CONTROL_REQUEST_METHOD)?,
        headers: parts.headers.get(ACCESS_CONTROL_REQUEST_HEADERS),
    })
}

/// Answers a CORS preflight for `path` from the rules of the route it asks
/// about, before any token is looked at and without running the function:
/// the headers that allow the call, or why it is refused.
pub fn preflight(catalog: &Catalog, path: &str, asked: Preflight<'_>) -> Result<HeaderMap, Error> {
    let method = Method::from_bytes(asked.method.as_bytes())
        .map_err(|_| Error::CorsRefused("access-control-request-method is not a method".into()))?;
    let (target, _) = route(catalog, &method, path)?;
    let cors = target.cors.as_ref().ok_or_else(|| {
        Error::CorsRefused(format!(
            "{} takes no cross-origin calls (its manifest has no [cors] rules for it)",
            target.name
        ))
    })?;
    cors.preflight(asked.origin, &method, asked.headers)
        .map_err(Error::CorsRefused)
}

/// Admits a matched request under its tenant's rate and its function's and
/// tenant's concurrency.
pub fn admit(admission: &Admission, (target, params): Matched) -> Result<Routed<'_>, Error> {
    let tenant = &target.function.tenant;
    admission
        .admit(tenant)
        .map_err(|retry_after| Error::RateLimited {
            tenant: tenant.to_string(),
            retry_after,
        })?;
    let running = admission.enter(&target.function)?;
    Ok(Routed {
        target,
        params,
        _running: running,
    })
}
