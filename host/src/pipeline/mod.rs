//! The request pipeline: Receive → Authenticate → Validate → Process →
//! Persist → Respond. [`handle`] calls the stages in that order; each takes
//! what the one before produced. Process runs inside persist, which owns
//! the commit policy (see [`persist`]).

pub mod authenticate;
pub mod persist;
pub mod process;
pub mod receive;
pub mod respond;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Body;
use tracing::{Instrument, field::Empty, info_span};

pub use respond::Body as ResponseBody;

use crate::catalog::{Live, Matched};
use crate::config::manifest::AuthRule;
use crate::metrics::Metrics;
use crate::problem::Problem;
use crate::runtime::Runtime;
use crate::store::{StageTimes, Store};
use crate::telemetry;

/// The path of the host's health check.
pub const HEALTH_PATH: &str = "/_sluice/health";

/// What the stages need, shared by every request.
pub struct Pipeline {
    /// Routes (receive) and the functions they lead to.
    pub live: Arc<Live>,
    /// Tenants' rates and what is running (receive).
    pub admission: Arc<receive::Admission>,
    /// The host's and tenants' token keys (authenticate).
    pub keys: Arc<authenticate::Keys>,
    /// Uploads (validate), committed reads (process), served blobs (respond).
    pub store: Store,
    /// The wasm runtime (process).
    pub runtime: Arc<Runtime>,
    /// The commit policy (persist).
    pub persist: Arc<persist::Persist>,
    /// Request counts and stage latencies.
    pub metrics: Arc<Metrics>,
    /// Time allowed for a request body (validate).
    pub body_timeout: Duration,
    /// URI and header limits (receive).
    pub framing: receive::Framing,
    /// How long an `Idempotency-Key`'s answer is replayed (process).
    pub idempotency_window: Duration,
}

