//! Everything wasmtime: one shared [`Engine`], components compiled once into
//! an [`InstancePre`](wasmtime::component::InstancePre), a fresh `Store` per
//! invocation. The process stage is its only caller.

mod artifacts;
pub mod bindings;
mod compiler;
mod host;
mod limiter;
mod state;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use wasmtime::component::{Component, Instance, InstancePre, Linker};
use wasmtime::{
    Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store as WasmStore, Trap,
};

use artifacts::Artifacts;
pub use artifacts::{sha256_hex, write_whole};
pub use compiler::{CompileBox, compile_component};
use limiter::Limiter;
pub use state::Capabilities;
use state::InvocationState;

use crate::cache::{CacheConfig, Caches};
use crate::config::RuntimeConfig;
use crate::limits::{Exceeded, Limit, Limits, LimitsConfig};
use crate::staging::Staging;
use crate::store::{StagedFile, Store};
use bindings::exports::sluice::function::{handler, message_handler};
use bindings::{GuestError, Message, MessageError, Request, Response};

/// Memory per slot reset in place rather than decommitted (see `Runtime::new`).
const RESIDENT_BYTES: usize = 16 * 1024 * 1024;

/// How often the epoch advances: a running guest yields to the scheduler at each tick.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Why the runtime could not start or a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine configuration was refused.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The bytes are not a WebAssembly component.
    #[error("{path} is not a WebAssembly component: {message}")]
    NotComponent {
        /// The component file or upload.
        path: String,
        /// What it is instead.
        message: String,
    },
    /// The component file could not be read or compiled.
    #[error("cannot compile {path}: {message}")]
    Compile {
        /// The component file.
        path: String,
        /// The compiler's reason.
        message: String,
    },
    /// The component imports an interface Sluice does not offer.
    #[error("component {path} imports {import}, which Sluice does not provide; {allowed}")]
    Import {
        /// The component file or upload.
        path: String,
        /// The refused import.
        import: String,
        /// What is allowed instead.
        allowed: &'static str,
    },
    /// The component imports something the host does not provide, or
    /// exports neither `handler` nor `message-handler`.
    #[error("component {path} does not fit the sluice:function worlds: {message}")]
    Link {
        /// The component file.
        path: String,
        /// The linker's reason, naming the import or export.
        message: String,
    },
}

/// Why an invocation produced no result.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function went over one of its limits (its deadline included).
    #[error("the function was stopped: {0}")]
    Limit(Exceeded),
    /// The function trapped (a panic, an out-of-bounds access, …).
    #[error("the function trapped: {0}")]
    Trap(String),
    /// No instance could be created (e.g. the instance pool is exhausted).
    #[error("the function could not be instantiated: {0}")]
    Instantiate(String),
}

impl InvokeError {
    /// The outcome invocation records and metrics give it: `timeout`,
    /// `limit` or `trap`.
    pub fn outcome(&self) -> &'static str {
        match self {
            InvokeError::Limit(e) if e.limit == Limit::Timeout => "timeout",
            InvokeError::Limit(_) => "limit",
            InvokeError::Trap(_) | InvokeError::Instantiate(_) => "trap",
        }
    }

    /// The name of the limit the function went over, if that is the reason.
    pub fn exceeded(&self) -> Option<&'static str> {
        match self {
            InvokeError::Limit(e) => Some(e.limit.name()),
            _ => None,
        }
    }
}

/// A function's outcome and everything it staged.
pub struct Invocation<T = Result<Response, GuestError>> {
    /// The handler's answer.
    pub result: T,
    /// What it read and staged.
    pub staging: Staging,
}

/// A compiled, linked component ready to instantiate.
#[derive(Clone)]
pub struct Function {
    /// The owning tenant.
    pub tenant: Arc<str>,
    /// The function's name.
    pub name: Arc<str>,
    /// The deployed version; `None` for a function from a functions directory.
    pub version: Option<u32>,
    /// What one invocation may use (host defaults until the catalog sets
    /// the manifest's).
    pub limits: Limits,
    pre: InstancePre<InvocationState>,
    http: Option<Arc<handler::GuestIndices>>,
    messages: Option<Arc<message_handler::GuestIndices>>,
}

