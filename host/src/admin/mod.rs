//! The admin API: its own listener (loopback by default), operator API keys,
//! JSON in and out, problem+json errors. The OpenAPI document is
//! `host/openapi.json`, served at `/v1/openapi.json`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument;

mod functions;

use crate::app::App;
use crate::catalog::Origin;
use crate::config::AuthConfig;
use crate::manifest::is_valid_name;
use crate::pipeline::ResponseBody;
use crate::pipeline::authenticate::Keyring;
use crate::problem::{self, Problem};
use crate::quota::Rate;
use crate::store::{StoreError, TenantQuota};

/// The OpenAPI document of this API, checked in next to the crate.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

type Response = http::Response<ResponseBody>;

/// What a route answers.
enum Answer {
    /// A JSON body.
    Json(StatusCode, Value),
    /// Prometheus text.
    Text(String),
}

/// Answers one admin request. Never fails: errors become problem responses.
pub async fn handle<B>(app: &App, req: Request<B>) -> Response
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let request_id = uuid::Uuid::now_v7().to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("admin", request_id = %request_id, %method, %path);
    let result = route(app, req, &method, &path).instrument(span).await;
    let mut response = match result {
        Ok(Answer::Json(status, body)) => json_response(status, &body),
        Ok(Answer::Text(text)) => {
            let mut out = http::Response::new(crate::pipeline::respond::full(text));
            out.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            out
        }
        Err(problem) => problem_response(problem, &request_id),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn route<B>(
    app: &App,
    req: Request<B>,
    method: &Method,
    path: &str,
) -> Result<Answer, Problem>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments == ["v1", "openapi.json"] && method == Method::GET {
        let doc = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
        return Ok(Answer::Json(StatusCode::OK, doc));
    }
    let operator = authenticate(app, &req).await?;
    if segments == ["metrics"] && method == Method::GET {
        let depth = app.store.queue_depth().await.map_err(unavailable)?;
        let dead = app.store.dead_letter_counts().await.map_err(unavailable)?;
        let text = app.metrics.render(&depth, &dead, app.runtime.instances());
        return Ok(Answer::Text(text));
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "invocations"]) => {
            let limit = match param("limit") {
                None => 50,
                Some(n) => n
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| invalid(format!("limit {n:?} must be 1 to 1000")))?,
            };
            let rows = app
                .store
                .invocations(param("tenant"), param("function"), limit)
                .await
                .map_err(unavailable)?;
            Ok(Answer::Json(StatusCode::OK, json!({ "invocations": rows })))
        }
        (&Method::GET, ["v1", "tenants"]) => {
            let tenants = app.store.tenants().await.map_err(unavailable)?;
            Ok(Answer::Json(StatusCode::OK, json!({ "tenants": tenants })))
        }
        (&Method::POST, ["v1", "tenants"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct NewTenant {
                name: String,
            }
            let new: NewTenant = read_json(req).await?;
            if !is_valid_name(&new.name) {
                return Err(invalid(format!(
                    "tenant name {:?} must be 1-63 characters of a-z, 0-9 and -, not starting with -",
                    new.name
                )));
            }
            if !app
                .store
                .create_tenant(&new.name, &operator)
                .await
                .map_err(unavailable)?
            {
                return Err(Problem::new(
                    409,
                    "tenant-exists",
                    "Tenant exists",
                    format!("tenant {:?} exists already", new.name),
                ));
            }
            let tenant = app.store.tenant(&new.name).await.map_err(unavailable)?;
            tracing::info!(tenant = %new.name, operator = %operator, "tenant created");
            Ok(Answer::Json(StatusCode::CREATED, json!(tenant)))
        }
        (&Method::GET, ["v1", "tenants", name]) => {
            let tenant = app
                .store
                .tenant(name)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| no_tenant(name))?;
            let mut body = json!(tenant);
            body["functions"] = json!(app.functions_of(name));
            Ok(Answer::Json(StatusCode::OK, body))
        }
        (&Method::DELETE, ["v1", "tenants", name]) => {
            app.store
                .tenant(name)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| no_tenant(name))?;
            let catalog = app.catalog.load_full();
            let units: Vec<_> = catalog.units_of(name).collect();
            let force = param("force") == Some("true");
            if !units.is_empty() {
                // Functions loaded from the functions directories cannot be
                // taken down at run time, so even `force` cannot remove them.
                let from_dirs = units.iter().any(|u| u.origin == Origin::Directory);
                let why = if from_dirs {
                    "some come from the functions directories; remove their manifests and restart first"
                } else if force {
                    ""
                } else {
                    "pass ?force=true to delete it with its functions and data"
                };
                if from_dirs || !force {
                    return Err(Problem::new(
                        409,
                        "tenant-in-use",
                        "Tenant in use",
                        format!("tenant {name:?} has {} function(s): {why}", units.len()),
                    ));
                }
                for unit in units {
                    crate::deploy::remove(app, name, &unit.function.name)
                        .await
                        .map_err(functions::refused)?;
                }
            }
            app.store.delete_tenant(name).await.map_err(unavailable)?;
            tracing::info!(tenant = %name, operator = %operator, "tenant deleted");
            Ok(Answer::Json(StatusCode::OK, json!({ "deleted": name })))
        }
        (&Method::PUT, ["v1", "tenants", name, "auth"]) => {
            let auth: AuthConfig = read_json(req).await?;
            if auth.keys.is_empty() && auth.jwks_url.is_none() {
                return Err(invalid(
                    "keys: at least one key, or a jwks_url, is needed".into(),
                ));
            }
            if auth.keys.iter().any(|k| k.public_key_file.is_some()) {
                return Err(invalid(
                    "keys: give public keys as public_key_pem; the admin API reads no files".into(),
                ));
            }
            let keyring = Keyring::new(&auth).map_err(|e| invalid(format!("keys: {e}")))?;
            // Fetched now, so a wrong URL is refused here rather than
            // failing every request later.
            if let Some(jwks) = keyring.jwks() {
                jwks.refresh(&app.jwks_client, std::time::Duration::ZERO)
                    .await
                    .map_err(invalid)?;
            }
            if !app
                .store
                .set_tenant_auth(name, Some(&auth))
                .await
                .map_err(unavailable)?
            {
                return Err(no_tenant(name));
            }
            app.tenant_keyrings.set(name, Some(keyring));
            tracing::info!(tenant = %name, keys = auth.keys.len(), operator = %operator, "tenant token settings set");
            tenant_answer(app, name).await
        }
        (&Method::DELETE, ["v1", "tenants", name, "auth"]) => {
            if !app
                .store
                .set_tenant_auth(name, None)
                .await
                .map_err(unavailable)?
            {
                return Err(no_tenant(name));
            }
            app.tenant_keyrings.set(name, None);
            tracing::info!(tenant = %name, operator = %operator, "tenant token settings removed");
            tenant_answer(app, name).await
        }
        (&Method::PUT, ["v1", "tenants", name, "rate"]) => {
            let rate: Rate = read_json(req).await?;
            if !(rate.requests_per_second.is_finite() && rate.requests_per_second > 0.0)
                || rate.burst == Some(0)
            {
                return Err(invalid(
                    "requests_per_second must be a positive number and burst at least 1".into(),
                ));
            }
            set_rate(app, name, Some(rate), &operator).await
        }
        (&Method::DELETE, ["v1", "tenants", name, "rate"]) => {
            set_rate(app, name, None, &operator).await
        }
        (&Method::PUT, ["v1", "tenants", name, "quota"]) => {
            let quota: TenantQuota = read_json(req).await?;
            if !app
                .store
                .set_tenant_quota(name, quota)
                .await
                .map_err(unavailable)?
            {
                return Err(no_tenant(name));
            }
            app.store.storage_quotas().set(name, quota.max_stored_bytes);
            tracing::info!(tenant = %name, ?quota, operator = %operator, "tenant quota set");
            tenant_answer(app, name).await
        }
        (&Method::GET, ["v1", "functions"]) => functions::list(app, param("tenant")).await,
        (&Method::POST, ["v1", "tenants", tenant, "functions", name, "versions"]) => {
            let upload = functions::read_upload(app, req).await?;
            functions::deploy(app, tenant, name, upload, &operator).await
        }
        (&Method::GET, ["v1", "tenants", tenant, "functions", name, "versions"]) => {
            functions::versions(app, tenant, name).await
        }
        (&Method::POST, ["v1", "tenants", tenant, "functions", name, "rollback"]) => {
            #[derive(Deserialize, Default)]
            #[serde(deny_unknown_fields)]
            struct To {
                version: Option<u32>,
            }
            let to: To = read_json_or_default(req).await?;
            functions::rollback(app, tenant, name, to.version, &operator).await
        }
        (&Method::DELETE, ["v1", "tenants", tenant, "functions", name]) => {
            functions::remove(app, tenant, name).await
        }
        (
            _,
            ["v1", "tenants"]
            | ["v1", "tenants", _]
            | ["v1", "tenants", _, "rate" | "auth" | "quota"]
            | ["v1", "functions"]
            | ["v1", "tenants", _, "functions", _]
            | ["v1", "tenants", _, "functions", _, "versions" | "rollback"],
        ) => Err(Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(Problem::new(
            404,
            "not-found",
            "Not found",
            format!("no admin route for {path}; see /v1/openapi.json"),
        )),
    }
}

