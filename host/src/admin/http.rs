//! The admin API's HTTP: answering one request (JSON or Prometheus text,
//! problem+json on refusal, `x-request-id` always), operator keys, and
//! reading bodies.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde_json::Value;

use super::Admin;
use crate::pipeline::{ResponseBody, respond};
use crate::problem::Problem;
use crate::store::StoreError;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// The response type of the admin API.
pub(super) type Response = http::Response<ResponseBody>;

/// What a route answers.
pub(super) enum Answer {
    /// A JSON body.
    Json(StatusCode, Value),
    /// Prometheus text.
    Text(String),
}

/// The HTTP response for what a route answered.
pub(super) fn response(result: Result<Answer, Problem>, request_id: &str) -> Response {
    let mut response = match result {
        Ok(Answer::Json(status, body)) => {
            let mut out = http::Response::new(respond::full(body.to_string()));
            *out.status_mut() = status;
            out.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            out
        }
        Ok(Answer::Text(text)) => {
            let mut out = http::Response::new(respond::full(text));
            out.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            out
        }
        Err(problem) => {
            if problem.status >= 500 {
                tracing::error!(detail = %problem.detail, "admin request failed");
            }
            return respond::failure(request_id, problem);
        }
    };
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(respond::REQUEST_ID, v);
    }
    response
}

/// The operator key's id, or 401.
pub(super) async fn operator<B>(admin: &Admin, req: &Request<B>) -> Result<String, Problem> {
    let unauthenticated = |detail: &str| {
        Problem::new(401, "unauthenticated", "Authentication required", detail).with_header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        )
    };
    let key = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthenticated("an operator key is required: authorization: Bearer sk_… (create one with `sluice key create`)")
        })?;
    admin
        .store
        .check_operator_key(key.trim())
        .await
        .map_err(unavailable)?
        .ok_or_else(|| unauthenticated("the operator key is unknown or revoked"))
}

/// The query string's pairs.
pub(super) fn query<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The value of query parameter `name`, if given.
pub(super) fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub(super) async fn read_json<B, T>(req: Request<B>) -> Result<T, Problem>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: serde::de::DeserializeOwned,
{
    let bytes = read_body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("the body is not valid: {e}")))
}

/// Like [`read_json`], but an empty body is `T::default()`.
pub(super) async fn read_json_or_default<B, T>(req: Request<B>) -> Result<T, Problem>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: serde::de::DeserializeOwned + Default,
{
    let bytes = read_body(req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("the body is not valid: {e}")))
}

/// The body, up to 64 KiB.
async fn read_body<B>(req: Request<B>) -> Result<Bytes, Problem>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| invalid(format!("cannot read the body: {e}")))?
        .to_bytes())
}

/// 422: the request is not what the route takes.
pub(super) fn invalid(detail: String) -> Problem {
    Problem::new(422, "invalid-request", "Invalid request", detail)
}

/// 404: no tenant of that name.
pub(super) fn no_tenant(name: &str) -> Problem {
    Problem::new(
        404,
        "no-such-tenant",
        "No such tenant",
        format!("no tenant {name:?}"),
    )
}

/// The query's `limit`, 1 to 1000, default 50; what is wrong with it.
pub(super) fn page_limit(query: &[(String, String)]) -> Result<u32, String> {
    match param(query, "limit") {
        None => Ok(50),
        Some(n) => (n.parse::<u32>().ok())
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| format!("limit {n:?} must be 1 to 1000")),
    }
}

/// 503: the database failed (logged here, not shown).
pub(super) fn unavailable(e: StoreError) -> Problem {
    tracing::error!(error = %e, "admin store access failed");
    store_down()
}

/// 503: the database failed; the caller has logged why.
pub(super) fn store_down() -> Problem {
    Problem::new(
        503,
        "store-unavailable",
        "Store unavailable",
        "the database could not be reached",
    )
}
