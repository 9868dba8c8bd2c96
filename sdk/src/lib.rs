//! Write Sluice functions in Rust.
//!
//! A function is one handler. The host has already received the request,
//! checked the caller's token and validated the body against the route's
//! schema; the handler only does the business logic:
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use sluice_sdk::{documents::Collection, queue, Error, Request, Response};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Todo { title: String, done: bool }
//!
//! #[sluice_sdk::handler]
//! fn create(req: Request) -> Result<Response, Error> {
//!     let user = req.claims().ok_or_else(|| Error::forbidden("login required"))?;
//!     let todo: Todo = req.json()?;                  // the host has already validated the schema
//!     let key = format!("{}/{}", user.subject, req.request_id());
//!     Collection::<Todo>::open("todos").put(&key, &todo)?;   // staged; the host commits
//!     queue::send("todo-created", &key)?;                    // same transaction
//!     Response::json(201, &todo)
//! }
//! # fn main() {}
//! ```
//!
//! Build the crate as a `cdylib` (`crate-type = ["cdylib"]`) with
//! `cargo build --target wasm32-wasip2 --release` and point a `sluice.toml`
//! manifest at the `.wasm` file. `guest-examples/` in the Sluice repository
//! holds complete functions: `todo` (which also caches a count), `channels`
//! (which also consumes its own messages), `janitor` (which runs on a
//! schedule) and `files` (uploads and downloads of blobs).
//!
//! # How a handler runs
//!
//! - **Every request gets a fresh instance.** Nothing survives from one
//!   request to the next: keep no state in globals, statics or thread-locals.
//!   State lives in [`documents`] and, for binary content, [`blobs`].
//! - **Writes and sends are staged.** [`documents::Collection::put`],
//!   [`documents::Collection::delete`], [`blobs::put`], [`blobs::delete`],
//!   [`blobs::Upload::keep_as`] and the [`queue`] sends take effect only if
//!   the handler returns `Ok`. The host then commits all of them in one
//!   transaction, and makes the staged blobs visible with it. On `Err`, or
//!   if the handler panics, it commits none and deletes the staged blobs.
//! - **The cache is not staged.** [`cache::set`], [`cache::delete`] and
//!   [`cache::increment`] take effect at once and stay even if the handler
//!   then fails. The cache is per host node and evicts entries when full:
//!   keep there only what can be computed again.
//! - **A handler may run more than once.** If a document the handler read was
//!   changed by another request before the commit, the host throws the staged
//!   work away and runs the handler again on a fresh instance. So a handler
//!   must have no effects outside `documents`, `blobs` and `queue`; its cache
//!   calls happen again on every run (an increment counts twice).
//! - **Errors are answers.** Each [`Error`] variant is an HTTP status. `?`
//!   works on every SDK call. A panic is a trap: the caller gets a 500 and
//!   the panic message goes to the host's log, as does anything the handler
//!   prints to stdout or stderr.
//!
//! # Files: blobs, uploads and downloads
//!
//! [`blobs`] keeps binary content by name, outside the database. A route
//! with `body = "raw"` in the manifest (and `accept` listing the media types
//! it takes) does not hand the body to the handler: the host streams it to a
//! staged file, and the handler decides with [`blobs::upload`] and
//! [`blobs::Upload::keep_as`] whether to store it. [`Response::blob`] answers
//! with a stored blob, which the host streams to the client, ranges and
//! conditional requests included. Neither way do the bytes pass through the
//! function's memory, so a file may be far larger than it.
//!
//! ```no_run
//! use sluice_sdk::{blobs, Error, Request, Response};
//!
//! #[sluice_sdk::handler]
//! fn handle(req: Request) -> Result<Response, Error> {
//!     let user = req.claims().ok_or_else(|| Error::forbidden("login required"))?;
//!     let name = format!("{}/avatar", user.subject);   // a user's blobs share a prefix
//!     match req.method() {
//!         "PUT" => {
//!             let upload = blobs::upload().ok_or_else(|| Error::bad_request("no body"))?;
//!             let stored = upload.keep_as(&name)?;   // staged; the host commits
//!             Response::json(201, &serde_json::json!({ "etag": stored.etag }))
//!         }
//!         _ if blobs::head(&name)?.is_none() => Err(Error::not_found("no avatar")),
//!         _ => Ok(Response::blob(&name)),
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! # The cache
//!
//! [`cache`] keeps byte values with an expiry in the host's memory, per
//! tenant: results that are expensive to compute and may be a little stale,
//! and counters such as rate limits. It is fast because it is not
//! transactional, and it forgets: entries expire, are evicted when the
//! tenant's cache is full, and are lost on a restart.
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_sdk::{cache, Error, Request, Response};
//!
//! #[sluice_sdk::handler]
//! fn handle(req: Request) -> Result<Response, Error> {
//!     let user = req.claims().ok_or_else(|| Error::forbidden("login required"))?;
//!     // A fixed one-minute window per user; counted even if this request fails.
//!     let calls = cache::increment(format!("rate/{}", user.subject), 1, Some(Duration::from_secs(60)))?;
//!     if calls > 100 {
//!         return Err(Error::forbidden("too many calls, wait a minute"));
//!     }
//!     Ok(Response::text(200, format!("call {calls} this minute")))
//! }
//! # fn main() {}
//! ```
//!
//! # Consumers: messages, document events and schedule ticks
//!
//! A function whose manifest has a `[messages]` table or `[[schedules]]`
//! also needs a consumer: one function marked [`on_message`]. It receives
//! what is sent to its topics with [`queue`], the host's document events
//! (topic `documents.<collection>.<created|updated|deleted>`, see
//! [`Message::event`]) and its schedule's ticks (topic `schedule.<name>`,
//! see [`Message::schedule`]). A component may have a handler, a consumer
//! or both, and exports only what it has.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use sluice_sdk::{documents::Collection, Message, MessageError};
//!
//! #[derive(Deserialize)]
//! struct Signup { user: String }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Welcome { user: String, attempt: u32 }
//!
//! #[sluice_sdk::on_message]
//! fn consume(msg: Message) -> Result<(), MessageError> {
//!     match msg.topic() {
//!         "signups" => {
//!             let signup: Signup = msg.json()?;          // a payload that does not parse gives up
//!             // Keyed by the message id: a redelivery overwrites, it does not add.
//!             let welcome = Welcome { user: signup.user, attempt: msg.attempt() };
//!             Collection::<Welcome>::open("welcomes").put(msg.id(), &welcome)?;
//!             Ok(())
//!         }
//!         other => Err(MessageError::give_up(format!("unexpected topic {other}"))),
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! - **Delivery is at least once.** After a crash or a lost lease the host
//!   delivers a message again, with the same [`Message::id`].
//! - **Effects happen exactly once.** What the consumer stages commits in one
//!   transaction together with the message's completion, so a message that
//!   was completed is not delivered again, and one that was not has left
//!   nothing behind. Only what it prints and its [`cache`] calls can happen
//!   twice.
//! - **Every message gets a fresh instance**, as every request does.
//! - **[`MessageError::Retry`] or [`MessageError::GiveUp`].** Either way
//!   nothing staged commits. A retry delivers the message again after a
//!   backoff, until the manifest's `max_attempts`; giving up, or running out
//!   of attempts, moves it to the dead letters. A panic commits nothing
//!   either, and its message goes to the host's log.
//!   [`Message::attempt`] says which delivery this is, starting at 1. `?`
//!   on an SDK call retries only when the store was unavailable, and gives
//!   up otherwise (see [`CallError`]).

