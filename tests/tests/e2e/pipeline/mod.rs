//! The request pipeline, one module per stage.

mod authenticate;
mod cors;
mod idempotency;
mod persist;
mod process;
mod receive;
mod respond;
mod validate;
mod webhook;
