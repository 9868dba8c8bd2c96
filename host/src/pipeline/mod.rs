//! The request pipeline: Receive → Authenticate → Validate → Process →
//! Persist → Respond. [`handle`] calls the stages in that order; each stage
//! takes what the one before produced.

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
use hyper::body::Body;
use tracing::{Instrument, field::Empty, info_span};

use crate::app::App;
use crate::runtime::InvokeError;
use crate::runtime::bindings::GuestError;
use crate::store::{CommitError, CommitOutcome};

pub use respond::Body as ResponseBody;

/// The path of the host's health check.
pub const HEALTH_PATH: &str = "/_sluice/health";

/// Everything that can end a request early, one variant per stage.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// No route matched.
    #[error(transparent)]
    Receive(#[from] receive::ReceiveError),
    /// The caller is unknown or not allowed.
    #[error(transparent)]
    Authenticate(#[from] authenticate::AuthError),
    /// The body was refused.
    #[error(transparent)]
    Validate(#[from] validate::ValidateError),
    /// The function did not finish.
    #[error(transparent)]
    Process(#[from] InvokeError),
    /// The function answered with an error.
    #[error("the function returned an error: {0:?}")]
    Guest(GuestError),
    /// Every attempt hit a write conflict.
    #[error(
        "the documents this request depends on kept changing; gave up after {attempts} attempts"
    )]
    Conflict {
        /// How many times the function ran.
        attempts: u32,
    },
    /// The function's response could not be sent.
    #[error("the function's response is invalid: {0}")]
    InvalidResponse(String),
    /// The commit failed.
    #[error(transparent)]
    Persist(#[from] CommitError),
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
    /// The writes would take the tenant past its storage quota.
    #[error(
        "the tenant stores {used} bytes of its {quota}-byte quota; this request would add {adding}"
    )]
    OverQuota {
        /// Bytes stored now.
        used: u64,
        /// What the request would add.
        adding: u64,
        /// The quota.
        quota: u64,
    },
}

impl PipelineError {
    /// The outcome recorded for a request that reached the process stage.
    fn outcome(&self) -> &'static str {
        match self {
            PipelineError::Process(e) => e.outcome(),
            PipelineError::Guest(_) => "guest-error",
            PipelineError::Conflict { .. } => "conflict",
            PipelineError::InvalidResponse(_) => "invalid-response",
            PipelineError::OverQuota { .. } => "over-quota",
            _ => "unavailable",
        }
    }

    /// The limit the function went over, if that is what ended the request.
    fn exceeded(&self) -> Option<&'static str> {
        match self {
            PipelineError::Process(e) => e.exceeded(),
            _ => None,
        }
    }
}

/// Runs one request through the pipeline. Never fails: errors become problem responses.
pub async fn handle<B>(app: &App, req: Request<B>) -> http::Response<ResponseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let request_id = uuid::Uuid::now_v7().to_string();
    if req.uri().path() == HEALTH_PATH {
        return respond::json(
            StatusCode::OK,
            &request_id,
            &serde_json::json!({"status": "ok"}),
        );
    }
    let span = info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        tenant = Empty,
        function = Empty,
        version = Empty,
        status = Empty,
    );
    async {
        let mut routed = None;
        let response = match run(app, req, &request_id, started, &mut routed).await {
            Ok(response) => response,
            Err(error) => {
                let response = respond::failure(&request_id, &error);
                if let Some(limit) = error.exceeded() {
                    tracing::warn!(limit, error = %error, "function stopped at a limit");
                } else if response.status().is_server_error() {
                    tracing::error!(error = %error, "request failed");
                } else {
                    tracing::debug!(error = %error, "request refused");
                }
                response
            }
        };
        let span = tracing::Span::current();
        let status = response.status().as_u16();
        span.record("status", status);
        let (tenant, function) = routed.unwrap_or_default();
        app.metrics.request(&tenant, &function, status);
        tracing::debug!(elapsed_us = started.elapsed().as_micros() as u64, "done");
        response
    }
    .instrument(span)
    .await
}