/// Stores and applies tenant `name`'s rate; answers the tenant.
async fn set_rate(
    app: &App,
    name: &str,
    rate: Option<Rate>,
    operator: &str,
) -> Result<Answer, Problem> {
    if !app
        .store
        .set_tenant_rate(name, rate)
        .await
        .map_err(unavailable)?
    {
        return Err(no_tenant(name));
    }
    app.quotas.set(name, rate);
    tracing::info!(tenant = %name, ?rate, operator = %operator, "tenant rate set");
    tenant_answer(app, name).await
}

/// 200 with tenant `name` as stored now.
async fn tenant_answer(app: &App, name: &str) -> Result<Answer, Problem> {
    let tenant = app.store.tenant(name).await.map_err(unavailable)?;
    Ok(Answer::Json(StatusCode::OK, json!(tenant)))
}

/// The operator key's id, or 401.
async fn authenticate<B>(app: &App, req: &Request<B>) -> Result<String, Problem> {
    let unauthenticated =
        |detail: &str| Problem::new(401, "unauthenticated", "Authentication required", detail);
    let key = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthenticated("an operator key is required: authorization: Bearer sk_… (create one with `sluice key create`)")
        })?;
    app.store
        .check_operator_key(key.trim())
        .await
        .map_err(unavailable)?
        .ok_or_else(|| unauthenticated("the operator key is unknown or revoked"))
}

