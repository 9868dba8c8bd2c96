//! Validate: content type, body size, JSON syntax and the route's JSON Schema.
//! Returns the body bytes, checked; the function is never called on a body
//! that fails here. A raw body (`body = "raw"`) is checked for its media type
//! and size and streamed to a staged blob file instead, never held whole.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Body;
use serde_json::Value;

use super::receive::Routed;
use crate::catalog::RouteTarget;
use crate::config::manifest::{BodyKind, accepts};
use crate::problem::{FieldError, Problem};
use crate::store::{StagedFile, Store};

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let json = essence.eq_ignore_ascii_case("application/json")
        || essence.rsplit_once('+').is_some_and(|(ty, suffix)| {
            ty.to_ascii_lowercase().starts_with("application/")
                && suffix.eq_ignore_ascii_case("json")
        });
    // JSON is UTF-8 (RFC 8259 §8.1): a body labelled otherwise is refused
    // rather than read as something it says it is not.
    json && parts.all(|parameter| match parameter.split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => charset
            .trim()
            .trim_matches('"')
            .eq_ignore_ascii_case("utf-8"),
        _ => true,
    })
}

impl Error {
    /// The problem the client gets.
    pub fn problem(&self) -> Problem {
        let detail = self.to_string();
        match self {
            Error::UnsupportedMediaType(_) => Problem::new(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                detail,
            ),
            Error::TooLarge(_) => {
                Problem::new(413, "body-too-large", "Request body too large", detail)
            }
            Error::Timeout(_) => {
                Problem::new(408, "body-timeout", "Request body timed out", detail)
            }
            Error::OverQuota { .. } => Problem::new(
                507,
                "storage-quota-exceeded",
                "Storage quota exceeded",
                format!("{detail}; nothing was stored"),
            ),
            Error::Storage(_) => {
                Problem::new(503, "store-unavailable", "Store unavailable", detail)
                    .retry_after(Duration::from_secs(1))
            }
            Error::Read => Problem::new(400, "body-unreadable", "Request body unreadable", detail),
            Error::MalformedJson(_) => {
                Problem::new(400, "malformed-json", "Malformed JSON", detail)
            }
            Error::Schema(errors) => Problem::new(
                422,
                "schema-violation",
                "Body does not match the schema",
                detail,
            )
            .with_errors(errors.clone()),
        }
    }
}

/// Most bytes of a refused body read and dropped before the refusal is
/// sent: a client still sending then gets the answer, not a connection
/// reset under its feet (nginx's lingering close).
const LINGER_BYTES: u64 = 1024 * 1024;

/// Longest wait for those bytes.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads and drops what is left of `body`, up to [`LINGER_BYTES`].
async fn linger<B: Body>(mut body: std::pin::Pin<&mut B>) {
    let drain = async {
        let mut read = 0u64;
        while read <= LINGER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.remaining() as u64);
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
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

/// Reads and checks the body of a request `routed` to its target.
pub async fn body<B>(
    routed: &Routed<'_>,
    store: &Store,
    headers: &HeaderMap,
    body: B,
    timeout: Duration,
) -> Result<Validated, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let target = &routed.target;
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
) -> Result<StagedFile, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|ct| accepts(&target.accept, ct))
        .ok_or_else(|| {
            Error::UnsupportedMediaType(if target.accept.is_empty() {
                "type/subtype".to_owned()
            } else {
                target.accept.join(", ")
            })
        })?;
    let limit = target.max_body_bytes as u64;
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::TooLarge(target.max_body_bytes));
    }
    let tenant = &target.function.tenant;
    let storage = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "staging an upload failed");
        Error::Storage("the blob storage is unavailable".to_owned())
    };
    let headroom = store
        .storage_headroom(tenant)
        .await
        .map_err(|e| storage(&e))?;
    if let (Some(size), Some(headroom)) = (declared, headroom)
        && size > headroom
    {
        return Err(Error::OverQuota { size, headroom });
    }
    let mut writer = (store.files())
        .stage_stream(tenant, content_type)
        .map_err(|e| storage(&e))?;
    let mut body = std::pin::pin!(body);
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .map_err(|_| Error::Timeout(timeout))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|_| Error::Read)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if writer.size() + data.len() as u64 > limit {
            linger(body.as_mut()).await;
            return Err(Error::TooLarge(target.max_body_bytes));
        }
        writer.write(data).await.map_err(|e| storage(&e))?;
    }
    if let Some(headroom) = headroom
        && writer.size() > headroom
    {
        return Err(Error::OverQuota {
            size: writer.size(),
            headroom,
        });
    }
    writer.finish().await.map_err(|e| storage(&e))
}

/// Reads a body whole, within the route's size limit and `timeout`, without
/// looking at it: for a webhook route, the bytes its signature covers,
/// read before authentication can check it.
pub async fn read<B>(
    target: &RouteTarget,
    headers: &HeaderMap,
    body: B,
    timeout: Duration,
) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = target.max_body_bytes;
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(Error::TooLarge(limit));
    }
    let mut body = std::pin::pin!(body);
    let read = async {
        let mut bytes = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| Error::Read)?.into_data() else {
                continue; // trailers
            };
            if bytes.len() + data.len() > limit {
                linger(body.as_mut()).await;
                return Err(Error::TooLarge(limit));
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::Timeout(timeout))?
}

/// Reads a JSON body whole and checks it against the route's schema.
async fn json<B>(
    target: &RouteTarget,
    headers: &HeaderMap,
    body: B,
    timeout: Duration,
) -> Result<Bytes, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !is_json(headers) {
        return Err(Error::UnsupportedMediaType(
            "application/json, in UTF-8 (no charset, or charset=utf-8)".to_owned(),
        ));
    }
    let bytes = read(target, headers, body, timeout).await?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::MalformedJson(e.to_string()))?;
    if let Some(schema) = &target.schema {
        let errors = schema.errors(&value);
        if !errors.is_empty() {
            return Err(Error::Schema(errors));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        for (ct, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/json; Charset=\"UTF-8\"", true),
            ("application/json;charset=latin1", false),
            ("application/json; charset=utf-16", false),
            ("application/json; charset=iso-8859-1", false),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("text/x+json", false),
        ] {
            h.insert(http::header::CONTENT_TYPE, ct.parse().expect("header"));
            assert_eq!(is_json(&h), ok, "{ct}");
        }
    }
}
