//! Respond: turn the function's response, or any error of any stage, into
//! an HTTP response. Every response carries `x-request-id`; every error the
//! host makes is `application/problem+json`.

use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderName, HeaderValue,
    IF_NONE_MATCH, IF_RANGE, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncSeekExt, Take};

use super::PipelineError;
use super::receive::ReceiveError;
use super::validate::ValidateError;
use crate::limits::{Exceeded, Limit};
use crate::problem::{self, Problem};
use crate::runtime::InvokeError;
use crate::runtime::bindings::{GuestError, Response};
use crate::store::Store;

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

/// Converts the function's response; `Err` names what makes it unusable.
pub fn success(request_id: &str, response: Response) -> Result<Answer, String> {
    let status = StatusCode::from_u16(response.status)
        .map_err(|_| format!("status {} is not a valid HTTP status", response.status))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len() + 1);
    let mut blob = None;
    for (name, value) in response.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        if name == SERVE_BLOB {
            let decoded = percent_encoding::percent_decode_str(&value)
                .decode_utf8()
                .map_err(|_| format!("{SERVE_BLOB} is not a percent-encoded UTF-8 name"))?;
            blob = Some(decoded.into_owned());
            continue;
        }
        if FRAMING_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of {name} is not a valid header value"))?;
        headers.append(name, value);
    }
    if blob.is_some() && !response.body.is_empty() {
        return Err(format!(
            "a response with {SERVE_BLOB} must have an empty body"
        ));
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

/// A single byte range asked for with `Range`, resolved against `size`:
/// `Ok(None)` serves the whole blob (no range, several ranges, or one this
/// host does not read), `Err` when no byte of it exists.
fn byte_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if end.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if start.is_empty() => {
            if suffix == 0 {
                return Err(());
            }
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

/// Whether an `If-None-Match` value lists `etag` (weak comparison).
fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Streams blob `name` of `tenant` as the body of `response`, honouring
/// `If-None-Match` (304) and a single `Range` (206, or 416).
pub async fn blob(
    store: &Store,
    tenant: &str,
    name: &str,
    request: &HeaderMap,
    mut response: http::Response<Body>,
) -> Result<http::Response<Body>, super::PipelineError> {
    use super::PipelineError as E;
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(blob = name, error = %e, "serving a blob failed");
        E::BlobUnavailable
    };
    let (stored, file) = match store.open_blob(tenant, name).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(E::BlobNotFound(name.to_owned())),
        Err(e) => return Err(unavailable(&e)),
    };
    let etag = format!("\"{}\"", stored.etag);
    let header = |name| {
        request
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, v);
    }
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if !headers.contains_key(CONTENT_TYPE)
        && let Ok(v) = HeaderValue::from_str(&stored.content_type)
    {
        headers.insert(CONTENT_TYPE, v);
    }
    // Conditions and ranges apply to a 200; with any other status the
    // function chose, the whole blob is served.
    if response.status() == StatusCode::OK
        && header(IF_NONE_MATCH).is_some_and(|v| none_match(v, &etag))
    {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(response);
    }
    let size = stored.size;
    let if_range_holds = header(IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header(RANGE) {
        Some(v) if response.status() == StatusCode::OK && if_range_holds => {
            byte_range(v, size).map_err(|()| E::RangeNotSatisfiable { size })?
        }
        _ => None,
    };
    let (start, length) = match range {
        Some((start, end)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                response.headers_mut().insert(CONTENT_RANGE, v);
            }
            (start, end - start + 1)
        }
        None => (0, size),
    };
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| unavailable(&e))?;
    }
    *response.body_mut() = FileBody {
        file: tokio::io::AsyncReadExt::take(file, length),
        buf: BytesMut::new(),
        remaining: length,
    }
    .boxed_unsync();
    Ok(response)
}

