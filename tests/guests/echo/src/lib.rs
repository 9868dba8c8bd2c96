//! Test guest: answers with everything it received, and writes one line to
//! stdout and one to stderr; `?fail=unauthorized|problem|bad-problem` makes
//! it fail so instead. `?config=A,B` adds the configuration values named
//! (and prints them, for the host to blank out the secrets).

use serde_json::{Map, Value, json};
use sluice_sdk::{Error, Request, Response, config, status};

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    println!("echo stdout: {} {}", req.method(), req.path());
    eprintln!("echo stderr: request {}", req.request_id());
    match req.query("fail") {
        Some("unauthorized") => return Err(Error::unauthorized("the share password is wrong")),
        Some("problem") => {
            return Err(Error::problem(
                status::UNPROCESSABLE_CONTENT,
                "out-of-stock",
                "Out of stock",
                "only 2 left of item 17",
            ));
        }
        Some("bad-problem") => return Err(Error::problem(200, "fine", "Fine", "not a problem")),
        _ => {}
    }

    let body = serde_json::from_slice::<Value>(req.body())
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(req.body()).into_owned()));
    let claims = req.claims().map(|claims| {
        json!({
            "subject": claims.subject,
            "tenant": claims.tenant,
            "roles": claims.roles,
            "all": claims.all(),
        })
    });
    let config: Map<String, Value> = (req.query("config").unwrap_or_default().split(','))
        .filter(|name| !name.is_empty())
        .map(|name| {
            let value = config::get(name);
            println!(
                "echo config {name}={}",
                value.as_deref().unwrap_or("(none)")
            );
            (name.to_owned(), json!(value))
        })
        .collect();
    Response::json(
        200,
        &json!({
            "config": config,
            "route": req.route(),
            "pattern": req.pattern(),
            "method": req.method(),
            "path": req.path(),
            "params": object(req.params()),
            "query": object(req.query_pairs()),
            "headers": object(req.headers()),
            "body": body,
            "claims": claims,
            "request_id": req.request_id(),
        }),
    )
}

/// Pairs as a JSON object; a repeated name keeps its last value.
fn object<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Map<String, Value> {
    pairs
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect()
}
