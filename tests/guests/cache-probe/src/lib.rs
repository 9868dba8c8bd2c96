//! Test guest: runs the cache calls it is given and reports what each
//! returned, then fails if told to, for the rules of `cache`: expiry,
//! counters, limits, tenant isolation and no transactions.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_sdk::{CallError, Error, Request, Response, cache};

/// A `get` reports the value as text only up to this size, so that big
/// values do not make big responses.
const MAX_TEXT: usize = 64 * 1024;

/// `POST /cache/run`.
#[derive(Deserialize)]
struct Run {
    ops: Vec<Op>,
    /// Return an error after the ops; their effects must stay anyway.
    #[serde(default)]
    fail: bool,
}

/// One call, named by `"op"`.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Set {
        key: String,
        value: Option<String>,
        /// A value of this many `x` bytes; wins over `value`. Made here, as
        /// such values are larger than the request body may be.
        size: Option<usize>,
        ttl_ms: Option<u64>,
    },
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    Increment {
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    },
}

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let run: Run = req.json()?;
    let results: Vec<Value> = run
        .ops
        .into_iter()
        .map(|op| apply(op).unwrap_or_else(|err| json!({ "error": variant(&err) })))
        .collect();
    if run.fail {
        return Err(Error::internal("failed on purpose after the cache calls"));
    }
    Response::json(200, &results)
}

fn apply(op: Op) -> Result<Value, CallError> {
    let ttl = |ms: Option<u64>| ms.map(Duration::from_millis);
    Ok(match op {
        Op::Set {
            key,
            value,
            size,
            ttl_ms,
        } => {
            let value = match size {
                Some(size) => vec![b'x'; size],
                None => value.unwrap_or_default().into_bytes(),
            };
            cache::set(key, value, ttl(ttl_ms))?;
            json!("ok")
        }
        Op::Get { key } => cache::get(key)?.map_or(Value::Null, |bytes| {
            let text = (bytes.len() <= MAX_TEXT)
                .then(|| std::str::from_utf8(&bytes).ok())
                .flatten();
            json!({ "size": bytes.len(), "text": text })
        }),
        Op::Delete { key } => json!(cache::delete(key)?),
        Op::Increment { key, delta, ttl_ms } => json!(cache::increment(key, delta, ttl(ttl_ms))?),
    })
}

/// `<variant>: <host message>`, the WIT variant recovered from the SDK's
/// message (which names it in words), so tests can tell the kinds apart.
fn variant(err: &CallError) -> String {
    const KINDS: [(&str, &str); 3] = [
        ("cache: invalid argument: ", "invalid"),
        ("cache: value too large: ", "too-large"),
        ("cache: not a counter: ", "not-a-counter"),
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
