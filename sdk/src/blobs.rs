//! Files: binary content (images, PDFs, uploads) by name, kept by the host
//! outside the database.
//!
//! Blobs behave like [`documents`](crate::documents): reads see what is
//! committed plus this invocation's own staged puts and deletes, and writes
//! are staged. A put lands in a temporary file; the host makes it visible
//! together with the invocation's database transaction if the handler
//! returns `Ok`, and deletes it otherwise. Concurrent writes to one name:
//! the last commit wins.
//!
//! A name is any string of 1 to 1024 bytes without control characters. The
//! host stores the content under a file name of its own, so a name is only a
//! key: `../x` or `/etc/x` reach no path. Names belong to the function's
//! tenant; a `/` in them is a convention for prefixes, as in
//! `<owner>/<file>`, that [`list`] can page through.
//!
//! ```no_run
//! use sluice_sdk::{blobs, Error, Request, Response};
//!
//! fn save_avatar(req: &Request, png: &[u8]) -> Result<Response, Error> {
//!     let user = req.claims().ok_or_else(|| Error::forbidden("login required"))?;
//!     let stored = blobs::put(format!("avatars/{}", user.subject), "image/png", png)?;
//!     Response::json(201, &serde_json::json!({ "etag": stored.etag }))
//! }
//! ```
//!
//! # Large bodies: uploads and downloads
//!
//! A blob's bytes need not pass through the function's memory. On a route
//! with `body = "raw"` the host streams the request body to a staged file
//! before the handler runs; [`upload`] describes it and [`Upload::keep_as`]
//! stores it. [`Response::blob`](crate::Response::blob) answers with a
//! committed blob, which the host streams to the client with `Range` and
//! `If-None-Match` support.
//!
//! ```no_run
//! use sluice_sdk::{blobs, Error, Request, Response};
//!
//! #[sluice_sdk::handler]
//! fn handle(req: Request) -> Result<Response, Error> {
//!     let name = req.param("name").ok_or_else(|| Error::bad_request("missing name"))?;
//!     match req.method() {
//!         "PUT" => {
//!             let upload = blobs::upload().ok_or_else(|| Error::bad_request("no body"))?;
//!             let stored = upload.keep_as(format!("files/{name}"))?;   // staged
//!             Response::json(201, &serde_json::json!({ "size": stored.size }))
//!         }
//!         _ => Ok(Response::blob(&format!("files/{name}"))),
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! Every call returns a [`CallError`], which `?` turns into the right error
//! for a handler or a consumer.

use std::ops::Range;

use crate::CallError;
use crate::pages::{Lister, Pages};
use crate::wit::sluice::function::blobs as wit;

/// How many blobs [`list_all`] asks the host for at a time.
const LIST_ALL_PAGE: u32 = 100;

/// What the host knows about a blob.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// if let Some(meta) = blobs::head("reports/2026.pdf")? {
///     println!("{} bytes of {}, etag {}", meta.size, meta.content_type, meta.etag);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The name it is stored under.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// The media type it was stored with, e.g. `image/png`.
    pub content_type: String,
    /// Hex SHA-256 of the content; the HTTP `ETag` when the host serves it.
    pub etag: String,
    /// When it was committed, in Unix milliseconds; 0 for a blob staged by
    /// this invocation.
    pub created: u64,
}

impl From<wit::Metadata> for Metadata {
    fn from(meta: wit::Metadata) -> Self {
        Self {
            name: meta.name,
            size: meta.size,
            content_type: meta.content_type,
            etag: meta.etag,
            created: meta.created,
        }
    }
}

/// One page of a [`list`].
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let page = blobs::list("avatars/", 50, None)?;
/// let total: u64 = page.blobs.iter().map(|blob| blob.size).sum();
/// let more = page.next_cursor.is_some();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The blobs, in name order.
    pub blobs: Vec<Metadata>,
    /// Pass to [`list`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A request body the host received for a route with `body = "raw"`.
///
/// The host streamed it to a staged file before the handler ran and checked
/// its media type against the route's `accept`. The handler sees its
/// metadata, not its bytes, and stores it with [`Upload::keep_as`]; an
/// upload it does not keep is deleted after the invocation.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let upload = blobs::upload().ok_or_else(|| Error::bad_request("send the file as the body"))?;
/// if upload.size == 0 {
///     return Err(Error::bad_request("the file is empty"));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The request's media type, already checked against the route's `accept`.
    pub content_type: String,
    /// Its length in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub etag: String,
}