#![deny(missing_docs)]

mod bindings;
pub mod blobs;
pub mod cache;
mod call;
pub mod config;
pub mod documents;
mod http;
mod message;
mod pages;
pub mod queue;

pub use call::CallError;
pub use http::{Claims, Error, IntoResponse, Json, Request, Response, status};
pub use message::{DocumentEvent, EventKind, Message, MessageError, ScheduleTick};

/// Binds each of the manifest's routes, by name, to a function: the usual
/// way to write a component that serves routes.
///
/// Each function (a path, or a closure) takes a [`Request`] and returns
/// `Result<R, Error>`, where `R` is a [`Response`] or anything else that is
/// [`IntoResponse`]. A route's
/// name is its `name` in `sluice.toml`, or the one derived from its method
/// and path: `POST /todos` is `post-todos`, `GET /todos/{id}` is
/// `get-todos-id` ([`Request::route`]). The host asks the component for its
/// names when it loads it, and refuses the deploy when a manifest route has
/// no function here, or a function here names no route of the manifest.
///
/// ```no_run
/// use sluice_sdk::{Error, Json, Request, Response};
///
/// sluice_sdk::routes! {
///     "hello" => hello,
///     "get-version" => version,
/// }
///
/// fn hello(req: Request) -> Result<Response, Error> {
///     let name = req.query("name").unwrap_or("world");
///     Ok(Response::text(200, format!("Hello, {name}!")))
/// }
///
/// fn version(_req: Request) -> Result<Json<&'static str>, Error> {
///     Ok(Json(env!("CARGO_PKG_VERSION")))
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! routes {
    ($($route:literal => $function:expr),+ $(,)?) => {
        #[doc(hidden)]
        pub struct __SluiceRoutes;

        impl $crate::__private::Guest for __SluiceRoutes {
            fn handle(
                request: $crate::__private::WitRequest,
            ) -> ::core::result::Result<$crate::__private::WitResponse, $crate::__private::WitError>
            {
                match request.route.as_str() {
                    $($route => $crate::__private::handle_with(request, $function),)+
                    other => $crate::__private::unknown_route(other),
                }
            }

            fn routes() -> ::core::option::Option<::std::vec::Vec<::std::string::String>> {
                ::core::option::Option::Some(::std::vec![$(::std::string::String::from($route)),+])
            }
        }

        $crate::wit::export!(__SluiceRoutes);
    };
}

