//! What a `Store` holds for one invocation: WASI, limits and the capabilities.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::limiter::{Limiter, LogPipe};
use crate::store::cache::TenantCache;
use crate::store::{Staging, Store};

/// The sandbox of one invocation: the `Store<T>` data, built fresh for every
/// request and delivery.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) caps: Capabilities,
    pub(crate) stdout: LogPipe,
    pub(crate) stderr: LogPipe,
}

impl Sandbox {
    /// A locked-down state: no preopens, environment, arguments, sockets or stdin;
    /// stdout and stderr go to memory for the host to log, up to `log_bytes` each.
    /// `clock_shift` milliseconds are added to the wall clock it sees.
    pub(crate) fn new(
        caps: Capabilities,
        limiter: Limiter,
        log_bytes: usize,
        clock_shift: i64,
    ) -> Self {
        let stdout = LogPipe::new(log_bytes);
        let stderr = LogPipe::new(log_bytes);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if clock_shift != 0 {
            wasi.wall_clock(ShiftedClock(clock_shift));
        }
        let wasi = wasi.build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter,
            caps,
            stdout,
            stderr,
        }
    }
}

/// The system's wall clock moved by some milliseconds.
struct ShiftedClock(i64);

impl HostWallClock for ShiftedClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let shift = Duration::from_millis(self.0.unsigned_abs());
        if self.0 >= 0 {
            now.saturating_add(shift)
        } else {
            now.saturating_sub(shift)
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The part of the state the Sluice imports may touch: the function's tenant,
/// read access to committed documents, and the staging area. Nothing here can
/// write to the database.
pub struct Capabilities {
    /// Every key and topic is namespaced by this tenant.
    pub tenant: Arc<str>,
    /// For committed reads.
    pub store: Store,
    /// What the invocation read and staged.
    pub staging: Staging,
    /// The tenant's cache (not staged).
    pub cache: TenantCache,
    /// The function's name, for values set for it alone.
    pub function: Arc<str>,
    /// The secrets the guest read, to blank out of its output.
    pub revealed: Vec<Arc<str>>,
    /// A read found the database down: later reads fail at once, and a
    /// function that fails after it is answered 503.
    pub store_down: bool,
}

/// Projects [`Sandbox`] onto [`Capabilities`] for the generated `add_to_linker`.
pub(crate) struct Caps;

impl HasData for Caps {
    type Data<'a> = &'a mut Capabilities;
}