async fn read_json<B, T>(req: Request<B>) -> Result<T, Problem>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: serde::de::DeserializeOwned,
{
    let bytes = read_body(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("the body is not valid: {e}")))
}

/// Like [`read_json`], but an empty body is `T::default()`.
async fn read_json_or_default<B, T>(req: Request<B>) -> Result<T, Problem>
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

fn invalid(detail: String) -> Problem {
    Problem::new(422, "invalid-request", "Invalid request", detail)
}

fn no_tenant(name: &str) -> Problem {
    Problem::new(
        404,
        "no-such-tenant",
        "No such tenant",
        format!("no tenant {name:?}"),
    )
}

fn unavailable(e: StoreError) -> Problem {
    tracing::error!(error = %e, "admin store access failed");
    Problem::new(
        503,
        "store-unavailable",
        "Store unavailable",
        "the database could not be reached",
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut out = http::Response::new(crate::pipeline::respond::full(body.to_string()));
    *out.status_mut() = status;
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}

fn problem_response(mut problem: Problem, request_id: &str) -> Response {
    problem.request_id = request_id.to_owned();
    if problem.status >= 500 {
        tracing::error!(detail = %problem.detail, "admin request failed");
    }
    let mut out = http::Response::new(crate::pipeline::respond::full(problem.to_json()));
    *out.status_mut() =
        StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(problem::CONTENT_TYPE),
    );
    if problem.status == 401 {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    out
}
