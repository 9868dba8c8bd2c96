//! The admin API: its own listener (loopback by default), operator API keys,
//! JSON in and out, problem+json errors. The OpenAPI document is
//! `host/openapi.json`, served at `/v1/openapi.json`. This file is the
//! route table; each route's handler lives with its kind of resource.

mod config;
mod console;
mod dead_letters;
mod functions;
mod http;
mod invocations;
mod tenants;

use std::sync::Arc;

use ::http::{Method, Request, StatusCode};
use bytes::Bytes;
use hyper::body::Body;
use serde::Deserialize;
use serde_json::Value;
use tracing::Instrument;

pub use self::functions::parse_upload;
use self::http::{Answer, Response, operator, param, query, read_json, read_json_or_default};
use crate::catalog::{Deployer, Live};
use crate::metrics::Metrics;
use crate::policy::TenantPolicy;
use crate::problem::Problem;
use crate::runtime::Runtime;
use crate::store::Store;

/// The OpenAPI document of this API, checked in next to the crate.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// What the admin API works on.
pub struct Admin {
    /// Operator keys, tenants, versions, invocations, the queue.
    pub store: Store,
    /// The functions live now.
    pub live: Arc<Live>,
    /// Deploys, rollbacks and removals.
    pub deployer: Arc<Deployer>,
    /// Puts tenants' new settings in force.
    pub tenants: Arc<TenantPolicy>,
    /// The instance pool, for the metrics.
    pub runtime: Arc<Runtime>,
    /// The host's metrics.
    pub metrics: Arc<Metrics>,
}

/// Answers one admin request. Never fails: errors become problem responses.
pub async fn handle<B>(admin: &Admin, req: Request<B>, request_id: &str) -> Response
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if path == console::PREFIX || path.starts_with("/console/") {
        return console::serve(&method, &path, request_id);
    }
    let span = tracing::info_span!("admin", request_id = %request_id, %method, %path);
    let result = route(admin, req, &method, &path).instrument(span).await;
    http::response(result, request_id)
}

/// The route table.
async fn route<B>(
    admin: &Admin,
    req: Request<B>,
    method: &Method,
    path: &str,
) -> Result<Answer, Problem>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use Method as M;
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if (method, segments.as_slice()) == (&M::GET, &["v1", "openapi.json"]) {
        let doc = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
        return Ok(Answer::Json(StatusCode::OK, doc));
    }
    let op = operator(admin, &req).await?;
    let query = query(&req);
    match (method, segments.as_slice()) {
        (&M::GET, ["metrics"]) => invocations::metrics(admin).await,
        (&M::GET, ["v1", "invocations"]) => invocations::list(admin, &query).await,
        (&M::GET, ["v1", "invocations", id]) => invocations::show(admin, id).await,
        (&M::GET, ["v1", "stats"]) => invocations::stats(admin, &query).await,
        (&M::GET, ["v1", "dead-letters"]) => dead_letters::list(admin, &query).await,
        (&M::POST, ["v1", "dead-letters", "replay"]) => {
            dead_letters::replay(admin, None, &query, &op).await
        }
        (&M::GET, ["v1", "dead-letters", id]) => dead_letters::show(admin, id).await,
        (&M::POST, ["v1", "dead-letters", id, "replay"]) => {
            dead_letters::replay(admin, Some(id), &query, &op).await
        }
        (&M::GET, ["v1", "tenants"]) => tenants::list(admin).await,
        (&M::POST, ["v1", "tenants"]) => tenants::create(admin, read_json(req).await?, &op).await,
        (&M::GET, ["v1", "tenants", name]) => tenants::show(admin, name).await,
        (&M::GET, ["v1", "tenants", name, "openapi.json"]) => tenants::openapi(admin, name).await,
        (&M::DELETE, ["v1", "tenants", name]) => {
            let force = param(&query, "force") == Some("true");
            tenants::delete(admin, name, force, &op).await
        }
        (&M::PUT, ["v1", "tenants", name, "auth"]) => {
            tenants::set_auth(admin, name, read_json(req).await?, &op).await
        }
        (&M::DELETE, ["v1", "tenants", name, "auth"]) => {
            tenants::clear_auth(admin, name, &op).await
        }
        (&M::PUT, ["v1", "tenants", name, "rate"]) => {
            tenants::set_rate(admin, name, Some(read_json(req).await?), &op).await
        }
        (&M::DELETE, ["v1", "tenants", name, "rate"]) => {
            tenants::set_rate(admin, name, None, &op).await
        }
        (&M::PUT, ["v1", "tenants", name, "quota"]) => {
            tenants::set_quota(admin, name, read_json(req).await?, &op).await
        }
        (&M::GET, ["v1", "tenants", name, "config"]) => config::list(admin, name).await,
        (&M::PUT, ["v1", "tenants", name, "config", key]) => {
            config::set(admin, name, key, read_json(req).await?, &op).await
        }
        (&M::DELETE, ["v1", "tenants", name, "config", key]) => {
            config::unset(admin, name, key, param(&query, "function"), &op).await
        }
        (&M::POST, ["v1", "secrets", "reseal"]) => config::reseal(admin, &op).await,
        (&M::GET, ["v1", "functions"]) => functions::list(admin, param(&query, "tenant")).await,
        (&M::POST, ["v1", "tenants", tenant, "functions", name, "versions"]) => {
            let upload = functions::read_upload(admin, req).await?;
            functions::deploy(admin, tenant, name, upload, &op).await
        }
        (&M::GET, ["v1", "tenants", tenant, "functions", name, "versions"]) => {
            functions::versions(admin, tenant, name).await
        }
        (&M::POST, ["v1", "tenants", tenant, "functions", name, "rollback"]) => {
            let to: RollbackTo = read_json_or_default(req).await?;
            functions::rollback(admin, tenant, name, to.version, &op).await
        }
        (&M::DELETE, ["v1", "tenants", tenant, "functions", name]) => {
            functions::remove(admin, tenant, name).await
        }
        (
            _,
            ["v1", "tenants"]
            | ["v1", "tenants", _]
            | [
                "v1",
                "tenants",
                _,
                "rate" | "auth" | "quota" | "openapi.json" | "config",
            ]
            | ["v1", "tenants", _, "config", _]
            | ["v1", "secrets", "reseal"]
            | ["v1", "functions"]
            | ["v1", "invocations" | "dead-letters" | "stats"]
            | ["v1", "invocations" | "dead-letters", _]
            | ["v1", "dead-letters", _, "replay"]
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

/// What `POST …/rollback` takes: the version to go back to, if not the
/// one before the live one.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackTo {
    version: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_document_shares_the_problem_schema() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("the admin document is JSON");
        assert_eq!(
            doc["components"]["schemas"]["Problem"],
            crate::problem::json_schema()
        );
    }
}
