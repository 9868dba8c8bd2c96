//! Respond: turn the function's response, or the problem any stage
//! refused the request with, into an HTTP response. Every response carries
//! `x-request-id`; every error the host makes is `application/problem+json`.
//! A function's response is converted before its writes commit (one that
//! cannot be sent must not leave them behind); a blob it asks the host to
//! serve is streamed after the commit ([`blob`]).

mod blob;

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tracing::{Instrument, info_span};

pub use blob::byte_range;

use crate::problem::{self, Problem};
use crate::runtime::bindings::Response;
use crate::store::Store;

/// Why the function's answer could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The function's response is not a valid HTTP response.
    #[error("the function's response is invalid: {0}")]
    InvalidResponse(String),
    /// The function asked the host to serve a blob that does not exist.
    #[error("the function answered with blob {0:?}, which does not exist")]
    BlobNotFound(String),
    /// The blob to serve could not be read.
    #[error("the blob could not be read")]
    BlobUnavailable,
    /// The `Range` asked for starts past the end of the blob.
    #[error("the range starts past the end of the {size}-byte blob")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
}

impl Error {
    /// The problem the client gets.
    pub fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            Error::InvalidResponse(_) => Problem::new(
                502,
                "invalid-function-response",
                "Invalid function response",
                detail,
            ),
            Error::BlobNotFound(_) => Problem::new(404, "blob-not-found", "Blob not found", detail),
            Error::BlobUnavailable => Problem::new(
                503,
                "store-unavailable",
                "Store unavailable",
                "the blob could not be read; try again",
            )
            .retry_after(Duration::from_secs(1)),
            Error::RangeNotSatisfiable { size } => {
                let problem = Problem::new(
                    416,
                    "range-not-satisfiable",
                    "Range not satisfiable",
                    detail,
                );
                match HeaderValue::from_str(&format!("bytes */{size}")) {
                    Ok(v) => problem.with_header(CONTENT_RANGE, v),
                    Err(_) => problem,
                }
            }
        }
    }
}

/// The response body type: bytes in memory, or a blob streamed from its file.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of bytes already in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The response header by which a function asks the host to serve a blob:
/// its value is the blob's name, percent-encoded.
pub const SERVE_BLOB: HeaderName = HeaderName::from_static("x-sluice-blob");

/// The header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers a function may not set: the host frames the message.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-request-id",
];

/// The function's response converted, and the blob it asks the host to
/// serve as its body, if any.
pub struct Answer {
    /// The response as the client will get it (but for a blob's body).
    pub response: http::Response<Body>,
    /// The name of the blob to stream, from [`SERVE_BLOB`].
    pub blob: Option<String>,
}

/// Most headers a function's response may carry.
const MAX_RESPONSE_HEADERS: usize = 100;

/// Largest header section a function's response may carry (every `name: value` line).
const MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;

/// Converts the function's response; `Err` names what makes it unusable.
/// Every field is checked here, before the commit, so an answer the host
/// would not send leaves nothing behind.
pub fn success(request_id: &str, response: Response) -> Result<Answer, Error> {
    // 1xx are interim answers (101 would switch protocols), and the WIT
    // contract's range stops at 599: neither is a function's final answer.
    let status = (200..=599)
        .contains(&response.status)
        .then(|| StatusCode::from_u16(response.status).ok())
        .flatten()
        .ok_or_else(|| {
            invalid(format!(
                "status {} is not a final HTTP status (200-599)",
                response.status
            ))
        })?;
    if response.headers.len() > MAX_RESPONSE_HEADERS {
        return Err(invalid(format!(
            "{} headers; a response may have at most {MAX_RESPONSE_HEADERS}",
            response.headers.len()
        )));
    }
    let header_bytes: usize = (response.headers.iter())
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(invalid(format!(
            "{header_bytes} bytes of headers; a response may have at most {MAX_RESPONSE_HEADER_BYTES}"
        )));
    }
    let mut headers = HeaderMap::with_capacity(response.headers.len() + 1);
    let mut blob = None;
    for (name, value) in response.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{name:?} is not a valid header name")))?;
        if name == SERVE_BLOB {
            let decoded = percent_encoding::percent_decode_str(&value)
                .decode_utf8()
                .map_err(|_| {
                    invalid(format!("{SERVE_BLOB} is not a percent-encoded UTF-8 name"))
                })?;
            blob = Some(decoded.into_owned());
            continue;
        }
        if FRAMING_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| invalid(format!("the value of {name} is not a valid header value")))?;
        headers.append(name, value);
    }
    if blob.is_some() && !response.body.is_empty() {
        return Err(invalid(format!(
            "a response with {SERVE_BLOB} must have an empty body"
        )));
    }
    let mut out = http::Response::new(full(response.body));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    set_request_id(&mut out, request_id);
    Ok(Answer {
        response: out,
        blob,
    })
}

/// The answer as the client gets it: a blob it names streamed from the
/// store (committed, this invocation's own writes included).
pub async fn answer(
    store: &Store,
    tenant: &str,
    answer: Answer,
    request: &HeaderMap,
) -> Result<http::Response<Body>, Error> {
    let Some(name) = answer.blob else {
        return Ok(answer.response);
    };
    blob::serve(store, tenant, &name, request, answer.response)
        .instrument(info_span!("respond", blob = %name))
        .await
}

/// A plain JSON response made by the host itself.
pub fn json(
    status: StatusCode,
    request_id: &str,
    body: &serde_json::Value,
) -> http::Response<Body> {
    let mut out = http::Response::new(full(body.to_string()));
    *out.status_mut() = status;
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_request_id(&mut out, request_id);
    out
}

/// A response made by the host itself with no body: `status` and `headers`.
pub fn empty(
    status: StatusCode,
    request_id: &str,
    headers: http::HeaderMap,
) -> http::Response<Body> {
    let mut out = http::Response::new(full(""));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    set_request_id(&mut out, request_id);
    out
}

/// The problem+json response for `problem`.
pub fn failure(request_id: &str, mut problem: Problem) -> http::Response<Body> {
    problem.request_id = request_id.to_owned();
    let mut out = http::Response::new(full(problem.to_json()));
    *out.status_mut() =
        StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(problem::CONTENT_TYPE),
    );
    for (name, value) in problem.headers {
        headers.insert(name, value);
    }
    set_request_id(&mut out, request_id);
    out
}

/// The answer to a request whose task panicked: a bare 500 would break
/// the promise that every error is problem+json with the request id.
pub fn panicked(request_id: &str) -> http::Response<Body> {
    failure(
        request_id,
        Problem::new(
            500,
            "internal-error",
            "Internal error",
            "the host failed while handling this request; nothing it staged was committed",
        ),
    )
}

fn set_request_id(response: &mut http::Response<Body>, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
}

fn invalid(why: String) -> Error {
    Error::InvalidResponse(why)
}