/// Binds each topic the manifest subscribes to (and each schedule's
/// `schedule.<name>`) to a function: the consumer's counterpart of
/// [`routes!`].
///
/// Each function (a path, or a closure) takes a [`Message`] and returns
/// `Result<(), MessageError>`. A topic ending in `*` matches every topic
/// that starts with what comes before it (`"documents.notes.*"`: the
/// collection's `created`, `updated` and `deleted` events). The first
/// match wins. A message no entry matches goes to the dead letters at once,
/// with a message naming its topic: the manifest subscribes to something
/// the code does not handle.
///
/// ```no_run
/// use sluice_sdk::{Message, MessageError};
///
/// sluice_sdk::topics! {
///     "schedule.cleanup" => cleanup,
///     "documents.notes.*" => |msg| {
///         let event = msg.event().ok_or_else(|| MessageError::give_up("not an event"))?;
///         println!("{} {}", event.kind, event.key);
///         Ok(())
///     },
/// }
///
/// fn cleanup(msg: Message) -> Result<(), MessageError> {
///     let tick = msg.schedule().ok_or_else(|| MessageError::give_up("not a tick"))?;
///     println!("cleaning up at {}", tick.tick_ms);
///     Ok(())
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! topics {
    ($($topic:literal => $function:expr),+ $(,)?) => {
        #[doc(hidden)]
        pub struct __SluiceTopics;

        impl $crate::__private::MessageGuest for __SluiceTopics {
            fn handle(
                message: $crate::__private::WitMessage,
            ) -> ::core::result::Result<(), $crate::__private::WitMessageError> {
                $(
                    if $crate::__private::topic_matches($topic, &message.topic) {
                        return $crate::__private::handle_message_with(message, $function);
                    }
                )+
                $crate::__private::unknown_topic(&message.topic)
            }
        }

        $crate::wit_messages::export_messages!(__SluiceTopics);
    };
}

/// Marks the one function that handles all of this component's requests,
/// when it dispatches them itself; [`routes!`] binds a function to each
/// route by name instead, which is usually clearer.
///
/// The function must have the signature
/// `fn(Request) -> Result<Response, Error>`; its name does not matter. The
/// attribute keeps the function as written and generates the export the host
/// calls. It serves every route in the function's manifest; dispatch on
/// [`Request::route`] when there is more than one.
///
/// ```no_run
/// use sluice_sdk::{Error, Request, Response};
///
/// #[sluice_sdk::handler]
/// fn hello(req: Request) -> Result<Response, Error> {
///     let name = req.query("name").unwrap_or("world");
///     Ok(Response::text(200, format!("Hello, {name}!")))
/// }
/// # fn main() {}
/// ```
pub use sluice_sdk_macros::handler;

