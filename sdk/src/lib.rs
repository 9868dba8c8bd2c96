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
//! holds two complete functions, `todo` and `channels`.
//!
//! # How a handler runs
//!
//! - **Every request gets a fresh instance.** Nothing survives from one
//!   request to the next: keep no state in globals, statics or thread-locals.
//!   State lives in [`documents`].
//! - **Writes and sends are staged.** [`documents::Collection::put`],
//!   [`documents::Collection::delete`] and the [`queue`] sends take effect
//!   only if the handler returns `Ok`. The host then commits all of them in
//!   one transaction. On `Err`, or if the handler panics, it commits none.
//! - **A handler may run more than once.** If a document the handler read was
//!   changed by another request before the commit, the host throws the staged
//!   work away and runs the handler again on a fresh instance. So a handler
//!   must have no effects outside `documents` and `queue`.
//! - **Errors are answers.** Each [`Error`] variant is an HTTP status. `?`
//!   works on every SDK call. A panic is a trap: the caller gets a 500 and
//!   the panic message goes to the host's log, as does anything the handler
//!   prints to stdout or stderr.

#![deny(missing_docs)]

mod bindings;
pub mod documents;
mod http;
pub mod queue;

pub use http::{Claims, Error, Request, Response};

/// Marks the function that handles this component's requests.
///
/// The function must have the signature
/// `fn(Request) -> Result<Response, Error>`; its name does not matter. The
/// attribute keeps the function as written and generates the export the host
/// calls. A component has exactly one handler: it serves every route in the
/// function's manifest, and dispatches on [`Request::method`] and
/// [`Request::path`] when there is more than one.
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

#[doc(hidden)]
pub use bindings::wit;

/// What `#[handler]` expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    use crate::wit::exports::sluice::function::handler;

    pub use handler::{Error as WitError, Guest, Request as WitRequest, Response as WitResponse};

    /// The export's body: converts the request in and the result out.
    pub fn handle(
        request: handler::Request,
        function: fn(crate::Request) -> Result<crate::Response, crate::Error>,
    ) -> Result<handler::Response, handler::Error> {
        function(crate::Request::from_wit(request))
            .map(crate::Response::into_wit)
            .map_err(crate::Error::into_wit)
    }
}
