//! Everything wasmtime: one shared [`Engine`], components compiled once into
//! an [`InstancePre`](wasmtime::component::InstancePre), a fresh `Store` per
//! invocation. [`load`] turns component bytes into a [`Function`] (compile,
//! check imports, link); [`invoke`] runs one on a fresh instance under its
//! limits. Its callers are the process stage and delivery (to run), and the
//! catalog (to load); it never calls a stage.

mod artifacts;
pub mod bindings;
mod code;
mod compiler;
mod host;
pub mod invoke;
mod limiter;
pub mod load;
mod state;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use artifacts::Artifacts;
pub use artifacts::{sha256_hex, write_whole};
use code::{Code, Resident};
pub use code::{Compiled, ReadBytes, Source};
pub use compiler::{CompileBox, compile_component};
pub use invoke::Finished;
pub use state::Capabilities;
use state::Sandbox;

use crate::config::limits::{Exceeded, Limit, Limits, LimitsConfig};
use crate::config::{CacheConfig, RuntimeConfig};
use crate::store::Outcome;
use crate::store::cache::Caches;

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
    /// The function failed after a read found the database down.
    #[error("the database could not be read")]
    StoreUnavailable,
}

impl InvokeError {
    /// The outcome its record and metrics give it.
    pub fn outcome(&self) -> Outcome {
        match self {
            InvokeError::Limit(e) if e.limit == Limit::Timeout => Outcome::Timeout,
            InvokeError::Limit(_) => Outcome::Limit,
            InvokeError::Trap(_) | InvokeError::Instantiate(_) => Outcome::Trap,
            InvokeError::StoreUnavailable => Outcome::Unavailable,
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

/// A function: who it belongs to, its limits, and its code, which is
/// loaded on its first invocation if it is not in memory.
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
    exports: Exports,
    code: Arc<Code>,
}

/// The exports a function has (or, before its code is loaded, that its
/// manifest needs and its deploy checked).
#[derive(Debug, Clone, Copy, Default)]
pub struct Exports {
    /// `sluice:function/handler`: it serves routes.
    pub requests: bool,
    /// `sluice:function/message-handler`: it consumes messages.
    pub messages: bool,
}

impl Function {
    /// True when the component exports `handler`: it can serve routes.
    pub fn handles_requests(&self) -> bool {
        self.exports.requests
    }

    /// True when the component exports `message-handler`: it can consume
    /// messages, events and schedule ticks.
    pub fn handles_messages(&self) -> bool {
        self.exports.messages
    }
}

/// The shared engine and linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Sandbox>,
    config: RuntimeConfig,
    ticker_stop: Arc<AtomicBool>,
    in_use: AtomicUsize,
    artifacts: Option<Artifacts>,
    default_limits: Limits,
    fuel: bool,
    max_wasm_stack: usize,
    compile_box: Option<CompileBox>,
    caches: Caches,
    /// Milliseconds added to the wall clock functions see: 0 but in tests.
    clock_shift: Arc<AtomicI64>,
    /// The components loaded now, by the SHA-256 of their bytes.
    compiled: load::Shared,
    /// The functions whose code can be unloaded when idle.
    resident: Arc<Resident>,
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
        let idle = (config.unload_idle_s > 0).then(|| Duration::from_secs(config.unload_idle_s));
        let resident = Arc::new(Resident::new(idle));
        (resident.sweep(ticker_stop.clone())).map_err(|e| LoadError::Engine(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            config: config.clone(),
            ticker_stop,
            in_use: AtomicUsize::new(0),
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
            clock_shift: Arc::default(),
            compiled: load::Shared::default(),
            resident,
        })
    }
}

impl Runtime {
    /// Moves the wall clock every function sees from now on by `by`
    /// milliseconds (negative: back), on top of earlier moves; returns the
    /// total. For tests of time-dependent logic; the host's own timers do
    /// not move.
    pub fn shift_clock(&self, by: i64) -> i64 {
        self.clock_shift.fetch_add(by, Ordering::SeqCst) + by
    }

    /// The cache of `tenant`, as its functions see it.
    pub fn cache(&self, tenant: &Arc<str>) -> crate::store::cache::TenantCache {
        self.caches.tenant(tenant)
    }

    /// Invocations running now, and the size of the instance pool.
    pub fn instances(&self) -> (usize, usize) {
        (
            self.in_use.load(Ordering::Relaxed),
            self.config.max_instances as usize,
        )
    }

    /// Compiled components in memory: one per distinct component that a
    /// live function holds.
    pub fn components_loaded(&self) -> usize {
        self.compiled.live()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
