//! Test guest: runs the blobs calls it is given and reports what each
//! returned, keeps uploads as told, and serves blobs by name, for the
//! staging, naming and streaming rules of `blobs`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sdk::blobs::{self, Metadata};
use sluice_sdk::{CallError, Error, Request, Response};

/// `POST /blobs/run`.
#[derive(Deserialize)]
struct Run {
    ops: Vec<Op>,
    /// Return an error after the ops, so nothing they staged commits.
    #[serde(default)]
    fail: bool,
}

/// One call, named by `"op"`.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Put {
        name: String,
        content_type: Option<String>,
        /// The content as text.
        data: Option<String>,
        /// The content, base64-encoded; wins over `data`.
        base64: Option<String>,
    },
    Get {
        name: String,
    },
    GetRange {
        name: String,
        offset: u64,
        length: u64,
    },
    Head {
        name: String,
    },
    Delete {
        name: String,
    },
    List {
        #[serde(default)]
        prefix: String,
        limit: Option<u32>,
        cursor: Option<String>,
    },
    ListAll {
        #[serde(default)]
        prefix: String,
    },
}

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    match req.path().rsplit('/').next() {
        Some("run") => run(req.json()?),
        Some("upload" | "small-upload") => upload(&req),
        Some("download") => download(&req),
        _ => Err(Error::not_found("no such probe")),
    }
}

fn run(run: Run) -> Result<Response, Error> {
    let results: Vec<Value> = run
        .ops
        .into_iter()
        .map(|op| apply(op).unwrap_or_else(|err| json!({ "error": variant(&err) })))
        .collect();
    if run.fail {
        return Err(Error::internal("failed on purpose after the blobs calls"));
    }
    Response::json(200, &results)
}

fn apply(op: Op) -> Result<Value, CallError> {
    Ok(match op {
        Op::Put {
            name,
            content_type,
            data,
            base64,
        } => {
            let bytes = match base64 {
                // A test that sends bad base64 has a bug; say so in the result.
                Some(encoded) => match STANDARD.decode(encoded) {
                    Ok(bytes) => bytes,
                    Err(err) => return Ok(json!({ "error": format!("probe: bad base64: {err}") })),
                },
                None => data.unwrap_or_default().into_bytes(),
            };
            let content_type = content_type
                .as_deref()
                .unwrap_or("application/octet-stream");
            metadata(&blobs::put(name, content_type, bytes)?)
        }
        Op::Get { name } => content(blobs::get(name)?),
        Op::GetRange {
            name,
            offset,
            length,
        } => content(blobs::get_range(
            name,
            offset..offset.saturating_add(length),
        )?),
        Op::Head { name } => blobs::head(name)?.as_ref().map_or(Value::Null, metadata),
        Op::Delete { name } => json!(blobs::delete(name)?),
        Op::List {
            prefix,
            limit,
            cursor,
        } => {
            let page = blobs::list(prefix, limit.unwrap_or(100), cursor.as_deref())?;
            let listed: Vec<Value> = page.blobs.iter().map(metadata).collect();
            json!({ "blobs": listed, "next_cursor": page.next_cursor })
        }
        Op::ListAll { prefix } => {
            let all = blobs::list_all(prefix).collect::<Result<Vec<_>, _>>()?;
            Value::Array(all.iter().map(metadata).collect())
        }
    })
}

/// `POST /blobs/upload` and `/blobs/small-upload`.
fn upload(req: &Request) -> Result<Response, Error> {
    let upload = blobs::upload().ok_or_else(|| Error::bad_request("this request has no upload"))?;
    let described = json!({
        "content_type": upload.content_type,
        "size": upload.size,
        "etag": upload.etag,
    });
    let kept = if req.query("keep") == Some("no") {
        Value::Null
    } else {
        let name = req
            .query("name")
            .ok_or_else(|| Error::bad_request("`?name=` is required"))?;
        metadata(&upload.keep_as(name)?)
    };
    let again = match req.query("again") {
        Some(name) => upload.keep_as(name).map_or_else(
            |err| json!({ "error": variant(&err) }),
            |meta| metadata(&meta),
        ),
        None => Value::Null,
    };
    if req.query("fail") == Some("yes") {
        return Err(Error::internal(
            "failed on purpose after keeping the upload",
        ));
    }
    Response::json(
        200,
        &json!({
            "upload": described,
            "kept": kept,
            "again": again,
            "offered_after_keep": blobs::upload().is_some(),
            "body_len": req.body().len(),
        }),
    )
}

/// `GET /blobs/download?name=`: no existence check, so the host's 404 shows.
fn download(req: &Request) -> Result<Response, Error> {
    let name = req
        .query("name")
        .ok_or_else(|| Error::bad_request("`?name=` is required"))?;
    Ok(Response::blob(name))
}

fn metadata(meta: &Metadata) -> Value {
    json!({
        "name": meta.name,
        "size": meta.size,
        "content_type": meta.content_type,
        "etag": meta.etag,
        "created": meta.created,
    })
}

fn content(bytes: Option<Vec<u8>>) -> Value {
    bytes.map_or(Value::Null, |bytes| {
        json!({
            "size": bytes.len(),
            "base64": STANDARD.encode(&bytes),
            "text": std::str::from_utf8(&bytes).ok(),
        })
    })
}

/// `<variant>: <host message>`, the WIT variant recovered from the SDK's
/// message (which names it in words), so tests can tell the kinds apart.
fn variant(err: &CallError) -> String {
    const KINDS: [(&str, &str); 3] = [
        ("blobs: invalid argument: ", "invalid"),
        ("blobs: limit exceeded: ", "limit-exceeded"),
        ("blobs: storage unavailable: ", "unavailable"),
    ];
    let message = err.message();
    KINDS
        .iter()
        .find_map(|(prefix, kind)| {
            message
                .strip_prefix(prefix)
                .map(|rest| format!("{kind}: {rest}"))
        })
        .unwrap_or_else(|| format!("other: {message}"))
}
