//! Notes that expire. A note lives in collection `notes` under
//! `<owner>/<id>`; collection `expiries` indexes every note under its expiry
//! time, so the schedule `cleanup` finds the expired ones in key order and
//! stops at the first that is still live.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_sdk::documents::Collection;
use sluice_sdk::{Claims, Error, Message, MessageError, Request, Response};

#[derive(Serialize, Deserialize)]
struct Note {
    id: String,
    owner: String,
    text: String,
    /// Unix milliseconds.
    expires_at_ms: u64,
}

/// The body of `POST /notes` (schemas/create-note.json).
#[derive(Deserialize)]
struct NewNote {
    text: String,
    #[serde(deserialize_with = "whole_number")]
    ttl_seconds: u64,
}

/// A whole number as JSON Schema's `integer` has it: `17206.0` is one,
/// though serde's `u64` refuses it. The schema has checked the range.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=1e15).contains(f))
                .map(|f| f as u64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
}

/// An entry of the `expiries` index: where the note that expires then lives.
#[derive(Serialize, Deserialize)]
struct Expiry {
    note: String,
    expires_at_ms: u64,
}

/// The most notes one tick deletes, well within the host's limit on staged
/// writes; a backlog goes on at the next tick.
const CLEANUP_BATCH: usize = 1000;

fn notes() -> Collection<Note> {
    Collection::open("notes")
}

fn expiries() -> Collection<Expiry> {
    Collection::open("expiries")
}

/// Zero-padded to the width of `u64::MAX`, so that key order is time order.
fn expiry_key(expires_at_ms: u64, note: &str) -> String {
    format!("{expires_at_ms:020}/{note}")
}

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "create-note" => |req| create(&req, caller(&req)?),
    "list-notes" => |req| list(&req, caller(&req)?),
}

/// Who is calling; every route is `authenticated`, so always someone.
fn caller(req: &Request) -> Result<&Claims, Error> {
    req.claims()
        .ok_or_else(|| Error::unauthorized("sign in first"))
}

fn create(req: &Request, user: &Claims) -> Result<Response, Error> {
    let new: NewNote = req.json()?;
    let note = Note {
        id: req.request_id().to_owned(),
        owner: user.subject.clone(),
        text: new.text,
        expires_at_ms: now_ms()?.saturating_add(new.ttl_seconds.saturating_mul(1000)),
    };
    let key = format!("{}/{}", note.owner, note.id);
    expiries().put(
        expiry_key(note.expires_at_ms, &key),
        &Expiry {
            note: key.clone(),
            expires_at_ms: note.expires_at_ms,
        },
    )?;
    notes().put(&key, &note)?;
    Response::json(201, &note)
}

/// A page of the caller's notes that have not expired; `?cursor=` asks for
/// the next one. An expired note the janitor has not reached yet is hidden.
fn list(req: &Request, user: &Claims) -> Result<Response, Error> {
    let now = now_ms()?;
    let page = notes().list(format!("{}/", user.subject), 100, req.query("cursor"))?;
    let notes: Vec<Note> = page
        .documents
        .into_iter()
        .map(|doc| doc.value)
        // Checked on the note itself too: a subject containing `/` must not
        // reach into another user's prefix.
        .filter(|note| note.owner == user.subject && note.expires_at_ms > now)
        .collect();
    Response::json(
        200,
        &json!({ "notes": notes, "next_cursor": page.next_cursor }),
    )
}

fn now_ms() -> Result<u64, Error> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::internal("the clock is before 1970"))?;
    Ok(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

// The consumer's one topic: the ticks of its `cleanup` schedule.
sluice_sdk::topics! {
    "schedule.cleanup" => cleanup,
}

/// The `cleanup` tick: deletes every note that expired before the tick.
///
/// "Now" is the tick's own time, not the clock, so a retried tick deletes
/// exactly what the first attempt would have.
fn cleanup(msg: Message) -> Result<(), MessageError> {
    let tick = msg
        .schedule()
        .ok_or_else(|| MessageError::give_up("a cleanup message that is not a tick"))?;
    let expired: Vec<_> = expiries()
        .list_all("")
        .take_while(|entry| {
            entry
                .as_ref()
                .map_or(true, |entry| entry.value.expires_at_ms < tick.tick_ms)
        })
        .take(CLEANUP_BATCH)
        .collect::<Result<_, _>>()?;
    for entry in &expired {
        notes().delete(&entry.value.note)?;
        expiries().delete(&entry.key)?;
    }
    println!(
        "cleanup at {}: deleted {} expired notes",
        tick.tick,
        expired.len()
    );
    Ok(())
}
