//! Respond: turn the function's response, or any error of any stage, into
//! an HTTP response. Every response carries `x-request-id`; every error the
//! host makes is `application/problem+json`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;

use super::PipelineError;
use super::receive::ReceiveError;
use super::validate::ValidateError;
use crate::limits::{Exceeded, Limit};
use crate::problem::{self, Problem};
use crate::runtime::InvokeError;
use crate::runtime::bindings::{GuestError, Response};

/// The response body type.
pub type Body = Full<Bytes>;

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

/// Converts the function's response; `Err` names what makes it unusable.
pub fn success(request_id: &str, response: Response) -> Result<http::Response<Body>, String> {
    let status = StatusCode::from_u16(response.status)
        .map_err(|_| format!("status {} is not a valid HTTP status", response.status))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len() + 1);
    for (name, value) in response.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        if FRAMING_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of {name} is not a valid header value"))?;
        headers.append(name, value);
    }
    let mut out = http::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    set_request_id(&mut out, request_id);
    Ok(out)
}

/// A plain JSON response made by the host itself.
pub fn json(
    status: StatusCode,
    request_id: &str,
    body: &serde_json::Value,
) -> http::Response<Body> {
    let mut out = http::Response::new(Full::new(Bytes::from(body.to_string())));
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
            ValidateError::UnsupportedMediaType => Problem::new(
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
    let mut out = http::Response::new(Full::new(Bytes::from(p.to_json())));
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
        PipelineError::Persist(_)
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
