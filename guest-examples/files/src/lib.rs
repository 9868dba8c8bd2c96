//! Files per user. A user's files are blobs named `<subject>/<file name>`, so
//! they are one prefix and the token's subject decides who owns what. The
//! host streams uploads and downloads: no file passes through this
//! function's memory.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use sluice_sdk::blobs::{self, Metadata};
use sluice_sdk::{Claims, Error, Request, Response};

/// The longest file name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// `GET /files` lists this many files unless `?limit=` says otherwise.
const DEFAULT_LIMIT: u32 = 100;

/// What RFC 8187 lets through unencoded in `filename*` (its `attr-char`).
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "upload-file" => |req| upload(caller(&req)?, param(&req, "name")?),
    "list-files" => |req| list(&req, caller(&req)?),
    "download-file" => |req| download(&caller(&req)?.subject, param(&req, "name")?),
    "delete-file" => |req| delete(caller(&req)?, param(&req, "name")?),
    "download-users-file" => |req| {
        download_for_admin(caller(&req)?, param(&req, "user")?, param(&req, "name")?)
    },
}

/// Who is calling; every route needs a token, so always someone.
fn caller(req: &Request) -> Result<&Claims, Error> {
    req.claims()
        .ok_or_else(|| Error::unauthorized("sign in first"))
}

/// The path parameter `name` of the route.
fn param<'r>(req: &'r Request, name: &str) -> Result<&'r str, Error> {
    req.param(name)
        .ok_or_else(|| Error::bad_request(format!("no {name} in the path")))
}

/// `PUT /files/{name}`: keeps the request body as the caller's file `name`;
/// 201 for a new file, 200 when it replaces one.
fn upload(user: &Claims, name: &str) -> Result<Response, Error> {
    check_name(name).map_err(Error::bad_request)?;
    let upload =
        blobs::upload().ok_or_else(|| Error::bad_request("send the file as the request body"))?;
    let blob = blob_name(&user.subject, name);
    let replaced = blobs::head(&blob)?.is_some();
    let stored = upload.keep_as(&blob)?;
    let status = if replaced { 200 } else { 201 };
    Response::json(
        status,
        &json!({
            "name": name,
            "size": stored.size,
            "content_type": stored.content_type,
            "etag": stored.etag,
        }),
    )
}

/// `GET /files?limit=&cursor=`: the caller's files, a page at a time.
fn list(req: &Request, user: &Claims) -> Result<Response, Error> {
    let limit = match req.query("limit") {
        Some(limit) => limit
            .parse::<u32>()
            .map_err(|_| Error::bad_request("`limit` must be a whole number"))?
            .clamp(1, 1000),
        None => DEFAULT_LIMIT,
    };
    let prefix = format!("{}/", user.subject);
    let page = blobs::list(&prefix, limit, req.query("cursor"))?;
    let files: Vec<Value> = page
        .blobs
        .iter()
        .filter_map(|blob| {
            let name = blob.name.strip_prefix(&prefix)?;
            // A subject that contains `/` ("alice/x") shares the prefix of
            // another ("alice"); a file name never has one, so what has
            // another `/` after the prefix belongs to someone else.
            (!name.contains('/')).then(|| file_json(name, blob))
        })
        .collect();
    Response::json(
        200,
        &json!({ "files": files, "next_cursor": page.next_cursor }),
    )
}

/// `GET /files/{name}`: the caller's file, streamed by the host.
fn download(owner: &str, name: &str) -> Result<Response, Error> {
    let not_found = || Error::not_found(format!("no file {name:?}"));
    // A name no upload accepts cannot exist.
    check_name(name).map_err(|_| not_found())?;
    let blob = blob_name(owner, name);
    if blobs::head(&blob)?.is_none() {
        return Err(not_found());
    }
    Ok(Response::blob(&blob).with_header("content-disposition", content_disposition(name)))
}

/// `GET /users/{user}/files/{name}`: any user's file, for an admin.
fn download_for_admin(user: &Claims, owner: &str, name: &str) -> Result<Response, Error> {
    // The manifest admits only admins here; checked again so that the
    // route's rule alone does not decide who reads everyone's files.
    if !user.has_role("admin") {
        return Err(Error::forbidden(
            "only an admin may read other users' files",
        ));
    }
    if owner.is_empty() || owner.contains('/') {
        return Err(Error::not_found(format!("no user {owner:?}")));
    }
    download(owner, name)
}

/// `DELETE /files/{name}`: 204, or 404 if the caller has no such file.
fn delete(user: &Claims, name: &str) -> Result<Response, Error> {
    let not_found = || Error::not_found(format!("no file {name:?}"));
    check_name(name).map_err(|_| not_found())?;
    if blobs::delete(blob_name(&user.subject, name))? {
        Ok(Response::no_content())
    } else {
        Err(not_found())
    }
}

fn blob_name(owner: &str, name: &str) -> String {
    format!("{owner}/{name}")
}

/// 1-200 characters, no `/` (it would reach into a prefix), no control
/// characters, and not hidden (a leading `.`).
fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "a file name is 1 to {MAX_NAME_CHARS} characters, not {chars}"
        ));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err("a file name has no `/` and no control characters".to_owned());
    }
    if name.starts_with('.') {
        return Err("a file name may not start with `.`".to_owned());
    }
    Ok(())
}

fn file_json(name: &str, blob: &Metadata) -> Value {
    json!({
        "name": name,
        "size": blob.size,
        "content_type": blob.content_type,
        "etag": blob.etag,
        "created": blob.created,
    })
}

/// `inline` with the file's name. A name that is not plain printable ASCII
/// gets an ASCII stand-in in `filename` and the exact name, UTF-8 and
/// percent-encoded, in `filename*` (RFC 6266), since a header value carries
/// neither quotes nor non-ASCII text safely.
fn content_disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    if plain == name {
        format!("inline; filename=\"{name}\"")
    } else {
        format!(
            "inline; filename=\"{plain}\"; filename*=UTF-8''{}",
            utf8_percent_encode(name, ATTR_CHAR)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_checked() {
        assert!(check_name("report.pdf").is_ok());
        assert!(check_name("a").is_ok());
        assert!(check_name(&"é".repeat(200)).is_ok());
        assert!(check_name(&"é".repeat(201)).is_err());
        for bad in ["", ".hidden", "..", "a/b", "tab\there"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_disposition_is_plain_ascii_with_the_exact_name_encoded() {
        assert_eq!(
            content_disposition("scan 1.pdf"),
            "inline; filename=\"scan 1.pdf\""
        );
        assert_eq!(
            content_disposition("naïve \"q\".png"),
            "inline; filename=\"na_ve _q_.png\"; filename*=UTF-8''na%C3%AFve%20%22q%22.png"
        );
    }
}