async fn run<B>(
    app: &App,
    req: Request<B>,
    request_id: &str,
    started: Instant,
    routed: &mut Option<(Arc<str>, Arc<str>)>,
) -> Result<http::Response<ResponseBody>, PipelineError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();

    let stage = Instant::now();
    // The target holds its function: a deploy after this point does not
    // change the version this request runs.
    let (target, params) = info_span!("receive")
        .in_scope(|| (app.catalog.load().routes).route(&parts.method, parts.uri.path()))?;
    let span = tracing::Span::current();
    span.record("tenant", &*target.function.tenant);
    span.record("function", &*target.function.name);
    if let Some(version) = target.function.version {
        span.record("version", version);
    }
    *routed = Some((target.function.tenant.clone(), target.function.name.clone()));
    receive::admit(&app.quotas, &target.function.tenant)?;
    let _running = receive::enter(&app.running, &target.function, app.tenant_concurrency)?;
    let stage = app.metrics.stage_done("receive", stage);

    let tenant_keys = app.tenant_keyrings.get(&target.function.tenant);
    let principal = authenticate::check_fetching(
        tenant_keys.as_deref().unwrap_or(&app.keyring),
        &app.jwks_client,
        &target.auth,
        &target.function.tenant,
        &parts.headers,
    )
    .instrument(info_span!("authenticate"))
    .await?;
    let stage = app.metrics.stage_done("authenticate", stage);

    let validated = validate::body(&target, &app.store, &parts.headers, body, app.body_timeout)
        .instrument(info_span!("validate"))
        .await?;
    app.metrics.stage_done("validate", stage);

    let request = process::request(&parts, params, validated.body, principal, request_id);
    // One deadline for every attempt: conflicts do not buy more time.
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(target.function.limits.timeout_ms);
    let mut attempts = 0;
    // Held from the first conflict on: see `persist::Contention`.
    let mut serialized = None;
    loop {
        attempts += 1;
        let finished = async {
            let stage = Instant::now();
            let invocation = process::run(
                &app.runtime,
                &app.store,
                &target.function,
                &request,
                validated.upload.clone(),
                deadline,
            )
            .instrument(info_span!("process", attempt = attempts))
            .await?;
            let stage = app.metrics.stage_done("process", stage);
            let response = invocation.result.map_err(PipelineError::Guest)?;
            // Converted before the commit: a response that cannot be sent
            // must not leave its writes behind.
            let answer = info_span!("respond")
                .in_scope(|| respond::success(request_id, response))
                .map_err(PipelineError::InvalidResponse)?;
            let stage = app.metrics.stage_done("respond", stage);
            let record = persist::record(
                &target,
                request_id,
                answer.response.status().as_u16(),
                "ok",
                attempts,
                started,
            );
            let outcome = persist::commit(&app.store, invocation.staging, record)
                .instrument(info_span!("persist"))
                .await?;
            app.metrics.stage_done("persist", stage);
            Ok::<_, PipelineError>((outcome, answer))
        }
        .await;
        let error = match finished {
            Ok((CommitOutcome::Committed, answer)) => {
                let Some(name) = answer.blob else {
                    return Ok(answer.response);
                };
                // After the commit: the blob served is the committed one,
                // including what this invocation just stored.
                let tenant = &target.function.tenant;
                return respond::blob(&app.store, tenant, &name, &parts.headers, answer.response)
                    .instrument(info_span!("respond", blob = %name))
                    .await;
            }
            Ok((CommitOutcome::Conflict(key), _)) if attempts <= app.max_conflict_retries => {
                tracing::debug!(attempts, collection = %key.collection, key = %key.key,
                    "write conflict; running the function again");
                if serialized.is_none() {
                    serialized = Some(
                        app.contention
                            .lock(&app.store, &target.function.tenant, &key)
                            .await,
                    );
                }
                continue;
            }
            // A request holds no lease; `LeaseLost` cannot happen here.
            Ok((CommitOutcome::Conflict(_) | CommitOutcome::LeaseLost, _)) => {
                PipelineError::Conflict { attempts }
            }
            Ok((
                CommitOutcome::OverQuota {
                    used,
                    adding,
                    quota,
                },
                _,
            )) => PipelineError::OverQuota {
                used,
                adding,
                quota,
            },
            Err(e) => e,
        };
        let status = respond::problem(&error).status;
        let mut record = persist::record(
            &target,
            request_id,
            status,
            error.outcome(),
            attempts,
            started,
        );
        record.exceeded = error.exceeded();
        persist::record_only(&app.store, record).await;
        return Err(error);
    }
}