impl Function {
    /// True when the component exports `handler`: it can serve routes.
    pub fn handles_requests(&self) -> bool {
        self.http.is_some()
    }

    /// True when the component exports `message-handler`: it can consume
    /// messages, events and schedule ticks.
    pub fn handles_messages(&self) -> bool {
        self.messages.is_some()
    }
}

/// An export of the component and its argument: what one invocation calls.
trait Export: Sync {
    /// What the export returns.
    type Answer: Send;

    /// Calls the export on `instance`.
    fn call<'a>(
        &'a self,
        wasm: &'a mut WasmStore<InvocationState>,
        instance: &'a Instance,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a>>;
}

/// `handler.handle(request)`.
struct HandleRequest<'r>(&'r handler::GuestIndices, &'r Request);

impl Export for HandleRequest<'_> {
    type Answer = Result<Response, GuestError>;

    fn call<'a>(
        &'a self,
        wasm: &'a mut WasmStore<InvocationState>,
        instance: &'a Instance,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a>> {
        Box::pin(async move {
            let guest = self.0.load(&mut *wasm, instance)?;
            guest.call_handle(wasm, self.1).await
        })
    }
}

/// `message-handler.handle(message)`.
struct HandleMessage<'m>(&'m message_handler::GuestIndices, &'m Message);

impl Export for HandleMessage<'_> {
    type Answer = Result<(), MessageError>;

    fn call<'a>(
        &'a self,
        wasm: &'a mut WasmStore<InvocationState>,
        instance: &'a Instance,
    ) -> Pin<Box<dyn Future<Output = wasmtime::Result<Self::Answer>> + Send + 'a>> {
        Box::pin(async move {
            let guest = self.0.load(&mut *wasm, instance)?;
            guest.call_handle(wasm, self.1).await
        })
    }
}

/// The shared engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InvocationState>,
    config: RuntimeConfig,
    ticker_stop: Arc<AtomicBool>,
    in_use: std::sync::atomic::AtomicUsize,
    artifacts: Option<Artifacts>,
    default_limits: Limits,
    fuel: bool,
    max_wasm_stack: usize,
    compile_box: Option<CompileBox>,
    caches: Caches,
}

