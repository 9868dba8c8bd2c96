//! The bindings `wit-bindgen` generates from `wit/function.wit`.
//!
//! Users never name anything in here: `#[handler]` and `#[on_message]` expand
//! to the exports, and `documents`, `blobs`, `queue`, `cache`, `config`,
//! `http` and `message` wrap the rest in ordinary Rust types.
//!
//! There are two `generate!` calls, one per export, so that a component
//! exports only what it implements. With `pub_export_macro` each call puts
//! the description of its world's exports inside its export macro, and
//! `wit-component` unions the descriptions the final module carries: a crate
//! that expands only `export!` is an `http-function`, one that expands only
//! `export_messages!` a `message-function`, one that expands both a
//! `function`.

/// Generated from the `http-function` world; not public API.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "wit",
        world: "http-function",
        // `#[handler]` expands in the user's crate, so the export macro must be
        // reachable from there and must find the bindings at an absolute path.
        pub_export_macro: true,
        default_bindings_module: "::sluice_sdk::wit",
    });
}

/// Generated from the `message-function` world; not public API.
#[doc(hidden)]
pub mod wit_messages {
    wit_bindgen::generate!({
        path: "wit",
        world: "message-function",
        // As for `wit`, plus a macro name of its own: both macros are
        // exported at the root of this crate.
        pub_export_macro: true,
        default_bindings_module: "::sluice_sdk::wit_messages",
        export_macro_name: "export_messages",
        // The imports are the same interfaces as in `wit`: reuse those
        // types, so a `documents` or `blobs` error is one type, not two.
        with: {
            "sluice:function/documents@0.2.1": crate::wit::sluice::function::documents,
            "sluice:function/blobs@0.2.1": crate::wit::sluice::function::blobs,
            "sluice:function/queue@0.2.1": crate::wit::sluice::function::queue,
            "sluice:function/cache@0.2.1": crate::wit::sluice::function::cache,
            "sluice:function/config@0.2.1": crate::wit::sluice::function::config,
        },
    });
}
