//! The message a consumer receives and the error it may finish it with
//! instead, plus the typed payloads of the messages the host itself makes
//! (document events and schedule ticks). Conversions from and to the WIT
//! types live here too, so `#[on_message]` only wires things up.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::wit_messages::exports::sluice::function::message_handler as wit;

/// One delivery of a message to this function.
///
/// Delivery is at least once: the same message (same [`Message::id`]) can
/// arrive again, with a higher [`Message::attempt`].
///
/// ```no_run
/// use sluice_sdk::{Message, MessageError};
///
/// fn log(msg: &Message) -> Result<(), MessageError> {
///     println!("{} on {} (attempt {}): {}", msg.id(), msg.topic(), msg.attempt(), msg.text()?);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    id: String,
    topic: String,
    payload: Vec<u8>,
    attempt: u32,
    enqueued_at: u64,
    idempotency_key: Option<String>,
}

impl Message {
    pub(crate) fn from_wit(message: wit::Message) -> Self {
        Self {
            id: message.id,
            topic: message.topic,
            payload: message.payload,
            attempt: message.attempt,
            enqueued_at: message.enqueued_at,
            idempotency_key: message.idempotency_key,
        }
    }

    /// The message's id: the same on every attempt, and for every function
    /// subscribed to its topic. It makes a good document key for effects
    /// that a redelivery must overwrite rather than repeat.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// let key = format!("processed/{}", msg.id());
    /// # }
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The topic it was sent to.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// let is_job = msg.topic() == "jobs";
    /// # }
    /// ```
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The payload as it was sent.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// let size = msg.payload().len();
    /// # }
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload as UTF-8 text. A payload that is not is
    /// [`MessageError::GiveUp`]: it will not be text on the next attempt either.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) -> Result<(), sluice_sdk::MessageError> {
    /// let line = msg.text()?;
    /// # Ok(()) }
    /// ```
    pub fn text(&self) -> Result<&str, MessageError> {
        std::str::from_utf8(&self.payload)
            .map_err(|err| MessageError::give_up(format!("payload is not UTF-8: {err}")))
    }

    /// The payload parsed as JSON into `T`. A payload that does not parse is
    /// [`MessageError::GiveUp`].
    ///
    /// ```no_run
    /// # use sluice_sdk::MessageError;
    /// #[derive(serde::Deserialize)]
    /// struct Job { key: String }
    ///
    /// # fn f(msg: sluice_sdk::Message) -> Result<(), MessageError> {
    /// let job: Job = msg.json()?;
    /// # Ok(()) }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, MessageError> {
        serde_json::from_slice(&self.payload)
            .map_err(|err| MessageError::give_up(format!("invalid message payload: {err}")))
    }

    /// 1 on the first delivery, then 2, 3, ... up to the manifest's
    /// `max_attempts`.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// let last_chance = msg.attempt() >= 5;
    /// # }
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the message was committed, in Unix milliseconds.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// let age_ms = msg.enqueued_at();
    /// # }
    /// ```
    pub fn enqueued_at(&self) -> u64 {
        self.enqueued_at
    }

    /// The idempotency key the sender gave, if any.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// let key = msg.idempotency_key().unwrap_or(msg.id());
    /// # }
    /// ```
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// The document event this message carries, when its topic is
    /// `documents.<collection>.<created|updated|deleted>` and its payload the
    /// host's; `None` otherwise.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// if let Some(event) = msg.event() {
    ///     println!("{} {}/{} is now version {}", event.kind, event.collection, event.key, event.version);
    /// }
    /// # }
    /// ```
    pub fn event(&self) -> Option<DocumentEvent> {
        let event: DocumentEvent = serde_json::from_slice(&self.payload).ok()?;
        let topic = format!("documents.{}.{}", event.collection, event.kind);
        (self.topic == topic).then_some(event)
    }

    /// The schedule tick this message carries, when its topic is
    /// `schedule.<name>` and its payload the host's; `None` otherwise.
    ///
    /// ```no_run
    /// # fn f(msg: sluice_sdk::Message) {
    /// if let Some(tick) = msg.schedule() {
    ///     println!("{} fired for {} ({} missed before)", tick.name, tick.tick, tick.missed);
    /// }
    /// # }
    /// ```
    pub fn schedule(&self) -> Option<ScheduleTick> {
        let tick: ScheduleTick = serde_json::from_slice(&self.payload).ok()?;
        (self.topic.strip_prefix("schedule.") == Some(tick.name.as_str())).then_some(tick)
    }
}