/// Everything that can end a request early: one variant per stage, each
/// holding that stage's own error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// No route matched, or the request was not admitted.
    #[error(transparent)]
    Receive(#[from] receive::Error),
    /// The caller is unknown or not allowed.
    #[error(transparent)]
    Authenticate(#[from] authenticate::Error),
    /// The body was refused.
    #[error(transparent)]
    Validate(#[from] validate::Error),
    /// The function did not finish, or answered with an error.
    #[error(transparent)]
    Process(#[from] process::Error),
    /// What the function staged did not commit.
    #[error(transparent)]
    Persist(#[from] persist::Error),
    /// The function's answer could not be sent.
    #[error(transparent)]
    Respond(#[from] respond::Error),
}

impl PipelineError {
    /// The problem the client gets, as the stage that refused says.
    pub fn problem(&self) -> Problem {
        match self {
            PipelineError::Receive(e) => e.problem(),
            PipelineError::Authenticate(e) => e.problem(),
            PipelineError::Validate(e) => e.problem(),
            PipelineError::Process(e) => e.problem(),
            PipelineError::Persist(e) => e.problem(),
            PipelineError::Respond(e) => e.problem(),
        }
    }
}

/// Runs one request through the pipeline. Never fails: errors become
/// problem responses, all carrying `request_id`.
pub async fn handle<B>(
    p: &Pipeline,
    req: Request<B>,
    request_id: &str,
) -> http::Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    if req.uri().path() == HEALTH_PATH {
        let ok = serde_json::json!({"status": "ok"});
        return respond::json(StatusCode::OK, request_id, &ok);
    }
    if req.method() == http::Method::GET
        && let Some(tenant) = openapi_tenant(req.uri().path())
    {
        return openapi(p, tenant, request_id);
    }
    let (parts, body) = req.into_parts();
    if let Some(asked) = receive::preflight_of(&parts) {
        return preflight(p, &parts, asked, request_id);
    }
    // Routed before the request's span exists, so that the span is named
    // after its route (`POST /demo/todos/{id}`) from the start.
    let matched = p
        .framing
        .check(&parts)
        .and_then(|()| receive::route(&p.live.load(), &parts.method, parts.uri.path()));
    let target = matched.as_ref().ok().map(|(target, _)| target.clone());
    let function = target.as_ref().map(|t| &t.function);
    let span = info_span!(
        "request",
        request_id = %request_id,
        method = %parts.method,
        path = %parts.uri.path(),
        tenant = function.map(|f| &*f.tenant),
        function = function.map(|f| &*f.name),
        version = function.and_then(|f| f.version),
        route = target.as_ref().map(|t| &*t.route),
        status = Empty,
        outcome = Empty,
        otel.name = target.as_ref().map_or(parts.method.as_str(), |t| &*t.name),
        otel.kind = "server",
        otel.status_code = Empty,
    );
    telemetry::continue_from_headers(&span, &parts.headers);
    // Read before the stages take the request: the answer's CORS headers.
    let cors = target
        .as_ref()
        .and_then(|t| t.cors.clone())
        .zip(parts.headers.get(http::header::ORIGIN).cloned());
    async {
        let span = tracing::Span::current();
        let function = target.map(|t| t.function.clone());
        let result = match matched {
            Ok(matched) => serve(p, matched, parts, body, request_id, started).await,
            Err(e) => Err(e.into()),
        };
        let mut response = result.unwrap_or_else(|error| fail(request_id, &error));
        if let Some((cors, origin)) = cors {
            cors.decorate(response.headers_mut(), &origin);
        }
        let status = response.status().as_u16();
        span.record("status", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        let (tenant, name) = function.map(|f| (f.tenant, f.name)).unwrap_or_default();
        p.metrics.request(&tenant, &name, status, started.elapsed());
        tracing::debug!(elapsed_us = started.elapsed().as_micros() as u64, "done");
        response
    }
    .instrument(span)
    .await
}

/// The stages after routing, in order.
async fn serve<B>(
    p: &Pipeline,
    matched: Matched,
    parts: http::request::Parts,
    body: B,
    request_id: &str,
    started: Instant,
) -> Result<http::Response<ResponseBody>, PipelineError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let micros = |from: Instant, to: Instant| Some(StageTimes::micros(to - from));
    let routed = info_span!("receive").in_scope(|| receive::admit(&p.admission, matched))?;
    let received = p.metrics.stage_done("receive", started);
    let (caller, body) = authenticate(p, &routed, &parts, body).await?;
    let authenticated = p.metrics.stage_done("authenticate", received);
    let body = validate::body(&routed, &p.store, &parts.headers, body, p.body_timeout)
        .instrument(info_span!("validate"))
        .await?;
    let validated = p.metrics.stage_done("validate", authenticated);
    let stages = StageTimes {
        receive_us: micros(started, received),
        authenticate_us: micros(received, authenticated),
        validate_us: micros(authenticated, validated),
        process_us: 0,
    };
    let idempotent = process::idempotency::Idempotent::of(
        &routed.target,
        &parts,
        caller.as_ref(),
        &body,
        p.idempotency_window,
    )
    .map_err(process::Error::from)?;
    let invoked = persist::Invoked::request(&routed.target, request_id, started, stages);
    let call = process::Call::new(p, &routed, &parts, caller, body, idempotent, invoked);
    let answer = p.persist.run(call).await??;
    let tenant = &routed.target.function.tenant;
    Ok(respond::answer(&p.store, tenant, answer, &parts.headers).await?)
}

/// The caller, by the route's auth rule, and the body for validate: a
/// webhook's signature covers the body as sent, so it is read first and
/// handed on read; any other body is still the client's stream.
async fn authenticate<B>(
    p: &Pipeline,
    routed: &receive::Routed<'_>,
    parts: &http::request::Parts,
    body: B,
) -> Result<(Option<authenticate::Principal>, Either<Full<Bytes>, B>), PipelineError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let target = &routed.target;
    let AuthRule::Webhook { webhook } = &target.auth else {
        let caller = authenticate::caller(&p.keys, routed, &parts.headers)
            .instrument(info_span!("authenticate"))
            .await?;
        return Ok((caller, Either::Right(body)));
    };
    let bytes = validate::read(target, &parts.headers, body, p.body_timeout)
        .instrument(info_span!("validate"))
        .await?;
    let configs = p.store.configs();
    let caller = info_span!("authenticate")
        .in_scope(|| authenticate::webhook(webhook, target, configs, &parts.headers, &bytes))?;
    Ok((Some(caller), Either::Left(Full::new(bytes))))
}

/// The tenant whose API description `path` asks for:
/// `/{tenant}/_sluice/openapi.json`.
fn openapi_tenant(path: &str) -> Option<&str> {
    let (tenant, rest) = path.strip_prefix('/')?.split_once('/')?;
    (rest == "_sluice/openapi.json").then_some(tenant)
}

/// A tenant's OpenAPI document, generated from its live routes; public,
/// as the routes it describes answer anyone (401 or not), and readable
/// from any origin, for API explorers hosted elsewhere.
fn openapi(p: &Pipeline, tenant: &str, request_id: &str) -> http::Response<ResponseBody> {
    let catalog = p.live.load();
    if catalog.units_of(tenant).next().is_none() {
        let problem = Problem::new(
            404,
            "not-found",
            "No such route",
            format!("tenant {tenant:?} has no live routes to describe"),
        );
        return respond::failure(request_id, problem);
    }
    let doc = crate::catalog::openapi::tenant_document(&catalog, tenant);
    let mut response = respond::json(StatusCode::OK, request_id, &doc);
    let headers = response.headers_mut();
    headers.insert(
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        http::HeaderValue::from_static("*"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// Answers a CORS preflight: 204 with the route's rules, or a problem
/// without CORS headers (so the browser refuses the call).
fn preflight(
    p: &Pipeline,
    parts: &http::request::Parts,
    asked: receive::Preflight<'_>,
    request_id: &str,
) -> http::Response<ResponseBody> {
    let answer = (p.framing.check(parts))
        .and_then(|()| receive::preflight(&p.live.load(), parts.uri.path(), asked));
    match answer {
        Ok(headers) => respond::empty(StatusCode::NO_CONTENT, request_id, headers),
        Err(e) => fail(request_id, &e.into()),
    }
}

/// The problem response for `error`, logged as what it is.
fn fail(request_id: &str, error: &PipelineError) -> http::Response<ResponseBody> {
    let response = respond::failure(request_id, error.problem());
    if let PipelineError::Process(process::Error::Stopped(e)) = error
        && let Some(limit) = e.exceeded()
    {
        tracing::warn!(limit, error = %error, "function stopped at a limit");
    } else if response.status().is_server_error() {
        tracing::error!(error = %error, "request failed");
    } else {
        tracing::debug!(error = %error, "request refused");
    }
    response
}
