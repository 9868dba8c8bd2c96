//! The one `bindgen!` of the host, generated from the shared contract in `wit/`.

#![expect(missing_docs, reason = "bindgen-generated code")]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:function/function",
    imports: {
        // Reads touch the database; everything else is in memory. Staging
        // calls trap when they take the invocation over a limit.
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

pub use exports::sluice::function::handler::{Error as GuestError, Request, Response};
pub use exports::sluice::function::message_handler::{Error as MessageError, Message};
pub use sluice::function::types::Claims;