/// Marks the function that consumes this component's messages: queue
/// messages, document events and schedule ticks.
///
/// The function must have the signature
/// `fn(Message) -> Result<(), MessageError>`; its name does not matter. The
/// attribute keeps the function as written and generates the export the host
/// calls. A component has at most one consumer: it receives every topic the
/// manifest's `[messages]` subscribes to and every `[[schedules]]` tick, and
/// dispatches on [`Message::topic`]. It may have a [`handler`] too.
///
/// ```no_run
/// use sluice_sdk::{documents::Collection, Message, MessageError};
///
/// #[sluice_sdk::on_message]
/// fn consume(msg: Message) -> Result<(), MessageError> {
///     if let Some(event) = msg.event() {
///         // One entry per event; a redelivery writes the same key again.
///         let entry = format!("{} {}/{}", event.kind, event.collection, event.key);
///         Collection::<String>::open("audit").put(msg.id(), &entry)?;
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
pub use sluice_sdk_macros::on_message;

#[doc(hidden)]
pub use bindings::{wit, wit_messages};

/// What `#[handler]` and `#[on_message]` expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    use crate::wit::exports::sluice::function::handler;
    use crate::wit_messages::exports::sluice::function::message_handler;

    pub use handler::{Error as WitError, Guest, Request as WitRequest, Response as WitResponse};
    pub use message_handler::{
        Error as WitMessageError, Guest as MessageGuest, Message as WitMessage,
    };

    /// A [`crate::routes!`] arm: converts the request in and the result out.
    pub fn handle_with<R, F>(
        request: handler::Request,
        function: F,
    ) -> Result<handler::Response, handler::Error>
    where
        R: crate::IntoResponse,
        F: FnOnce(crate::Request) -> Result<R, crate::Error>,
    {
        function(crate::Request::from_wit(request))
            .and_then(crate::IntoResponse::into_response)
            .map(crate::Response::into_wit)
            .map_err(crate::Error::into_wit)
    }

    /// A route the host sent that [`crate::routes!`] does not list: the
    /// host's load-time check makes this unreachable, unless the manifest
    /// changed without a new deploy of this component.
    pub fn unknown_route(route: &str) -> Result<handler::Response, handler::Error> {
        Err(handler::Error::Internal(format!(
            "this component has no function for route {route:?}"
        )))
    }

    /// The export's body: converts the request in and the result out.
    pub fn handle(
        request: handler::Request,
        function: fn(crate::Request) -> Result<crate::Response, crate::Error>,
    ) -> Result<handler::Response, handler::Error> {
        function(crate::Request::from_wit(request))
            .map(crate::Response::into_wit)
            .map_err(crate::Error::into_wit)
    }

    /// Whether `topic` matches a [`crate::topics!`] entry: the same, or
    /// starting with what comes before the entry's trailing `*`.
    pub fn topic_matches(entry: &str, topic: &str) -> bool {
        match entry.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => entry == topic,
        }
    }

    /// A [`crate::topics!`] arm: converts the message in and the result out.
    pub fn handle_message_with<F>(
        message: message_handler::Message,
        function: F,
    ) -> Result<(), message_handler::Error>
    where
        F: FnOnce(crate::Message) -> Result<(), crate::MessageError>,
    {
        function(crate::Message::from_wit(message)).map_err(crate::MessageError::into_wit)
    }

    /// A message [`crate::topics!`] has no entry for: to the dead letters.
    pub fn unknown_topic(topic: &str) -> Result<(), message_handler::Error> {
        Err(message_handler::Error::GiveUp(format!(
            "this component has no function for topic {topic:?}"
        )))
    }

    /// The message export's body: converts the message in and the result out.
    pub fn handle_message(
        message: message_handler::Message,
        function: fn(crate::Message) -> Result<(), crate::MessageError>,
    ) -> Result<(), message_handler::Error> {
        function(crate::Message::from_wit(message)).map_err(crate::MessageError::into_wit)
    }
}

#[cfg(test)]
mod tests {
    use super::__private::topic_matches;

    #[test]
    fn topics_match_exactly_or_by_prefix() {
        assert!(topic_matches("jobs", "jobs"));
        assert!(!topic_matches("jobs", "jobs.more"));
        assert!(topic_matches(
            "documents.notes.*",
            "documents.notes.created"
        ));
        assert!(!topic_matches(
            "documents.notes.*",
            "documents.notebooks.created"
        ));
        assert!(topic_matches("*", "anything"));
    }
}
