//! Admin routes for functions: list, deploy (multipart upload), versions,
//! rollback, removal. The work itself is in [`crate::catalog::deploy`].

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use serde_json::{Value, json};

use super::Admin;
use super::http::{Answer, invalid, unavailable};
use crate::catalog::{DeployError, Origin, Upload};
use crate::problem::Problem;

/// Live functions (of one tenant, or all): where each comes from, its
/// version, routes, topics and schedules.
pub(super) async fn list(admin: &Admin, tenant: Option<&str>) -> Result<Answer, Problem> {
    let deployed = admin
        .store
        .deployed_functions(tenant)
        .await
        .map_err(unavailable)?;
    let catalog = admin.live.load_full();
    let functions: Vec<Value> = catalog
        .units()
        .filter(|u| tenant.is_none_or(|t| &*u.function.tenant == t))
        .map(|unit| {
            let f = &unit.function;
            let stored = deployed
                .iter()
                .find(|d| d.tenant == *f.tenant && d.name == *f.name);
            json!({
                "tenant": &*f.tenant,
                "name": &*f.name,
                "origin": unit.origin,
                "version": f.version,
                "versions": stored.map(|d| d.versions),
                "activated_at": stored.map(|d| d.activated_at),
                "activated_by": stored.map(|d| &d.activated_by),
                "routes": unit.routes.iter().map(|(m, p, _)| format!("{m} {p}")).collect::<Vec<_>>(),
                "topics": unit.topics,
                "schedules": unit.schedules.iter().map(|s| &s.schedule.manifest.name).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "functions": functions }),
    ))
}

/// Reads a deploy's `multipart/form-data` body: a `manifest` part, a
/// `component` part and one `schema` part per schema file, its filename
/// the path the manifest names it with.
pub(super) async fn read_upload<B>(admin: &Admin, req: Request<B>) -> Result<Upload, Problem>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let limit = admin.deployer.max_upload_bytes as u64;
    parse_upload(&content_type, req.into_body(), limit).await
}

/// [`read_upload`]'s parsing: `body` sent as `content_type`, at most `limit` bytes.
pub async fn parse_upload<B>(content_type: &str, body: B, limit: u64) -> Result<Upload, Problem>
where
    B: Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "a deploy is multipart/form-data with parts manifest, component and schema (one per schema file)",
        )
    })?;
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut upload = Upload::default();
    let (mut manifest, mut component) = (false, false);
    let refused = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } => Problem::new(
            413,
            "upload-too-large",
            "Upload too large",
            format!("the upload is over {limit} bytes ([admin] max_upload_bytes)"),
        ),
        other => invalid(format!("the multipart body is invalid: {other}")),
    };
    while let Some(field) = multipart.next_field().await.map_err(refused)? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(refused)?;
        match name.as_str() {
            "manifest" => {
                upload.manifest = String::from_utf8(bytes.to_vec())
                    .map_err(|_| invalid("the manifest is not UTF-8 text".into()))?;
                manifest = true;
            }
            "component" => {
                upload.component = bytes;
                component = true;
            }
            "schema" => {
                let path = filename.ok_or_else(|| {
                    invalid("a schema part needs a filename: the path the manifest names".into())
                })?;
                let path = path.strip_prefix("./").unwrap_or(&path).to_owned();
                upload.schemas.insert(path, bytes.to_vec());
            }
            other => {
                return Err(invalid(format!(
                    "unexpected part {other:?}; a deploy has parts manifest, component and schema"
                )));
            }
        }
    }
    for (present, part) in [(manifest, "manifest"), (component, "component")] {
        if !present {
            return Err(invalid(format!("the {part} part is missing")));
        }
    }
    Ok(upload)
}

/// Deploys `upload`; 201 with the new version.
pub(super) async fn deploy(
    admin: &Admin,
    tenant: &str,
    name: &str,
    upload: Upload,
    operator: &str,
) -> Result<Answer, Problem> {
    let version = (admin.deployer)
        .deploy(tenant, name, upload, operator)
        .await
        .map_err(refused)?;
    Ok(Answer::Json(
        StatusCode::CREATED,
        json!({ "tenant": tenant, "name": name, "version": version, "active": true }),
    ))
}

/// The versions of a deployed function, newest first.
pub(super) async fn versions(admin: &Admin, tenant: &str, name: &str) -> Result<Answer, Problem> {
    let versions = admin
        .store
        .versions(tenant, name)
        .await
        .map_err(unavailable)?;
    if versions.is_empty() {
        let unit = admin.live.load().unit(tenant, name).map(|u| u.origin);
        let detail = if unit == Some(Origin::Directory) {
            format!("{tenant}/{name} comes from a functions directory and has no versions")
        } else {
            format!("no deployed function {tenant}/{name}")
        };
        return Err(Problem::new(
            404,
            "no-such-function",
            "No such function",
            detail,
        ));
    }
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "tenant": tenant, "name": name, "versions": versions }),
    ))
}

/// Makes an earlier version live again.
pub(super) async fn rollback(
    admin: &Admin,
    tenant: &str,
    name: &str,
    version: Option<u32>,
    operator: &str,
) -> Result<Answer, Problem> {
    let version = (admin.deployer)
        .rollback(tenant, name, version, operator)
        .await
        .map_err(refused)?;
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "tenant": tenant, "name": name, "version": version, "active": true }),
    ))
}

/// Takes a deployed function down and deletes its versions.
pub(super) async fn remove(admin: &Admin, tenant: &str, name: &str) -> Result<Answer, Problem> {
    admin.deployer.remove(tenant, name).await.map_err(refused)?;
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "deleted": format!("{tenant}/{name}") }),
    ))
}

/// The problem a refused deploy, rollback or removal answers with.
pub(super) fn refused(e: DeployError) -> Problem {
    let detail = e.to_string();
    let (status, kind, title) = match &e {
        DeployError::NoTenant(_) => (404, "no-such-tenant", "No such tenant"),
        DeployError::NotFound(_) => (404, "no-such-function", "No such function"),
        DeployError::Manifest(_) => (422, "invalid-manifest", "Invalid manifest"),
        DeployError::Component(_) => (422, "invalid-component", "Invalid component"),
        DeployError::Unit(_) => (
            422,
            "component-mismatch",
            "Component does not fit its manifest",
        ),
        DeployError::Route(_) => (409, "route-conflict", "Route conflict"),
        DeployError::Limits(_) => (422, "limit-above-ceiling", "Limit above the host's ceiling"),
        DeployError::FromDirectory { .. } => (
            409,
            "function-from-directory",
            "Function from a functions directory",
        ),
        DeployError::Quota { .. } => (403, "quota-exceeded", "Quota exceeded"),
        DeployError::Storage(_) | DeployError::Store(_) => {
            tracing::error!(error = %e, "deploy failed on storage");
            (503, "store-unavailable", "Store unavailable")
        }
    };
    Problem::new(status, kind, title, detail)
}
