//! Validate: content type, body size, JSON syntax and the route's JSON Schema.
//! Returns the body bytes, checked; the function is never called on a body
//! that fails here.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde_json::Value;

use super::receive::RouteTarget;
use crate::manifest::BodyKind;
use crate::problem::FieldError;

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// 415: not JSON.
    #[error("expected content-type application/json")]
    UnsupportedMediaType,
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

/// Reads and checks the body of a request for `target`.
pub async fn body<B>(
    target: &RouteTarget,
    headers: &HeaderMap,
    body: B,
    timeout: Duration,
) -> Result<Bytes, ValidateError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if target.body == BodyKind::None {
        return Ok(Bytes::new());
    }
    if !is_json(headers) {
        return Err(ValidateError::UnsupportedMediaType);
    }
    let limit = target.max_body_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
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
