//! End-to-end tests of the request pipeline, one module per stage, plus the
//! example guests. One binary, so the host is linked once.

mod admin;
mod authenticate;
mod blobs;
mod cache;
mod capabilities;
mod delivery;
mod deploy;
mod examples;
mod hostile;
mod persist;
mod process;
mod receive;
mod validate;
