//! Sluice: a WebAssembly plugin host for user-supplied backend functions.
//!
//! Every request runs through one pipeline; the host runs five stages
//! natively and hands only *Process* to the tenant's sandboxed component:
//!
//! ```text
//! receive ─▶ authenticate ─▶ validate ─▶ process ─▶ persist ─▶ respond
//! (routes)   (JWT, rules)    (schema)    (wasm)     (one tx)   (problem+json)
//! ```
//!
//! The function stages document writes and queue messages through the
//! `sluice:function` WIT imports; the persist stage commits them together
//! with the invocation record in one transaction, or nothing at all.
//!
//! What a function sends goes out after the commit: [`delivery`] leases due
//! messages, document events and schedule ticks and runs them through a
//! consumer function's `message-handler` (claim → process → persist).
//!
//! Layout: [`pipeline`] holds one module per stage in that order; [`runtime`]
//! is everything wasmtime; [`store`] is the only code that touches the
//! database; [`staging`] is what passes from process to persist.
//! [`catalog`] is what is live (routes, consumers, schedules), and
//! [`deploy`] checks, stores and activates new versions of it for the
//! [`admin`] API.

pub mod admin;
pub mod app;
pub mod cache;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod deploy;
pub mod dev;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod pipeline;
pub mod problem;
pub mod quota;
pub mod runtime;
pub mod server;
pub mod staging;
pub mod store;

pub use app::App;
pub use config::Config;
pub use server::Server;
