//! Validate: content type, body size, JSON syntax and the route's JSON Schema.
//! Returns the body bytes, checked; the function is never called on a body
//! that fails here. A raw body (`body = "raw"`) is checked for its media type
//! and size and streamed to a staged blob file instead, never held whole.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde_json::Value;

use super::receive::RouteTarget;
use crate::manifest::{BodyKind, accepts};
use crate::problem::FieldError;
use crate::store::{StagedFile, Store};

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// 415: not a media type the route takes.
    #[error("expected content-type {0}")]
    UnsupportedMediaType(String),
    /// 413: larger than the route allows.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// 408: the client stopped sending.
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    /// 400: the body could not be read.
    #[error("the body could not be read")]
    Read,
    /// 400: not JSON.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 507: the upload would take the tenant past its storage quota.
    #[error(
        "the upload of {size} bytes is more than the {headroom} bytes left of the tenant's storage quota"
    )]
    OverQuota {
        /// The declared body size.
        size: u64,
        /// What the tenant may still store.
        headroom: u64,
    },
    /// 503: the upload could not be staged.
    #[error("the upload could not be stored: {0}")]
    Storage(String),
    /// 422: valid JSON that the schema rejects.
    #[error("the body does not match the schema ({} error{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Schema(Vec<FieldError>),
}

/// A route's compiled JSON Schema.
pub struct Schema(jsonschema::Validator);

/// Refuses every external `$ref`: a tenant's schema must not make the host
/// fetch anything, from the network or the disk.
struct NoRetrieval;

impl jsonschema::Retrieve for NoRetrieval {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("external reference {uri} is not allowed").into())
    }
}

impl Schema {
    /// Compiles `schema` once, with a linear-time regex engine and no external references.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::options()
            .with_retriever(NoRetrieval)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .should_validate_formats(true)
            .build(schema)
            .map(Schema)
            .map_err(|e| e.to_string())
    }

    /// Every failing location in `instance`.
    pub fn errors(&self, instance: &Value) -> Vec<FieldError> {
        self.0
            .iter_errors(instance)
            .map(|e| FieldError {
                pointer: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.rsplit_once('+').is_some_and(|(ty, suffix)| {
            ty.to_ascii_lowercase().starts_with("application/")
                && suffix.eq_ignore_ascii_case("json")
        })
}

/// A checked request body.
#[derive(Debug, Default)]
pub struct Validated {
    /// The bytes the function receives (empty for a raw body).
    pub body: Bytes,
    /// A raw body, staged as a blob file.
    pub upload: Option<Arc<StagedFile>>,
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads and checks the body of a request for `target`.
pub async fn body<B>(
    target: &RouteTarget,
    store: &Store,
    headers: &HeaderMap,
    body: B,
    timeout: Duration,
) -> Result<Validated, ValidateError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match target.body {
        BodyKind::None => Ok(Validated::default()),
        BodyKind::Json => Ok(Validated {
            body: json(target, headers, body, timeout).await?,
            upload: None,
        }),
        BodyKind::Raw => Ok(Validated {
            body: Bytes::new(),
            upload: Some(Arc::new(raw(target, store, headers, body, timeout).await?)),
        }),
    }
}

/// Streams a raw body to a staged blob file, checking its media type, its
/// size (declared and actual) and the tenant's storage headroom. `timeout`
/// bounds the wait for each part of the body, not the whole upload.
async fn raw<B>(
    target: &RouteTarget,
    store: &Store,
    headers: &HeaderMap,
    body: B,
    timeout: Duration,
) -> Result<StagedFile, ValidateError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|ct| accepts(&target.accept, ct))
        .ok_or_else(|| {
            ValidateError::UnsupportedMediaType(if target.accept.is_empty() {
                "type/subtype".to_owned()
            } else {
                target.accept.join(", ")
            })
        })?;
    let limit = target.max_body_bytes as u64;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(ValidateError::TooLarge(target.max_body_bytes));
    }
    let tenant = &target.function.tenant;
    let storage = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "staging an upload failed");
        ValidateError::Storage("the blob storage is unavailable".to_owned())
    };
    let headroom = store
        .storage_headroom(tenant)
        .await
        .map_err(|e| storage(&e))?;
    if let (Some(size), Some(headroom)) = (declared, headroom)
        && size > headroom
    {
        return Err(ValidateError::OverQuota { size, headroom });
    }
    let dir = store.files().tenant(tenant).map_err(|e| storage(&e))?;
    let mut writer = dir.stage_stream(content_type).map_err(|e| storage(&e))?;
    let mut body = std::pin::pin!(body);
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .map_err(|_| ValidateError::Timeout(timeout))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|_| ValidateError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if writer.size() + data.len() as u64 > limit {
            return Err(ValidateError::TooLarge(target.max_body_bytes));
        }
        writer.write(&data).await.map_err(|e| storage(&e))?;
    }
    if let Some(headroom) = headroom
        && writer.size() > headroom
    {
        return Err(ValidateError::OverQuota {
            size: writer.size(),
            headroom,
        });
    }
    writer.finish().await.map_err(|e| storage(&e))
}

/// Reads a JSON body whole and checks it against the route's schema.
async fn json<B>(
    target: &RouteTarget,
    headers: &HeaderMap,
    body: B,
    timeout: Duration,
) -> Result<Bytes, ValidateError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !is_json(headers) {
        return Err(ValidateError::UnsupportedMediaType(
            "application/json".to_owned(),
        ));
    }
    let limit = target.max_body_bytes;
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(ValidateError::TooLarge(limit));
    }
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ValidateError::Timeout(timeout))?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ValidateError::TooLarge(limit)
            } else {
                ValidateError::Read
            }
        })?;
    let bytes = collected.to_bytes();
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ValidateError::MalformedJson(e.to_string()))?;
    if let Some(schema) = &target.schema {
        let errors = schema.errors(&value);
        if !errors.is_empty() {
            return Err(ValidateError::Schema(errors));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_failing_pointer_is_named() {
        let schema = Schema::compile(&json!({
            "type": "object",
            "properties": {"title": {"type": "string", "maxLength": 3}, "n": {"type": "integer"}},
            "required": ["title"]
        }))
        .expect("compile");
        let mut pointers: Vec<_> = schema
            .errors(&json!({"title": "long", "n": "x"}))
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        pointers.sort();
        assert_eq!(pointers, vec!["/n", "/title"]);
    }

    #[test]
    fn external_refs_are_refused_at_compile_time() {
        let err = Schema::compile(&json!({"$ref": "https://example.com/s.json"}));
        assert!(err.is_err());
        let err = Schema::compile(&json!({"$ref": "file:///etc/passwd"}));
        assert!(err.is_err());
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("text/x+json", false),
        ] {
            h.insert(http::header::CONTENT_TYPE, ct.parse().expect("header"));
            assert_eq!(is_json(&h), ok, "{ct}");
        }
    }
}
