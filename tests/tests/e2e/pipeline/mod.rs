//! The request pipeline, one module per stage.

mod authenticate;
mod persist;
mod process;
mod receive;
mod respond;
mod validate;
