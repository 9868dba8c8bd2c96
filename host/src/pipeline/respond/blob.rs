//! Serving a blob as the body of a function's response: streamed from its
//! committed bytes (a file or an object), with `If-None-Match` (304) and a
//! single `Range` (206 or 416), never read whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH,
    IF_RANGE, RANGE,
};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use super::{Body, Error};
use crate::store::{ByteStream, Store};

/// A `Range` no byte of the blob is in: 416.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsatisfiable;

/// A single byte range asked for with `Range`, resolved against `size`:
/// `Ok(None)` serves the whole blob (no range, several ranges, or one this
/// host does not read), `Err` when no byte of it exists.
pub fn byte_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => (start, end.min(size.saturating_sub(1))),
        (Ok(start), Err(_)) if end.is_empty() => (start, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if start.is_empty() => {
            if suffix == 0 {
                return Err(Unsatisfiable);
            }
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if range.0 >= size {
        return Err(Unsatisfiable);
    }
    Ok(Some(range))
}

/// Whether an `If-None-Match` value lists `etag` (weak comparison).
fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Streams blob `name` of `tenant` as the body of `response`, honouring
/// `If-None-Match` (304) and a single `Range` (206, or 416).
pub(super) async fn serve(
    store: &Store,
    tenant: &str,
    name: &str,
    request: &HeaderMap,
    mut response: http::Response<Body>,
) -> Result<http::Response<Body>, Error> {
    use Error as E;
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(blob = name, error = %e, "serving a blob failed");
        E::BlobUnavailable
    };
    let (stored, source) = match store.open_blob(tenant, name).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(E::BlobNotFound(name.to_owned())),
        Err(e) => return Err(unavailable(&e)),
    };
    let etag = format!("\"{}\"", stored.etag);
    let header = |name| {
        request
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, v);
    }
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if !headers.contains_key(CONTENT_TYPE)
        && let Ok(v) = HeaderValue::from_str(&stored.content_type)
    {
        headers.insert(CONTENT_TYPE, v);
    }
    // Conditions and ranges apply to a 200; with any other status the
    // function chose, the whole blob is served.
    if response.status() == StatusCode::OK
        && header(IF_NONE_MATCH).is_some_and(|v| none_match(v, &etag))
    {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(response);
    }
    let size = stored.size;
    let if_range_holds = header(IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header(RANGE) {
        Some(v) if response.status() == StatusCode::OK && if_range_holds => {
            byte_range(v, size).map_err(|Unsatisfiable| E::RangeNotSatisfiable { size })?
        }
        _ => None,
    };
    let (start, length) = match range {
        Some((start, end)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                response.headers_mut().insert(CONTENT_RANGE, v);
            }
            (start, end - start + 1)
        }
        None => (0, size),
    };
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    let stream = source
        .stream(start, length, CHUNK)
        .await
        .map_err(|e| unavailable(&e))?;
    *response.body_mut() = BlobBody {
        stream,
        remaining: length,
    }
    .boxed_unsync();
    Ok(response)
}

/// Streams a blob in chunks: memory stays about one chunk whatever its size.
struct BlobBody {
    stream: ByteStream,
    remaining: u64,
}

/// Bytes read from a blob's file per frame.
const CHUNK: usize = 64 * 1024;

impl hyper::body::Body for BlobBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.stream).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob's bytes are shorter than its size",
            )))),
            Poll::Ready(Some(Ok(chunk))) => {
                this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(byte_range("bytes=900-2000", 1000), Ok(Some((900, 999))));
        assert_eq!(byte_range("bytes=100-", 1000), Ok(Some((100, 999))));
        assert_eq!(byte_range("bytes=-10", 1000), Ok(Some((990, 999))));
        assert_eq!(byte_range("bytes=-5000", 1000), Ok(Some((0, 999))));
        assert_eq!(byte_range("bytes=1000-", 1000), Err(Unsatisfiable));
        assert_eq!(byte_range("bytes=-0", 1000), Err(Unsatisfiable));
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), Ok(None));
        assert_eq!(byte_range("bytes=9-1", 1000), Ok(None));
        assert_eq!(byte_range("items=0-1", 1000), Ok(None));
    }

    #[test]
    fn conditional_etags() {
        assert!(none_match("\"a\", \"b\"", "\"b\""));
        assert!(none_match("W/\"b\"", "\"b\""));
        assert!(none_match("*", "\"b\""));
        assert!(!none_match("\"c\"", "\"b\""));
    }
}