/// A document committed in this tenant: the payload of the host's
/// `documents.<collection>.<kind>` messages.
///
/// ```no_run
/// use sluice_sdk::{EventKind, Message};
///
/// fn is_new_post(msg: &Message) -> bool {
///     msg.event()
///         .is_some_and(|event| event.collection == "posts" && event.kind == EventKind::Created)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DocumentEvent {
    /// What happened to the document.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The collection it is in.
    pub collection: String,
    /// Its key.
    pub key: String,
    /// The version the change committed; a deletion counts as a change, so it reports the version of the tombstone (one past the last write).
    pub version: u64,
}

/// What happened to a document.
///
/// ```no_run
/// # use sluice_sdk::EventKind;
/// assert_eq!(EventKind::Created.as_str(), "created");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// It did not exist before.
    Created,
    /// It existed and was replaced.
    Updated,
    /// It was removed.
    Deleted,
}

impl EventKind {
    /// The name in the topic and the payload: `created`, `updated` or `deleted`.
    ///
    /// ```no_run
    /// # use sluice_sdk::EventKind;
    /// let topic = format!("documents.notes.{}", EventKind::Deleted.as_str());
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tick of one of the function's `[[schedules]]`: the payload of the
/// host's `schedule.<name>` messages.
///
/// Use [`ScheduleTick::tick_ms`] rather than the clock for "now", so that a
/// retried tick does the same as the first attempt.
///
/// ```no_run
/// use sluice_sdk::{Message, MessageError};
///
/// fn cutoff(msg: &Message) -> Result<u64, MessageError> {
///     let tick = msg.schedule().ok_or_else(|| MessageError::give_up("not a tick"))?;
///     Ok(tick.tick_ms.saturating_sub(24 * 60 * 60 * 1000))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScheduleTick {
    /// The schedule's `name` in the manifest.
    #[serde(rename = "schedule")]
    pub name: String,
    /// The time the tick was due, RFC 3339 in the schedule's timezone.
    pub tick: String,
    /// The same time in Unix milliseconds.
    pub tick_ms: u64,
    /// How many earlier ticks were skipped or collapsed into this one
    /// (after downtime, say); 0 normally.
    pub missed: u64,
}

/// Why a consumer did not finish a message. Either way the host commits
/// nothing the consumer staged.
///
/// Every SDK call converts into it, so `?` works throughout a consumer: a
/// store that could not be read is a retry, anything else gives up.
///
/// ```no_run
/// use sluice_sdk::{Message, MessageError};
///
/// fn charge(msg: &Message) -> Result<(), MessageError> {
///     let amount: u64 = msg.json()?;
///     if amount == 0 {
///         return Err(MessageError::give_up("nothing to charge"));
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// A passing problem: deliver the message again later, with backoff,
    /// until the manifest's `max_attempts`; then it goes to the dead letters.
    Retry(String),
    /// The message can never succeed: move it to the dead letters now.
    GiveUp(String),
}

impl MessageError {
    /// A passing problem: try again later.
    ///
    /// ```no_run
    /// # use sluice_sdk::MessageError;
    /// let err = MessageError::retry("the upstream document is not there yet");
    /// ```
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry(message.into())
    }

    /// The message can never succeed: dead-letter it now.
    ///
    /// ```no_run
    /// # use sluice_sdk::MessageError;
    /// let err = MessageError::give_up("unknown job kind");
    /// ```
    pub fn give_up(message: impl Into<String>) -> Self {
        Self::GiveUp(message.into())
    }

    /// The message the error was made with.
    ///
    /// ```no_run
    /// # use sluice_sdk::MessageError;
    /// assert_eq!(MessageError::retry("busy").message(), "busy");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            Self::Retry(message) | Self::GiveUp(message) => message,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Error {
        match self {
            Self::Retry(message) => wit::Error::Retry(message),
            Self::GiveUp(message) => wit::Error::GiveUp(message),
        }
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Retry(_) => "retry",
            Self::GiveUp(_) => "give up",
        };
        write!(f, "{kind}: {}", self.message())
    }
}

