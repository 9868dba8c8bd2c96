//! The bindings `wit-bindgen` generates from `wit/function.wit`.
//!
//! Users never name anything in here: `#[handler]` expands to the export, and
//! `documents`, `queue` and `http` wrap the rest in ordinary Rust types.

/// Generated from the `http-function` world; not public API.
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "http-function",
        // `#[handler]` expands in the user's crate, so the export macro must be
        // reachable from there and must find the bindings at an absolute path.
        pub_export_macro: true,
        default_bindings_module: "::sluice_sdk::wit",
    });
}
