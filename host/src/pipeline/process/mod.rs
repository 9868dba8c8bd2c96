//! Process: hand the checked request to the tenant's component. A [`Call`]
//! is one request's invocation, which the persist stage runs (once, or
//! again after a write conflict) to its commit; each run returns what the
//! function answered, converted by the respond stage before anything
//! commits, and what it staged. The function sees no credentials and no
//! hop-by-hop headers; a function that traps, stops at a limit or answers
//! with an error commits nothing. A request with an `Idempotency-Key` its
//! route honours may be answered from its first commit instead
//! ([`idempotency`]).

pub mod idempotency;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use tracing::{Instrument, info_span};

use self::idempotency::{Found, Idempotent};
use super::authenticate::Principal;
use super::persist::{self, Attempt, Invocation, Invoked, Refused};
use super::receive::Routed;
use super::respond::{self, Answer};
use super::validate::Validated;
use super::{Pipeline, PipelineError};
use crate::catalog::RouteTarget;
use crate::config::limits::{Exceeded, Limit};
use crate::problem::Problem;
use crate::runtime::InvokeError;
use crate::runtime::bindings::{Claims, GuestError, GuestProblem, Request, Response};
use crate::store::{Outcome, StagedFile, Staging};

/// Why the function gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The function did not finish: it trapped, went over a limit or could
    /// not be started.
    #[error(transparent)]
    Stopped(#[from] InvokeError),
    /// The function answered with an error.
    #[error("the function returned an error: {0:?}")]
    Guest(GuestError),
    /// The request's `Idempotency-Key` could not be honoured.
    #[error(transparent)]
    Idempotency(#[from] idempotency::Error),
}

impl Error {
    /// The outcome its record gives it.
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Stopped(e) => e.outcome(),
            Error::Guest(_) => Outcome::GuestError,
            // A malformed key is refused before the invocation exists, so
            // only a reused one is ever recorded.
            Error::Idempotency(idempotency::Error::Reused | idempotency::Error::Invalid) => {
                Outcome::KeyReused
            }
            Error::Idempotency(idempotency::Error::Unavailable) => Outcome::Unavailable,
        }
    }

    /// The limit the function went over, if that is what stopped it.
    pub fn exceeded(&self) -> Option<&'static str> {
        match self {
            Error::Stopped(e) => e.exceeded(),
            Error::Guest(_) | Error::Idempotency(_) => None,
        }
    }

    /// The problem the client gets.
    pub fn problem(&self) -> Problem {
        match self {
            Error::Idempotency(e) => e.problem(),
            Error::Stopped(InvokeError::Limit(exceeded)) => limit_problem(exceeded),
            Error::Stopped(InvokeError::Trap(_)) => Problem::new(
                500,
                "function-trap",
                "Function failed",
                "the function trapped; nothing it staged was committed",
            ),
            Error::Stopped(InvokeError::StoreUnavailable) => Problem::new(
                503,
                "store-unavailable",
                "Store unavailable",
                "the database could not be read; nothing was written",
            )
            .retry_after(Duration::from_secs(1)),
            Error::Stopped(InvokeError::Instantiate(_)) => Problem::new(
                503,
                "function-unavailable",
                "Function unavailable",
                "the function could not be started; try again",
            )
            .retry_after(Duration::from_secs(1)),
            Error::Guest(g) => {
                let (status, slug, title, message) = match g {
                    GuestError::BadRequest(m) => (400, "bad-request", "Bad request", m),
                    GuestError::Unauthorized(m) => (401, "unauthorized", "Unauthorized", m),
                    GuestError::Forbidden(m) => (403, "forbidden", "Not allowed", m),
                    GuestError::NotFound(m) => (404, "not-found", "Not found", m),
                    GuestError::Conflict(m) => (409, "conflict", "Conflict", m),
                    GuestError::Internal(m) => (500, "function-error", "Function error", m),
                    GuestError::Problem(p) => return guest_problem(p),
                };
                Problem::new(status, slug, title, message.clone())
            }
        }
    }
}

/// A problem the function made itself. Its type is the function's own
/// (`fn:` and its kind, or an absolute URI kept as it is), so clients can
/// tell it from the host's; a status outside 400..=599 is the function's
/// mistake, answered 502.
fn guest_problem(p: &GuestProblem) -> Problem {
    let valid_kind = !p.kind.is_empty()
        && p.kind.len() <= 128
        && p.kind
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if !(400..=599).contains(&p.status) || !valid_kind {
        return Problem::new(
            502,
            "bad-problem",
            "Function answered a malformed problem",
            format!(
                "the function's problem has status {} and type {:?}: a status must be 400-599 \
                 and a type 1-128 visible characters",
                p.status, p.kind
            ),
        );
    }
    let title = if p.title.is_empty() {
        "Function error"
    } else {
        &p.title
    };
    Problem::custom(p.status, &p.kind, title, p.detail.clone())
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

/// One request's invocation of its route's function.
pub struct Call<'a> {
    pipeline: &'a Pipeline,
    target: &'a RouteTarget,
    request: Request,
    upload: Option<Arc<StagedFile>>,
    idempotent: Option<Idempotent>,
    invoked: Invoked,
}

