//! Test guest: sends messages and writes notes over HTTP, and consumes
//! `jobs` and the events of collection `notes`, recording what it did in
//! collection `effects`: for delivery, retries, dead letters and
//! exactly-once effects.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_sdk::documents::Collection;
use sluice_sdk::queue::{self, SendOptions};
use sluice_sdk::{Error, Message, MessageError, Request, Response};

/// `POST /consumer/send`.
#[derive(Deserialize)]
struct Send {
    topic: String,
    payload: Value,
    delay_ms: Option<u64>,
    idempotency_key: Option<String>,
}

/// `POST /consumer/send-many`: one message per payload, in one commit.
#[derive(Deserialize)]
struct SendMany {
    topic: String,
    payloads: Vec<Value>,
}

/// The payload of a message on topic `jobs`.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Job {
    /// Count one more delivery at `effects/<key>`.
    Record { key: String },
    /// Retry the first `fail_times` attempts, then record.
    Flaky { key: String, fail_times: u32 },
    /// Retry every attempt, so it ends in the dead letters.
    Poison { key: String },
    /// Give up at once.
    GiveUp { key: String },
    /// Record, then keep the instance busy for `ms` milliseconds.
    Slow { key: String, ms: u64 },
    /// Stage a write, then retry: nothing may commit.
    StageThenFail { key: String },
    /// Record, then send the same job to `jobs` again: a loop without end
    /// but for the host's hop limit.
    Loop { key: String },
}

/// What `record` keeps at `effects/<key>`: a delivery that committed twice
/// shows `count` 2.
#[derive(Default, Serialize, Deserialize)]
struct Effect {
    count: u64,
    attempts: Vec<u32>,
    message_id: String,
}

fn effects() -> Collection<Value> {
    Collection::open("effects")
}

fn notes() -> Collection<Value> {
    Collection::open("notes")
}

#[sluice_sdk::handler]
fn handle(req: Request) -> Result<Response, Error> {
    match (req.method(), req.param("key")) {
        ("POST", None) if req.path().ends_with("/send-many") => send_many(req.json()?),
        ("POST", None) => send(req.json()?),
        ("GET", None) => list_effects(),
        ("PUT", Some(key)) => {
            notes().put(key, &req.json()?)?;
            Ok(Response::new(200))
        }
        ("DELETE", Some(key)) if notes().delete(key)? => Ok(Response::new(200)),
        ("DELETE", Some(key)) => Err(Error::not_found(format!("no note {key}"))),
        _ => Err(Error::not_found("no such route")),
    }
}

fn send(send: Send) -> Result<Response, Error> {
    let options = SendOptions {
        delay: send.delay_ms.map(Duration::from_millis),
        idempotency_key: send.idempotency_key,
    };
    queue::send_with(&send.topic, &send.payload, options)?;
    Response::json(202, &json!({ "queued": true }))
}

fn send_many(batch: SendMany) -> Result<Response, Error> {
    for payload in &batch.payloads {
        queue::send(&batch.topic, payload)?;
    }
    Response::json(202, &json!({ "queued": batch.payloads.len() }))
}

/// Every effect, all pages, as `[{"key", "value"}]`.
fn list_effects() -> Result<Response, Error> {
    let all = effects()
        .list_all("")
        .map(|doc| doc.map(|doc| json!({ "key": doc.key, "value": doc.value })))
        .collect::<Result<Vec<_>, _>>()?;
    Response::json(200, &all)
}

#[sluice_sdk::on_message]
fn consume(msg: Message) -> Result<(), MessageError> {
    match msg.topic() {
        "jobs" => return run(&msg, msg.json()?),
        // The load script's trivial consumer: nothing to do.
        "bench" => return Ok(()),
        _ => {}
    }
    let event = msg
        .event()
        .ok_or_else(|| MessageError::give_up(format!("unexpected topic {}", msg.topic())))?;
    let key = format!("event-{}-{}-{}", event.collection, event.key, event.version);
    effects().put(
        key,
        &json!({ "kind": event.kind.as_str(), "topic": msg.topic(), "message_id": msg.id() }),
    )?;
    Ok(())
}

fn run(msg: &Message, job: Job) -> Result<(), MessageError> {
    match job {
        Job::Record { key } => record(msg, &key),
        Job::Flaky { key, fail_times } if msg.attempt() <= fail_times => Err(MessageError::retry(
            format!("flaky attempt {} of {key}", msg.attempt()),
        )),
        Job::Flaky { key, .. } => record(msg, &key),
        Job::Poison { key } => Err(MessageError::retry(format!("poison message {key}"))),
        Job::GiveUp { key } => Err(MessageError::give_up(format!("cannot handle {key}"))),
        Job::Slow { key, ms } => {
            record(msg, &key)?;
            // Wall-clock busy wait, so a test can kill the host mid-flight
            // with the write staged but not committed.
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            Ok(())
        }
        Job::Loop { key } => {
            record(msg, &key)?;
            queue::send("jobs", &json!({ "op": "loop", "key": key }))?;
            Ok(())
        }
        Job::StageThenFail { key } => {
            effects().put(&key, &json!({ "staged_by": msg.id() }))?;
            Err(MessageError::retry(format!("staged then refused {key}")))
        }
    }
}

/// Reads `effects/<key>` and writes it back with one more delivery counted.
fn record(msg: &Message, key: &str) -> Result<(), MessageError> {
    let effects = Collection::<Effect>::open("effects");
    let mut effect = effects.get(key)?.map(|doc| doc.value).unwrap_or_default();
    effect.count += 1;
    effect.attempts.push(msg.attempt());
    msg.id().clone_into(&mut effect.message_id);
    effects.put(key, &effect)?;
    Ok(())
}
