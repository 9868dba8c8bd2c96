//! End-to-end tests of real hosts over real HTTP, one module per part of
//! the host they test. One binary, so the host is linked once.

mod admin;
mod catalog;
mod config;
mod contract;
mod delivery;
mod examples;
mod openapi;
mod pipeline;
mod runtime;
mod store;
mod telemetry;
