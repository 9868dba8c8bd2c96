//! The host's bindings, generated from the shared contract in `wit/`: the
//! current package, and in [`legacy`] the 0.1.0 one, which components built
//! before 0.2.0 import and export.

#![expect(missing_docs, reason = "bindgen-generated code")]

/// The host's `bindgen!` of a version of the contract: the same choices of
/// async and trapping calls for every version.
macro_rules! contract {
    ($path:literal, $world:literal) => {
        wasmtime::component::bindgen!({
            path: $path,
            world: $world,
            imports: {
                // Reads touch the database; everything else is in memory.
                // Staging calls trap when they take the invocation over a limit.
                "sluice:function/documents.get": async | tracing,
                "sluice:function/documents.list": async | tracing,
                "sluice:function/documents.delete": async | trappable | tracing,
                "sluice:function/documents.put": trappable | tracing,
                "sluice:function/queue.send": trappable | tracing,
                // Blob calls touch files; puts and deletes stage like documents.
                "sluice:function/blobs.put": async | trappable | tracing,
                "sluice:function/blobs.delete": async | trappable | tracing,
                "sluice:function/blobs.keep-upload": trappable | tracing,
                "sluice:function/blobs.get": async | tracing,
                "sluice:function/blobs.get-range": async | tracing,
                "sluice:function/blobs.head": async | tracing,
                "sluice:function/blobs.list": async | tracing,
                default: tracing,
            },
            exports: { default: async },
        });
    };
}

contract!("../wit", "sluice:function/function");

/// `sluice:function@0.1.0`: its imports are implemented by delegating to
/// the current ones (`host/legacy.rs`), its exports called through
/// conversions (`code.rs`).
pub mod legacy {
    contract!("../wit/legacy/0.1.0", "sluice:function/function@0.1.0");

    use exports::sluice::function::{handler, message_handler};

    /// The request as 0.1.0 has it: without the route's name and pattern.
    pub fn request(r: &super::Request) -> handler::Request {
        handler::Request {
            method: r.method.clone(),
            path: r.path.clone(),
            params: r.params.clone(),
            query: r.query.clone(),
            headers: r.headers.clone(),
            body: r.body.clone(),
            claims: r.claims.as_ref().map(|c| sluice::function::types::Claims {
                subject: c.subject.clone(),
                tenant: c.tenant.clone(),
                roles: c.roles.clone(),
                all: c.all.clone(),
            }),
            request_id: r.request_id.clone(),
        }
    }

    /// A 0.1.0 response, as the current one.
    pub fn response(r: handler::Response) -> super::Response {
        super::Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    /// A 0.1.0 error, as the current one (a subset of its cases).
    pub fn error(e: handler::Error) -> super::GuestError {
        use super::GuestError as G;
        use handler::Error as E;
        match e {
            E::BadRequest(m) => G::BadRequest(m),
            E::Forbidden(m) => G::Forbidden(m),
            E::NotFound(m) => G::NotFound(m),
            E::Conflict(m) => G::Conflict(m),
            E::Internal(m) => G::Internal(m),
        }
    }

    /// The message as 0.1.0 has it (the same fields).
    pub fn message(m: &super::Message) -> message_handler::Message {
        message_handler::Message {
            id: m.id.clone(),
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            attempt: m.attempt,
            enqueued_at: m.enqueued_at,
            idempotency_key: m.idempotency_key.clone(),
        }
    }

    /// A 0.1.0 message error, as the current one.
    pub fn message_error(e: message_handler::Error) -> super::MessageError {
        match e {
            message_handler::Error::Retry(m) => super::MessageError::Retry(m),
            message_handler::Error::GiveUp(m) => super::MessageError::GiveUp(m),
        }
    }
}

pub use exports::sluice::function::handler::{Error as GuestError, Request, Response};
pub use exports::sluice::function::message_handler::{Error as MessageError, Message};
pub use sluice::function::types::{Claims, Problem as GuestProblem};
