//! The host side of the Sluice imports, one file per WIT interface.

mod blobs;
mod cache;
mod config;
mod documents;
mod legacy;
mod queue;

use wasmtime::component::Linker;

use super::bindings::legacy::sluice::function as legacy_function;
use super::bindings::sluice::function;
use super::state::{Caps, Sandbox};

/// Adds WASI (locked down by [`Sandbox`]) and every Sluice import to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    function::types::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    function::documents::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    function::queue::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    function::blobs::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    function::cache::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    function::config::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    // The same under 0.1.0's names, for components built before 0.2.0.
    legacy_function::types::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    legacy_function::documents::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    legacy_function::queue::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    legacy_function::blobs::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    legacy_function::cache::add_to_linker::<_, Caps>(linker, |s| &mut s.caps)?;
    Ok(())
}

impl super::state::Capabilities {
    /// Passes a staging call's answer back to the guest, unless it took the
    /// invocation over a limit: then the guest is stopped there, since the
    /// invocation fails whatever it does next.
    fn stop_at_limit<T, E>(&self, answer: Result<T, E>) -> wasmtime::Result<Result<T, E>> {
        match self.staging.exceeded() {
            Some(exceeded) => Err(wasmtime::format_err!("{exceeded}")),
            None => Ok(answer),
        }
    }
}

/// `types` has no functions; the impl only satisfies the generated linker.
impl function::types::Host for super::state::Capabilities {}
