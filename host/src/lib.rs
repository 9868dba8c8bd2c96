//! Sluice: a WebAssembly plugin host for user-supplied backend functions.
//!
//! Every request runs through one pipeline; the host runs five stages
//! natively and hands only *Process* to the tenant's sandboxed component:
//!
//! ```text
//!            ┌──────────────────────── pipeline ─────────────────────────┐
//!  server ─▶ receive ─▶ authenticate ─▶ validate ─▶ persist(process) ─▶ respond
//!            (catalog,   (keys)          (schema)    (one tx, re-runs)    (problem+json,
//!             admission)                    │            │                 blobs)
//!                                           ▼            ▼
//!                                        runtime ──▶ store ◀── delivery (claim → persist(process))
//! ```
//!
//! The function stages document writes, blob changes and queue messages
//! through the `sluice:function` WIT imports; [`pipeline::persist`] commits
//! them together with the invocation record in one transaction, or nothing
//! at all, for requests and [`delivery`] alike.
//!
//! The parts, lowest layer first (docs/architecture.md has the arrows
//! allowed between them, checked by `host/tests/architecture.rs`):

pub mod config;
pub mod metrics;
pub mod problem;
pub mod telemetry;

pub mod store;

pub mod runtime;

pub mod catalog;

pub mod pipeline;

pub mod delivery;

pub mod policy;

pub mod admin;

pub mod app;
pub mod server;

pub use app::App;
pub use config::Config;
pub use server::Server;
