//! Running a function: a fresh instance per invocation, under its limits
//! (memory, tables, fuel, stack, staging, logs, its deadline), its staging
//! area handed back with its answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;
use wasmtime::component::Instance;
use wasmtime::{Store as WasmStore, Trap, format_err};

use super::bindings::{GuestError, Message, MessageError, Request, Response, legacy};
use super::code::{HttpExport, Linked, MessageExport};
use super::limiter::Limiter;
use super::state::{Capabilities, Sandbox};
use super::{Function, InvokeError, Runtime};
use crate::config::limits::{Exceeded, Limit};
use crate::store::{StagedFile, Staging, Store};

/// A run that finished: the export's answer and everything it staged.
pub struct Finished<T = Result<Response, GuestError>> {
    /// The handler's answer.
    pub result: T,
    /// What it read and staged.
    pub staging: Staging,
    /// A read of the database failed during the run.
    pub store_down: bool,
}

/// An export of the component and its argument: what one invocation calls.
trait Export: Sync {
    /// What the export returns.
    type Answer: Send;

    /// Why a component without this export cannot be called so.
    const MISSING: &'static str;

    /// True when `linked` has this export.
    fn present(linked: &Linked) -> bool;

    /// Calls the export on `instance`.
    fn call<'a>(
        &'a self,
        linked: &'a Linked,
        wasm: &'a mut WasmStore<Sandbox>,
        instance: &'a Instance,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a>>;
}

/// `handler.handle(request)`.
struct HandleRequest<'r>(&'r Request);

impl Export for HandleRequest<'_> {
    type Answer = Result<Response, GuestError>;
    const MISSING: &'static str = "the component exports no request handler";

    fn present(linked: &Linked) -> bool {
        linked.http.is_some()
    }

    fn call<'a>(
        &'a self,
        linked: &'a Linked,
        wasm: &'a mut WasmStore<Sandbox>,
        instance: &'a Instance,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a>> {
        Box::pin(async move {
            match linked.http.as_ref() {
                Some(HttpExport::Current(indices)) => {
                    let guest = indices.load(&mut *wasm, instance)?;
                    guest.call_handle(wasm, self.0).await
                }
                Some(HttpExport::Legacy(indices)) => {
                    let guest = indices.load(&mut *wasm, instance)?;
                    let answer = guest.call_handle(wasm, &legacy::request(self.0)).await?;
                    Ok(answer.map(legacy::response).map_err(legacy::error))
                }
                None => Err(format_err!(Self::MISSING)),
            }
        })
    }
}

/// `message-handler.handle(message)`.
struct HandleMessage<'m>(&'m Message);

impl Export for HandleMessage<'_> {
    type Answer = Result<(), MessageError>;
    const MISSING: &'static str = "the component exports no message handler";

    fn present(linked: &Linked) -> bool {
        linked.messages.is_some()
    }

    fn call<'a>(
        &'a self,
        linked: &'a Linked,
        wasm: &'a mut WasmStore<Sandbox>,
        instance: &'a Instance,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a>> {
        Box::pin(async move {
            match linked.messages.as_ref() {
                Some(MessageExport::Current(indices)) => {
                    let guest = indices.load(&mut *wasm, instance)?;
                    guest.call_handle(wasm, self.0).await
                }
                Some(MessageExport::Legacy(indices)) => {
                    let guest = indices.load(&mut *wasm, instance)?;
                    let answer = guest.call_handle(wasm, &legacy::message(self.0)).await?;
                    Ok(answer.map_err(legacy::message_error))
                }
                None => Err(format_err!(Self::MISSING)),
            }
        })
    }
}

/// `handler.routes()`: the route names a component serves.
struct ListRoutes;

impl Export for ListRoutes {
    type Answer = Option<Vec<String>>;
    const MISSING: &'static str = "the component exports no request handler";

    fn present(linked: &Linked) -> bool {
        linked.http.is_some()
    }

    fn call<'a>(
        &'a self,
        linked: &'a Linked,
        wasm: &'a mut WasmStore<Sandbox>,
        instance: &'a Instance,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a>> {
        Box::pin(async move {
            match linked.http.as_ref() {
                Some(HttpExport::Current(indices)) => {
                    let guest = indices.load(&mut *wasm, instance)?;
                    guest.call_routes(wasm).await
                }
                // Built before route names: it dispatches itself.
                Some(HttpExport::Legacy(_)) => Ok(None),
                None => Err(format_err!(Self::MISSING)),
            }
        })
    }
}

impl Runtime {
    /// The route names `function` serves, from its `handler.routes()` on a
    /// fresh instance: `None` when it dispatches itself (or was built
    /// against 0.1.0, which has no route names).
    pub async fn routes(
        self: &Arc<Self>,
        function: &Function,
        store: &Store,
        deadline: Instant,
    ) -> Result<Option<Vec<String>>, InvokeError> {
        let listed = self
            .call(function, store, &ListRoutes, None, deadline)
            .await?;
        Ok(listed.result)
    }

    /// Runs `request` through `function`'s `handler` on a fresh instance,
    /// stopping it at `deadline`. `upload` is the request's raw body, staged.
    pub async fn invoke(
        self: &Arc<Self>,
        function: &Function,
        store: &Store,
        request: &Request,
        upload: Option<Arc<StagedFile>>,
        deadline: Instant,
    ) -> Result<Finished, InvokeError> {
        let invocation = self
            .call(function, store, &HandleRequest(request), upload, deadline)
            .await?;
        let max = function.limits.response_bytes;
        if let Ok(response) = &invocation.result {
            let size = response.body.len()
                + (response.headers.iter())
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>();
            if size > max {
                return Err(InvokeError::Limit(Exceeded::new(
                    Limit::Response,
                    max,
                    format!("the function answered with {size} bytes, more than {max}"),
                )));
            }
        }
        Ok(invocation)
    }