/// Streams a file in chunks: memory stays one chunk whatever the size.
struct FileBody {
    file: Take<tokio::fs::File>,
    buf: BytesMut,
    remaining: u64,
}

/// Bytes read from a blob's file per frame.
const CHUNK: usize = 64 * 1024;

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        this.buf.reserve(CHUNK);
        let file = Pin::new(&mut this.file);
        match tokio_util::io::poll_read_buf(file, cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(0)) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob's file is shorter than its size",
            )))),
            Poll::Ready(Ok(n)) => {
                this.remaining = this.remaining.saturating_sub(n as u64);
                Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
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

/// The problem details for `error`: status, kind and a detail safe for the client.
pub fn problem(error: &PipelineError) -> Problem {
    use PipelineError as E;
    match error {
        E::Receive(ReceiveError::NotFound(_)) => {
            Problem::new(404, "not-found", "No such route", error.to_string())
        }
        E::Receive(ReceiveError::RateLimited { .. }) => {
            Problem::new(429, "rate-limited", "Too many requests", error.to_string())
        }
        E::Receive(ReceiveError::Busy(busy)) => Problem::new(
            429,
            &format!("limit:{}", busy.name()),
            "Too many requests running",
            error.to_string(),
        )
        .with_limit(busy.name(), busy.value() as u64),
        E::Receive(ReceiveError::MethodNotAllowed { .. }) => Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            error.to_string(),
        ),
        E::Authenticate(e) if e.is_unauthenticated() => Problem::new(
            401,
            "unauthenticated",
            "Authentication required",
            e.to_string(),
        ),
        E::Authenticate(e) => Problem::new(403, "forbidden", "Not allowed", e.to_string()),
        E::Validate(e) => match e {
            ValidateError::UnsupportedMediaType(_) => Problem::new(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                e.to_string(),
            ),
            ValidateError::TooLarge(_) => Problem::new(
                413,
                "body-too-large",
                "Request body too large",
                e.to_string(),
            ),
            ValidateError::Timeout(_) => {
                Problem::new(408, "body-timeout", "Request body timed out", e.to_string())
            }
            ValidateError::OverQuota { .. } => Problem::new(
                507,
                "storage-quota-exceeded",
                "Storage quota exceeded",
                format!("{e}; nothing was stored"),
            ),
            ValidateError::Storage(_) => {
                Problem::new(503, "store-unavailable", "Store unavailable", e.to_string())
            }
            ValidateError::Read => Problem::new(
                400,
                "body-unreadable",
                "Request body unreadable",
                e.to_string(),
            ),
            ValidateError::MalformedJson(_) => {
                Problem::new(400, "malformed-json", "Malformed JSON", e.to_string())
            }
            ValidateError::Schema(errors) => Problem::new(
                422,
                "schema-violation",
                "Body does not match the schema",
                e.to_string(),
            )
            .with_errors(errors.clone()),
        },
        E::Process(InvokeError::Limit(exceeded)) => limit_problem(exceeded),
        E::Process(InvokeError::Trap(_)) => Problem::new(
            500,
            "function-trap",
            "Function failed",
            "the function trapped; nothing it staged was committed",
        ),
        E::Process(InvokeError::Instantiate(_)) => Problem::new(
            503,
            "function-unavailable",
            "Function unavailable",
            "the function could not be started; try again",
        ),
        E::Guest(g) => {
            let (status, slug, title, message) = match g {
                GuestError::BadRequest(m) => (400, "bad-request", "Bad request", m),
                GuestError::Forbidden(m) => (403, "forbidden", "Not allowed", m),
                GuestError::NotFound(m) => (404, "not-found", "Not found", m),
                GuestError::Conflict(m) => (409, "conflict", "Conflict", m),
                GuestError::Internal(m) => (500, "function-error", "Function error", m),
            };
            Problem::new(status, slug, title, message.clone())
        }
        E::Conflict { .. } => {
            Problem::new(409, "write-conflict", "Write conflict", error.to_string())
        }
        E::InvalidResponse(_) => Problem::new(
            502,
            "invalid-function-response",
            "Invalid function response",
            error.to_string(),
        ),
        E::Persist(_) => Problem::new(
            503,
            "store-unavailable",
            "Store unavailable",
            "the changes could not be committed; nothing was written",
        ),
        E::BlobNotFound(_) => {
            Problem::new(404, "blob-not-found", "Blob not found", error.to_string())
        }
        E::BlobUnavailable => Problem::new(
            503,
            "store-unavailable",
            "Store unavailable",
            "the blob could not be read; try again",
        ),
        E::RangeNotSatisfiable { .. } => Problem::new(
            416,
            "range-not-satisfiable",
            "Range not satisfiable",
            error.to_string(),
        ),
        E::OverQuota { .. } => Problem::new(
            507,
            "storage-quota-exceeded",
            "Storage quota exceeded",
            format!("{error}; nothing was written"),
        ),
    }
}