impl Upload {
    /// Stages the upload under `name`, as [`put`] would, without copying it
    /// through the function's memory. An upload is kept under one name:
    /// keeping it again under another fails, and [`upload`] no longer
    /// returns it.
    ///
    /// ```no_run
    /// # use sluice_sdk::{blobs, Error};
    /// # fn f() -> Result<(), Error> {
    /// if let Some(upload) = blobs::upload() {
    ///     let stored = upload.keep_as("inbox/scan.pdf")?;
    ///     assert_eq!(stored.etag, upload.etag);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn keep_as(&self, name: impl AsRef<str>) -> Result<Metadata, CallError> {
        Ok(wit::keep_upload(name.as_ref())?.into())
    }
}

/// Stages `data` under `name` with `content_type`, creating or replacing the
/// blob, and returns its metadata (`created` is 0 until it commits).
///
/// The bytes put in one invocation are limited (`blob_bytes`, 64 MiB by
/// default): a put past that stops the function, and nothing commits. For
/// larger files, take them as an [`upload`].
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let stored = blobs::put("notes/hello.txt", "text/plain; charset=utf-8", b"hello")?;
/// assert_eq!(stored.size, 5);
/// # Ok(()) }
/// ```
pub fn put(
    name: impl AsRef<str>,
    content_type: impl AsRef<str>,
    data: impl AsRef<[u8]>,
) -> Result<Metadata, CallError> {
    Ok(wit::put(name.as_ref(), content_type.as_ref(), data.as_ref())?.into())
}

/// The whole blob, or `None` if there is none.
///
/// A blob larger than the function may hold in memory fails with a
/// "limit exceeded" error: read it a piece at a time with [`get_range`], or
/// serve it with [`Response::blob`](crate::Response::blob).
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let text = blobs::get("notes/hello.txt")?.ok_or_else(|| Error::not_found("no note"))?;
/// # Ok(()) }
/// ```
pub fn get(name: impl AsRef<str>) -> Result<Option<Vec<u8>>, CallError> {
    Ok(wit::get(name.as_ref())?)
}

/// The bytes of `range` of the blob, fewer if it ends first, or `None` if
/// there is no such blob. An empty range (`end <= start`) reads nothing.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// // The first 8 bytes: enough to tell a PNG from a JPEG.
/// let magic = blobs::get_range("uploads/photo", 0..8)?.unwrap_or_default();
/// let is_png = magic.starts_with(b"\x89PNG");
/// # Ok(()) }
/// ```
pub fn get_range(name: impl AsRef<str>, range: Range<u64>) -> Result<Option<Vec<u8>>, CallError> {
    let (offset, length) = offset_and_length(&range);
    Ok(wit::get_range(name.as_ref(), offset, length)?)
}

/// The host's `offset` and `length` for `range`; an empty range has length 0.
fn offset_and_length(range: &Range<u64>) -> (u64, u64) {
    (range.start, range.end.saturating_sub(range.start))
}

/// The blob's metadata, or `None` if there is none.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let exists = blobs::head("notes/hello.txt")?.is_some();
/// # Ok(()) }
/// ```
pub fn head(name: impl AsRef<str>) -> Result<Option<Metadata>, CallError> {
    Ok(wit::head(name.as_ref())?.map(Metadata::from))
}

/// Stages the removal of `name`; `true` if there was a blob to remove.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// if !blobs::delete("notes/hello.txt")? {
///     return Err(Error::not_found("no such note"));
/// }
/// # Ok(()) }
/// ```
pub fn delete(name: impl AsRef<str>) -> Result<bool, CallError> {
    Ok(wit::delete(name.as_ref())?)
}

/// Up to `limit` blobs whose name starts with `prefix`, in name order,
/// starting after `cursor` (a [`Page::next_cursor`] from an earlier call).
/// The host caps `limit` at 1000.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let first = blobs::list("alice/", 20, None)?;
/// if let Some(cursor) = &first.next_cursor {
///     let second = blobs::list("alice/", 20, Some(cursor))?;
/// }
/// # Ok(()) }
/// ```
pub fn list(prefix: impl AsRef<str>, limit: u32, cursor: Option<&str>) -> Result<Page, CallError> {
    let page = wit::list(prefix.as_ref(), limit, cursor)?;
    Ok(Page {
        blobs: page.blobs.into_iter().map(Metadata::from).collect(),
        next_cursor: page.next_cursor,
    })
}

/// Every blob whose name starts with `prefix`, in name order, fetched a page
/// at a time as the iterator advances. After an error it ends.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let used: u64 = blobs::list_all("alice/")
///     .map(|blob| blob.map(|blob| blob.size))
///     .sum::<Result<u64, _>>()?;
/// # Ok(()) }
/// ```
pub fn list_all(prefix: impl AsRef<str>) -> ListAll {
    ListAll(Pages::new(Prefix(prefix.as_ref().to_owned())))
}