impl Runtime {
    /// Creates the engine (pooling allocator, epoch interruption) and the linker.
    /// Compiled components are cached in `cache_dir`, one directory per
    /// engine build, so a restart deserializes instead of compiling.
    pub fn new(
        config: &RuntimeConfig,
        limits: &LimitsConfig,
        cache: &CacheConfig,
        cache_dir: Option<&Path>,
    ) -> Result<Self, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let instances = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component holds a few core instances, memories and
        // tables (its own plus the WASI adapter's).
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_memory_size(limits.max.memory_bytes)
            .table_elements(limits.max.table_elements)
            // Resetting a slot with madvise unmaps its pages: the next
            // instance page-faults them back in, and every unmap is a TLB
            // shootdown across cores. Instead, reset only the pages that were
            // touched, with memset, found with PAGEMAP_SCAN where the kernel
            // has it (Linux 6.7+), and batch whatever is still decommitted.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(RESIDENT_BYTES.min(limits.max.memory_bytes))
            .table_keep_resident(RESIDENT_BYTES / 16)
            .decommit_batch_size(16);
        let fuel = limits.max.fuel.is_some();
        let mut wasm = compiler::codegen_config(fuel, limits.max_wasm_stack_bytes);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_err)?;
        let artifacts = cache_dir
            .map(|dir| Artifacts::open(dir, &engine))
            .transpose()
            .map_err(|e| LoadError::Engine(format!("compiled-artifact cache: {e}")))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(engine_err)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            config: config.clone(),
            ticker_stop,
            in_use: std::sync::atomic::AtomicUsize::new(0),
            artifacts,
            default_limits: limits
                .resolve(&Default::default())
                .map_err(LoadError::Engine)?,
            fuel,
            max_wasm_stack: limits.max_wasm_stack_bytes,
            compile_box: config.isolated_compiler.clone().map(|exe| CompileBox {
                exe,
                timeout: Duration::from_millis(config.compile_timeout_ms),
                memory_bytes: config.compile_memory_bytes,
                fuel,
                max_wasm_stack: limits.max_wasm_stack_bytes,
            }),
            caches: Caches::new(cache),
        })
    }

    /// Compiles the component at `path` and links it against the host's imports.
    pub fn load(&self, tenant: &str, name: &str, path: &Path) -> Result<Function, LoadError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| LoadError::Compile {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let component = self.compile(&shown, &bytes, &sha256_hex(&bytes))?;
        self.link(tenant, name, None, &shown, &component)
    }

    /// Compiles `bytes` (whose SHA-256 is `sha`), or loads the compilation
    /// cached by an earlier run. `shown` names the component in errors.
    pub fn compile(&self, shown: &str, bytes: &[u8], sha: &str) -> Result<Component, LoadError> {
        check_header(shown, bytes)?;
        if let Some(component) = self
            .artifacts
            .as_ref()
            .and_then(|a| a.get(&self.engine, sha))
        {
            return Ok(component);
        }
        let compile_err = |message: String| LoadError::Compile {
            path: shown.to_owned(),
            message,
        };
        if let (Some(boxed), Some(artifacts)) = (&self.compile_box, &self.artifacts) {
            let artifact = compiler::compile_boxed(boxed, bytes).map_err(compile_err)?;
            return (artifacts.put_compiled(&self.engine, sha, &artifact)).map_err(compile_err);
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|e| compile_err(format!("{e:#}")))?;
        if let Some(artifacts) = &self.artifacts
            && let Err(e) = artifacts.put(sha, &component)
        {
            tracing::warn!(component = %shown, error = %e, "could not cache the compiled component");
        }
        Ok(component)
    }

    /// Checks `component`'s imports against what Sluice offers, links it and
    /// finds its exports.
    pub fn link(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
        shown: &str,
        component: &Component,
    ) -> Result<Function, LoadError> {
        let ty = component.component_type();
        for (import, _) in ty.imports(&self.engine) {
            if !is_allowed_import(import) {
                return Err(LoadError::Import {
                    path: shown.to_owned(),
                    import: import.to_owned(),
                    allowed: ALLOWED_IMPORTS,
                });
            }
        }
        let link_err = |e: wasmtime::Error| LoadError::Link {
            path: shown.to_owned(),
            message: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(link_err)?;
        let http = handler::GuestIndices::new(&pre).ok().map(Arc::new);
        let messages = message_handler::GuestIndices::new(&pre).ok().map(Arc::new);
        if http.is_none() && messages.is_none() {
            return Err(link_err(wasmtime::format_err!(
                "it exports neither sluice:function/handler nor sluice:function/message-handler"
            )));
        }
        Ok(Function {
            tenant: tenant.into(),
            name: name.into(),
            version,
            limits: self.default_limits,
            pre,
            http,
            messages,
        })
    }

    /// Runs `request` through `function`'s `handler` on a fresh instance,
    /// stopping it at `deadline`. `upload` is the request's raw body, staged.
    pub async fn invoke(
        &self,
        function: &Function,
        store: &Store,
        request: &Request,
        upload: Option<Arc<StagedFile>>,
        deadline: Instant,
    ) -> Result<Invocation, InvokeError> {
        let indices = function.http.as_deref().ok_or_else(|| {
            InvokeError::Instantiate("the component exports no request handler".into())
        })?;
        let invocation = self
            .call(
                function,
                store,
                &HandleRequest(indices, request),
                upload,
                deadline,
            )
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

    /// Delivers `message` to `function`'s `message-handler` on a fresh instance.
    pub async fn deliver(
        &self,
        function: &Function,
        store: &Store,
        message: &Message,
    ) -> Result<Invocation<Result<(), MessageError>>, InvokeError> {
        let indices = function.messages.as_deref().ok_or_else(|| {
            InvokeError::Instantiate("the component exports no message handler".into())
        })?;
        let deadline = Instant::now() + Duration::from_millis(function.limits.timeout_ms);
        self.call(
            function,
            store,
            &HandleMessage(indices, message),
            None,
            deadline,
        )
        .await
    }

    async fn call<E: Export>(
        &self,
        function: &Function,
        store: &Store,
        export: &E,
        upload: Option<Arc<StagedFile>>,
        deadline: Instant,
    ) -> Result<Invocation<E::Answer>, InvokeError> {
        let limits = &function.limits;
        let mut staging = Staging::new(*limits);
        staging.set_upload(upload);
        let caps = Capabilities {
            tenant: function.tenant.clone(),
            store: store.clone(),
            staging,
            cache: self.caches.tenant(&function.tenant),
        };
        let limiter = Limiter::new(limits.memory_bytes, limits.table_elements);
        let state = InvocationState::new(caps, limiter, limits.log_bytes);
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
            let instance = function
                .pre
                .instantiate_async(&mut wasm)
                .await
                .map_err(|e| match e.downcast_ref::<Trap>() {
                    Some(_) => InvokeError::Trap(format!("{e:#}")),
                    None => InvokeError::Instantiate(format!("{e:#}")),
                })?;
            export
                .call(&mut wasm, &instance)
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
            .unwrap_or_else(|_| {
                Err(InvokeError::Limit(Exceeded::new(
                    Limit::Timeout,
                    limits.timeout_ms,
                    "the function did not finish before its deadline",
                )))
            });
        let state = wasm.into_data();
        log_output(&state.stdout.contents(), &state.stderr.contents());
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
        Ok(Invocation {
            result: result?,
            staging: state.caps.staging,
        })
    }
}

/// What a component may import, for error messages.
const ALLOWED_IMPORTS: &str = "a function may import sluice:function/* and wasi:cli, wasi:clocks, \
    wasi:io, wasi:random and wasi:filesystem (which has no directories); \
    no network (wasi:sockets, wasi:http) and nothing else";

/// True for the interfaces a function may import. The linker holds more of
/// WASI than this; the network stays out even though it would be refused at
/// run time, so that a component that wants it is refused at deploy.
fn is_allowed_import(name: &str) -> bool {
    let interface = name.split('@').next().unwrap_or(name);
    let Some((package, _)) = interface.split_once('/') else {
        return false;
    };
    matches!(
        package,
        "sluice:function"
            | "wasi:cli"
            | "wasi:clocks"
            | "wasi:io"
            | "wasi:random"
            | "wasi:filesystem"
    )
}

/// Refuses anything but a component binary, saying what it is instead.
fn check_header(shown: &str, bytes: &[u8]) -> Result<(), LoadError> {
    let refuse = |message: &str| {
        Err(LoadError::NotComponent {
            path: shown.to_owned(),
            message: message.to_owned(),
        })
    };
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => refuse(
            "it is a core WebAssembly module; build for wasm32-wasip2, \
             or wrap it with `wasm-tools component new`",
        ),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', ..]) => refuse("unknown WebAssembly binary version"),
        _ if bytes.starts_with(b"(") => {
            refuse("it looks like WebAssembly text; upload the binary component")
        }
        _ => refuse("it does not start with the WebAssembly magic number"),
    }
}

/// Counts an invocation as running until dropped, even if it is cancelled.
struct InUse<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InUse<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Invocations running now, and the size of the instance pool.
    pub fn instances(&self) -> (usize, usize) {
        (
            self.in_use.load(Ordering::Relaxed),
            self.config.max_instances as usize,
        )
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Logs the guest's output line by line, inside the request's span.
fn log_output(stdout: &[u8], stderr: &[u8]) {
    for line in String::from_utf8_lossy(stdout).lines() {
        tracing::info!(target: "sluice::guest", stream = "stdout", "{line}");
    }
    for line in String::from_utf8_lossy(stderr).lines() {
        tracing::warn!(target: "sluice::guest", stream = "stderr", "{line}");
    }
}