/// A function stopped at a limit: 504 for its deadline, 502 for an
/// oversized response, 500 for the rest; the type names the limit.
fn limit_problem(exceeded: &Exceeded) -> Problem {
    let (status, title) = match exceeded.limit {
        Limit::Timeout => (504, "Function timed out"),
        Limit::Response => (502, "Function response too large"),
        _ => (500, "Function limit exceeded"),
    };
    let name = exceeded.limit.name();
    Problem::new(
        status,
        &format!("limit:{name}"),
        title,
        format!("{exceeded}; nothing it staged was committed"),
    )
    .with_limit(name, exceeded.value)
}

/// The problem+json response for `error`.
pub fn failure(request_id: &str, error: &PipelineError) -> http::Response<Body> {
    let mut p = problem(error);
    p.request_id = request_id.to_owned();
    let mut out = http::Response::new(full(p.to_json()));
    *out.status_mut() = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(problem::CONTENT_TYPE),
    );
    match error {
        PipelineError::Authenticate(e) if e.is_unauthenticated() => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        PipelineError::Receive(ReceiveError::MethodNotAllowed { allowed, .. }) => {
            let list: Vec<&str> = allowed.iter().map(http::Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                headers.insert(http::header::ALLOW, v);
            }
        }
        PipelineError::Receive(ReceiveError::RateLimited { retry_after, .. }) => {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        PipelineError::RangeNotSatisfiable { size } => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                headers.insert(CONTENT_RANGE, v);
            }
        }
        PipelineError::Persist(_)
        | PipelineError::BlobUnavailable
        | PipelineError::Validate(ValidateError::Storage(_))
        | PipelineError::Process(InvokeError::Instantiate(_))
        | PipelineError::Receive(ReceiveError::Busy(_)) => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    set_request_id(&mut out, request_id);
    out
}

fn set_request_id(response: &mut http::Response<Body>, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(byte_range("bytes=900-2000", 1000), Ok(Some((900, 999))));
        assert_eq!(byte_range("bytes=100-", 1000), Ok(Some((100, 999))));
        assert_eq!(byte_range("bytes=-10", 1000), Ok(Some((990, 999))));
        assert_eq!(byte_range("bytes=-5000", 1000), Ok(Some((0, 999))));
        assert_eq!(byte_range("bytes=1000-", 1000), Err(()));
        assert_eq!(byte_range("bytes=-0", 1000), Err(()));
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), Ok(None));
        assert_eq!(byte_range("bytes=9-1", 1000), Ok(None));
        assert_eq!(byte_range("items=0-1", 1000), Ok(None));
    }

    #[test]
    fn conditional_etags() {
        assert!(none_match("\"a\", \"b\"", "\"b\""));
        assert!(none_match("W/\"b\"", "\"b\""));
        assert!(none_match("*", "\"b\""));
        assert!(!none_match("\"c\"", "\"b\""));
    }
}