impl std::error::Error for MessageError {}

/// A value that does not serialize will not on the next attempt either.
impl From<serde_json::Error> for MessageError {
    fn from(err: serde_json::Error) -> Self {
        Self::give_up(format!("JSON serialization failed: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, payload: &str) -> Message {
        Message::from_wit(wit::Message {
            id: "m1".to_owned(),
            topic: topic.to_owned(),
            payload: payload.as_bytes().to_vec(),
            attempt: 2,
            enqueued_at: 1_795_000_000_000,
            idempotency_key: None,
        })
    }

    #[test]
    fn accessors_return_the_delivery() {
        let msg = message("jobs", r#"{"n":1}"#);
        assert_eq!(
            (msg.id(), msg.topic(), msg.attempt(), msg.enqueued_at()),
            ("m1", "jobs", 2, 1_795_000_000_000)
        );
        assert_eq!(msg.idempotency_key(), None);
        assert_eq!(msg.text(), Ok(r#"{"n":1}"#));
        assert_eq!(
            msg.json::<serde_json::Value>(),
            Ok(serde_json::json!({"n": 1}))
        );
        assert_eq!(msg.event(), None);
        assert_eq!(msg.schedule(), None);
    }

    #[test]
    fn a_payload_that_does_not_parse_is_given_up() {
        let msg = message("jobs", "{");
        assert!(matches!(
            msg.json::<serde_json::Value>(),
            Err(MessageError::GiveUp(_))
        ));
        let binary = Message {
            payload: vec![0xff, 0xfe],
            ..msg
        };
        assert!(matches!(binary.text(), Err(MessageError::GiveUp(_))));
    }

    #[test]
    fn document_events_parse_from_the_hosts_payload() {
        let payload = r#"{"event":"created","collection":"posts","key":"k1","version":3}"#;
        assert_eq!(
            message("documents.posts.created", payload).event(),
            Some(DocumentEvent {
                kind: EventKind::Created,
                collection: "posts".to_owned(),
                key: "k1".to_owned(),
                version: 3,
            })
        );
        let deleted = r#"{"event":"deleted","collection":"a.b","key":"k","version":1}"#;
        assert_eq!(
            message("documents.a.b.deleted", deleted)
                .event()
                .map(|event| event.kind),
            Some(EventKind::Deleted)
        );
    }

    #[test]
    fn an_event_needs_a_matching_topic_and_payload() {
        let payload = r#"{"event":"created","collection":"posts","key":"k1","version":3}"#;
        for (topic, payload) in [
            ("jobs", payload),
            ("documents.posts.updated", payload),
            ("documents.notes.created", payload),
            ("documents.posts.created", r#"{"event":"created"}"#),
            (
                "documents.posts.moved",
                r#"{"event":"moved","collection":"posts","key":"k1","version":3}"#,
            ),
        ] {
            assert_eq!(message(topic, payload).event(), None, "{topic} {payload}");
        }
    }

    #[test]
    fn schedule_ticks_parse_from_the_hosts_payload() {
        let payload = r#"{"schedule":"digest","tick":"2026-11-23T08:00:00+01:00","tick_ms":1795000000000,"missed":2}"#;
        assert_eq!(
            message("schedule.digest", payload).schedule(),
            Some(ScheduleTick {
                name: "digest".to_owned(),
                tick: "2026-11-23T08:00:00+01:00".to_owned(),
                tick_ms: 1_795_000_000_000,
                missed: 2,
            })
        );
        assert_eq!(message("schedule.other", payload).schedule(), None);
        assert_eq!(message("digest", payload).schedule(), None);
        assert_eq!(
            message("schedule.digest", r#"{"schedule":"digest"}"#).schedule(),
            None
        );
    }

    #[test]
    fn errors_convert_to_their_wit_variant() {
        assert!(matches!(
            MessageError::retry("later").into_wit(),
            wit::Error::Retry(m) if m == "later"
        ));
        assert!(matches!(
            MessageError::give_up("never").into_wit(),
            wit::Error::GiveUp(m) if m == "never"
        ));
        assert_eq!(MessageError::give_up("x").to_string(), "give up: x");
    }
}