/// The request's raw body, on a route with `body = "raw"`, unless it was
/// already kept; `None` on any other route.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f() -> Result<(), Error> {
/// let upload = blobs::upload().ok_or_else(|| Error::bad_request("send the file as the body"))?;
/// println!("{} bytes of {}", upload.size, upload.content_type);
/// # Ok(()) }
/// ```
pub fn upload() -> Option<Upload> {
    wit::upload().map(|upload| Upload {
        content_type: upload.content_type,
        size: upload.size,
        etag: upload.etag,
    })
}

/// The iterator [`list_all`] returns: every blob under a prefix, fetched a
/// page at a time. It owns its prefix, so it may outlive the argument.
///
/// ```no_run
/// # use sluice_sdk::{blobs, Error};
/// # fn f(user: &str) -> Result<(), Error> {
/// let mut files: blobs::ListAll = blobs::list_all(format!("{user}/"));
/// let first = files.next().transpose()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ListAll(Pages<Prefix>);

/// The blobs under a prefix, as [`Pages`] fetches them.
#[derive(Debug)]
struct Prefix(String);

impl Lister for Prefix {
    type Item = Metadata;

    fn page(&self, cursor: Option<&str>) -> Result<(Vec<Metadata>, Option<String>), CallError> {
        let page = list(&self.0, LIST_ALL_PAGE, cursor)?;
        Ok((page.blobs, page.next_cursor))
    }
}

impl Iterator for ListAll {
    type Item = Result<Metadata, CallError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

/// As for documents, only `unavailable` may pass: the host refused a name,
/// range or content type the function chose, or the blob is too large to
/// return, and either would happen again on every attempt.
impl From<wit::Error> for CallError {
    fn from(err: wit::Error) -> Self {
        match err {
            wit::Error::Invalid(message) => {
                CallError::permanent(format!("blobs: invalid argument: {message}"))
            }
            wit::Error::LimitExceeded(message) => {
                CallError::permanent(format!("blobs: limit exceeded: {message}"))
            }
            wit::Error::Unavailable(message) => {
                CallError::transient(format!("blobs: storage unavailable: {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, MessageError};

    #[test]
    fn a_range_becomes_offset_and_length() {
        assert_eq!(offset_and_length(&(0..100)), (0, 100));
        assert_eq!(offset_and_length(&(100..150)), (100, 50));
        assert_eq!(offset_and_length(&(10..10)), (10, 0));
        // A reversed range is empty, as it is for slices' `is_empty`.
        let (start, end) = (10, 5);
        assert_eq!(offset_and_length(&(start..end)), (10, 0));
        assert_eq!(offset_and_length(&(1..u64::MAX)), (1, u64::MAX - 1));
    }

    /// A named type rather than `impl Iterator`, which in edition 2024
    /// would borrow whatever `impl AsRef<str>` the caller passed.
    #[test]
    fn list_all_outlives_a_borrowed_prefix() {
        let _all: ListAll = {
            let prefix = String::from("a/");
            list_all(&prefix)
        };
    }

    #[test]
    fn metadata_converts_field_by_field() {
        let meta = Metadata::from(wit::Metadata {
            name: "a/b.png".to_owned(),
            size: 7,
            content_type: "image/png".to_owned(),
            etag: "ab12".to_owned(),
            created: 1_700_000_000_000,
        });
        assert_eq!(
            meta,
            Metadata {
                name: "a/b.png".to_owned(),
                size: 7,
                content_type: "image/png".to_owned(),
                etag: "ab12".to_owned(),
                created: 1_700_000_000_000,
            }
        );
    }

    /// In a handler all three are a 500 (see `call`); in a consumer only
    /// unavailable storage is worth a retry.
    #[test]
    fn only_unavailable_storage_is_transient() {
        for (err, transient, prefix) in [
            (
                wit::Error::Invalid("name".to_owned()),
                false,
                "blobs: invalid argument: ",
            ),
            (
                wit::Error::LimitExceeded("too big".to_owned()),
                false,
                "blobs: limit exceeded: ",
            ),
            (
                wit::Error::Unavailable("disk".to_owned()),
                true,
                "blobs: storage unavailable: ",
            ),
        ] {
            let err = CallError::from(err);
            assert_eq!(err.is_transient(), transient, "{err:?}");
            assert!(err.message().starts_with(prefix), "{err:?}");
            assert!(matches!(Error::from(err.clone()), Error::Internal(_)));
            let retried = matches!(MessageError::from(err), MessageError::Retry(_));
            assert_eq!(retried, transient);
        }
    }
}
