//! {{name}}: a Sluice function that keeps files.
//!
//! `PUT /files/{name}` keeps the request body as one of the caller's files
//! and `GET /files/{name}` sends it back. The host streams both ways: the
//! bytes go to a staged blob and back out without passing through this
//! function's memory, and a file commits only if the handler returns `Ok`.

use serde_json::json;
use sluice_sdk::{Claims, Error, Request, Response, blobs};

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "upload-file" => upload,
    "download-file" => download,
}

/// Who is calling; both routes are `authenticated`, so always someone.
fn caller(req: &Request) -> Result<&Claims, Error> {
    req.claims()
        .ok_or_else(|| Error::unauthorized("sign in first"))
}

/// The caller's blob for the path's `{name}`: a user's files are one prefix.
fn blob_name(req: &Request) -> Result<String, Error> {
    let owner = &caller(req)?.subject;
    let name = req.param("name").unwrap_or_default();
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(Error::not_found(format!("no file {name:?}")));
    }
    Ok(format!("{owner}/{name}"))
}

/// `PUT /files/{name}`: 201 with the stored file's size and etag.
fn upload(req: Request) -> Result<Response, Error> {
    let blob = blob_name(&req)?;
    let upload =
        blobs::upload().ok_or_else(|| Error::bad_request("send the file as the request body"))?;
    let stored = upload.keep_as(&blob)?;
    Response::created(&json!({
        "name": req.param("name"),
        "size": stored.size,
        "content_type": stored.content_type,
        "etag": stored.etag,
    }))
}

/// `GET /files/{name}`: the file, streamed by the host (ranges and
/// `If-None-Match` included), or 404.
fn download(req: Request) -> Result<Response, Error> {
    let blob = blob_name(&req)?;
    if blobs::head(&blob)?.is_none() {
        return Err(Error::not_found(format!("no file {:?}", req.param("name"))));
    }
    Ok(Response::blob(&blob))
}