impl<'a> Call<'a> {
    /// The call of `routed`'s function with the request as the function
    /// receives it: `parts` filtered, `caller`'s claims, the checked body;
    /// `idempotent` when it carries a key its route honours.
    pub fn new(
        pipeline: &'a Pipeline,
        routed: &'a Routed<'_>,
        parts: &Parts,
        caller: Option<Principal>,
        body: Validated,
        idempotent: Option<Idempotent>,
        invoked: Invoked,
    ) -> Self {
        let request = request(
            parts,
            &routed.target,
            routed.params.clone(),
            body.body,
            caller,
            &invoked,
        );
        Self {
            pipeline,
            target: &routed.target,
            request,
            upload: body.upload,
            idempotent,
            invoked,
        }
    }

    /// Answers with the stored answer to the same request: the function
    /// does not run, nothing commits.
    fn replay(&self, response: Response) -> Attempt<Result<Answer, PipelineError>> {
        let request_id = &self.invoked.request_id;
        match respond::success(request_id, response) {
            Ok(mut answer) => {
                answer.response.headers_mut().insert(
                    idempotency::REPLAYED,
                    http::HeaderValue::from_static("true"),
                );
                Attempt {
                    staging: Staging::default(),
                    outcome: Outcome::Replayed,
                    status: answer.response.status().as_u16(),
                    exceeded: None,
                    delivery: None,
                    answer: Ok(answer),
                }
            }
            Err(e) => Self::failed(e.into()),
        }
    }

    /// What the record of a failed run says, and the error the client gets.
    fn failed(error: PipelineError) -> Attempt<Result<Answer, PipelineError>> {
        let (outcome, exceeded) = match &error {
            PipelineError::Process(e) => (e.outcome(), e.exceeded()),
            _ => (Outcome::InvalidResponse, None),
        };
        Attempt {
            staging: Staging::default(),
            outcome,
            status: error.problem().status,
            exceeded,
            delivery: None,
            answer: Err(error),
        }
    }
}

impl Invocation for Call<'_> {
    type Answer = Result<Answer, PipelineError>;

    fn invoked(&self) -> &Invoked {
        &self.invoked
    }

    async fn attempt(&mut self, n: u32, deadline: tokio::time::Instant) -> Attempt<Self::Answer> {
        let (p, stage) = (self.pipeline, Instant::now());
        let function = &self.target.function;
        // Looked up on every run: after a conflict, the answer that won.
        let mut read = None;
        if let Some(idempotent) = &self.idempotent {
            match idempotent.lookup(&p.store, &function.tenant).await {
                Ok(Found::Answer(response)) => return self.replay(response),
                Ok(Found::Nothing { version }) => read = Some(version),
                Err(e) => return Self::failed(Error::Idempotency(e).into()),
            }
        }
        let ran = (p.runtime)
            .invoke(
                function,
                &p.store,
                &self.request,
                self.upload.clone(),
                deadline,
            )
            .instrument(info_span!("process", attempt = n))
            .await;
        let stage = p.metrics.stage_done("process", stage);
        let finished = match ran {
            Ok(finished) => finished,
            Err(e) => return Self::failed(Error::Stopped(e).into()),
        };
        let response = match finished.result {
            Ok(response) => response,
            // It failed because the database did: say so, as for a write.
            Err(_) if finished.store_down => {
                return Self::failed(Error::Stopped(InvokeError::StoreUnavailable).into());
            }
            Err(e) => return Self::failed(Error::Guest(e).into()),
        };
        let mut staging = finished.staging;
        if let (Some(idempotent), Some(version)) = (&self.idempotent, read) {
            idempotent.stage(&mut staging, version, &response);
        }
        // Converted before the commit: a response that cannot be sent must
        // not leave its writes behind.
        let request_id = &self.invoked.request_id;
        let answer = match info_span!("respond").in_scope(|| respond::success(request_id, response))
        {
            Ok(answer) => answer,
            Err(e) => return Self::failed(e.into()),
        };
        p.metrics.stage_done("respond", stage);
        Attempt {
            staging,
            outcome: Outcome::Ok,
            status: answer.response.status().as_u16(),
            exceeded: None,
            delivery: None,
            answer: Ok(answer),
        }
    }

    fn refused(&self, why: &persist::Error) -> Refused {
        Refused {
            status: why.problem().status,
            delivery: None,
        }
    }
}

/// Builds the WIT request the function receives.
fn request(
    parts: &Parts,
    target: &RouteTarget,
    params: Vec<(String, String)>,
    body: Bytes,
    principal: Option<Principal>,
    invoked: &Invoked,
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
        route: target.route.to_string(),
        pattern: target.pattern.to_string(),
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
        request_id: invoked.request_id.clone(),
    }
}
