//! Test guest: stages writes and sends as told, and reports what its own
//! reads see, for the staged-read and listing rules of `documents` and the
//! options of `queue`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sdk::documents::Collection;
use sluice_sdk::queue::{self, SendOptions};
use sluice_sdk::{Error, Request, Response};

/// `POST /probe/documents`.
#[derive(Deserialize)]
struct Documents {
    /// The collection, `probe` by default.
    collection: Option<String>,
    #[serde(default)]
    put: Vec<String>,
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    get: Vec<String>,
    prefix: String,
    limit: u32,
}

/// `POST /probe/respond`: answer with this status and headers (and a
/// body of `body_bytes` bytes) after staging a write.
#[derive(Deserialize)]
struct Respond {
    status: u16,
    header: Option<(String, String)>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body_bytes: usize,
    /// Adds an `x-pad` header with a value of this many bytes.
    #[serde(default)]
    pad_header_bytes: usize,
}

/// `POST /probe/send`.
#[derive(Deserialize)]
struct Send {
    topic: String,
    idempotency_key: Option<String>,
    delay_ms: Option<u64>,
}

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    match req.path().rsplit('/').next() {
        Some("documents") => documents(req.json()?),
        Some("send") => send(req.json()?),
        Some("respond") => respond(&req, req.json()?),
        Some("spin") => spin(),
        _ => Err(Error::not_found("no such probe")),
    }
}

fn documents(probe: Documents) -> Result<Response, Error> {
    let docs = Collection::<Value>::open(probe.collection.as_deref().unwrap_or("probe"));
    for key in &probe.put {
        docs.put(key, &json!({ "key": key }))?;
    }
    let mut deleted = Vec::new();
    for key in &probe.delete {
        deleted.push(docs.delete(key)?);
    }
    let mut got = Vec::new();
    for key in &probe.get {
        got.push(
            docs.get(key)?
                .map(|d| json!({ "key": d.key, "version": d.version })),
        );
    }
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = docs.list(&probe.prefix, probe.limit, cursor.as_deref())?;
        pages.push(
            page.documents
                .iter()
                .map(|d| d.key.clone())
                .collect::<Vec<_>>(),
        );
        match page.next_cursor {
            Some(next) if pages.len() < 100 => cursor = Some(next),
            _ => break,
        }
    }
    Response::json(
        200,
        &json!({ "deleted": deleted, "got": got, "pages": pages }),
    )
}

fn send(send: Send) -> Result<Response, Error> {
    let options = SendOptions {
        delay: send.delay_ms.map(Duration::from_millis),
        idempotency_key: send.idempotency_key,
    };
    queue::send_with(&send.topic, &json!({ "probe": true }), options)?;
    Ok(Response::no_content())
}

fn respond(req: &Request, respond: Respond) -> Result<Response, Error> {
    Collection::<Value>::open("probe").put(req.request_id(), &json!({ "responded": true }))?;
    let mut response = Response::new(respond.status);
    for (name, value) in respond.header.into_iter().chain(respond.headers) {
        response = response.with_header(name, value);
    }
    if respond.pad_header_bytes > 0 {
        response = response.with_header("x-pad", "v".repeat(respond.pad_header_bytes));
    }
    if respond.body_bytes > 0 {
        response = response.with_body(vec![b'x'; respond.body_bytes]);
    }
    Ok(response)
}

/// Never returns: for the host's invocation deadline.
fn spin() -> Result<Response, Error> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