    /// Delivers `message` to `function`'s `message-handler` on a fresh
    /// instance, stopping it at `deadline`.
    pub async fn deliver(
        self: &Arc<Self>,
        function: &Function,
        store: &Store,
        message: &Message,
        deadline: Instant,
    ) -> Result<Finished<Result<(), MessageError>>, InvokeError> {
        self.call(function, store, &HandleMessage(message), None, deadline)
            .await
    }

    async fn call<E: Export>(
        self: &Arc<Self>,
        function: &Function,
        store: &Store,
        export: &E,
        upload: Option<Arc<StagedFile>>,
        deadline: Instant,
    ) -> Result<Finished<E::Answer>, InvokeError> {
        let timed_out = || {
            InvokeError::Limit(Exceeded::new(
                Limit::Timeout,
                function.limits.timeout_ms,
                "the function did not finish before its deadline",
            ))
        };
        // Loading an unloaded function counts against its deadline.
        let linked = (tokio::time::timeout_at(deadline, self.linked(&function.code)).await)
            .map_err(|_| timed_out())??;
        if !E::present(&linked) {
            return Err(InvokeError::Instantiate(E::MISSING.into()));
        }
        let limits = &function.limits;
        let mut staging = Staging::new(*limits);
        staging.set_upload(upload);
        let caps = Capabilities {
            tenant: function.tenant.clone(),
            store: store.clone(),
            staging,
            cache: self.caches.tenant(&function.tenant),
            function: function.name.clone(),
            revealed: Vec::new(),
            store_down: false,
        };
        let limiter = Limiter::new(limits.memory_bytes, limits.table_elements);
        let shift = self.clock_shift.load(Ordering::Relaxed);
        let state = Sandbox::new(caps, limiter, limits.log_bytes, shift);
        let mut wasm = WasmStore::new(&self.engine, state);
        let _in_use = InUse::enter(&self.in_use);
        wasm.limiter(|s| &mut s.limiter);
        if self.fuel {
            // Every function is metered once the engine is; no fuel set is unlimited.
            let _ = wasm.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        // The guest yields to the scheduler at every epoch tick, so a busy
        // guest never holds a worker thread; the deadline is a timer around
        // the whole call, host calls included, and dropping the call on
        // expiry cancels the guest wherever it is.
        wasm.set_epoch_deadline(1);
        wasm.epoch_deadline_async_yield_and_update(1);

        let run = async {
            let instance =
                linked.pre.instantiate_async(&mut wasm).await.map_err(|e| {
                    match e.downcast_ref::<Trap>() {
                        Some(_) => InvokeError::Trap(format!("{e:#}")),
                        None => InvokeError::Instantiate(format!("{e:#}")),
                    }
                })?;
            export
                .call(&linked, &mut wasm, &instance)
                .await
                .map_err(|e| match e.downcast_ref::<Trap>() {
                    Some(Trap::StackOverflow) => InvokeError::Limit(Exceeded::new(
                        Limit::Stack,
                        self.max_wasm_stack,
                        "the function recursed deeper than its stack allows",
                    )),
                    Some(Trap::OutOfFuel) => InvokeError::Limit(Exceeded::new(
                        Limit::Fuel,
                        limits.fuel.unwrap_or(u64::MAX),
                        "the function ran out of fuel",
                    )),
                    _ => InvokeError::Trap(format!("{e:#}")),
                })
        };
        let result = tokio::time::timeout_at(deadline, run)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        let state = wasm.into_data();
        log_output(
            &state.stdout.contents(),
            &state.stderr.contents(),
            &state.caps.revealed,
        );
        // A limit reached through a host call or a refused growth fails the
        // invocation even if the guest carried on and answered.
        let overflowed = (state.stdout.overflowed() || state.stderr.overflowed()).then(|| {
            Exceeded::new(
                Limit::Log,
                limits.log_bytes,
                format!(
                    "the function wrote more than {} bytes to stdout or stderr",
                    limits.log_bytes
                ),
            )
        });
        let exceeded = (state.limiter.exceeded)
            .or_else(|| state.caps.staging.exceeded().cloned())
            .or(overflowed);
        if let Some(exceeded) = exceeded {
            return Err(InvokeError::Limit(exceeded));
        }
        let store_down = state.caps.store_down;
        match result {
            // Most likely the store's error unwrapped: not the function's fault.
            Err(InvokeError::Trap(_)) if store_down => Err(InvokeError::StoreUnavailable),
            result => Ok(Finished {
                result: result?,
                staging: state.caps.staging,
                store_down,
            }),
        }
    }
}

/// Counts an invocation as running until dropped, even if it is cancelled.
struct InUse<'a>(&'a AtomicUsize);

impl<'a> InUse<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Logs the guest's output line by line, inside the request's span, with
/// every secret it read blanked out.
fn log_output(stdout: &[u8], stderr: &[u8], secrets: &[Arc<str>]) {
    for line in redact(stdout, secrets).lines() {
        tracing::info!(target: "sluice::guest", stream = "stdout", "{line}");
    }
    for line in redact(stderr, secrets).lines() {
        tracing::warn!(target: "sluice::guest", stream = "stderr", "{line}");
    }
}

/// `out` as text, every one of `secrets` in it replaced; copied only when
/// one is there.
fn redact<'a>(out: &'a [u8], secrets: &[Arc<str>]) -> std::borrow::Cow<'a, str> {
    let mut text = String::from_utf8_lossy(out);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(&**secret) {
            text = text.replace(&**secret, "[redacted]").into();
        }
    }
    text
}
