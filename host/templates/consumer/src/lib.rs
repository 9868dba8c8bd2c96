//! {{name}}: a Sluice function that consumes messages.
//!
//! `POST /events` sends the event to the topic `events` and answers at
//! once; the consumer counts each kind of event in a document, and
//! `GET /counts/{kind}` reads the count. The send commits with the request,
//! and the count with the message's completion: a message is counted
//! exactly once, even when the host delivers it again after a crash.

use serde::{Deserialize, Serialize};
use sluice_sdk::documents::Collection;
use sluice_sdk::{Error, Json, Message, MessageError, Request, Response, queue};

/// An event, as `POST /events` takes it and the topic carries it.
#[derive(Serialize, Deserialize)]
struct Event {
    kind: String,
}

/// How many events of one kind were consumed.
#[derive(Serialize, Deserialize, Default)]
struct Count {
    kind: String,
    count: u64,
}

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "send-event" => send,
    "get-count" => count,
}

// Each topic of sluice.toml's `[messages]`, and the function that consumes it.
sluice_sdk::topics! {
    "events" => consume,
}

fn counts() -> Collection<Count> {
    Collection::open("counts")
}

/// `POST /events`: 202; the event is counted when its message is consumed.
fn send(req: Request) -> Result<Response, Error> {
    let event: Event = req.json()?;
    queue::send("events", &event)?;
    Response::json(202, &event)
}

/// `GET /counts/{kind}`: how many events of the kind were consumed so far.
fn count(req: Request) -> Result<Json<Count>, Error> {
    let kind = req.param("kind").unwrap_or_default();
    let count = counts().get(kind)?.map(|doc| doc.value);
    Ok(Json(count.unwrap_or(Count {
        kind: kind.to_owned(),
        count: 0,
    })))
}

/// A message of `events`: adds one to its kind's count.
fn consume(msg: Message) -> Result<(), MessageError> {
    let event: Event = msg.json()?;
    let mut count = counts().get(&event.kind)?.map(|doc| doc.value).unwrap_or_default();
    count.kind.clone_from(&event.kind);
    count.count += 1;
    counts().put(&event.kind, &count)?;
    println!("{} events of kind {}", count.count, count.kind);
    Ok(())
}
