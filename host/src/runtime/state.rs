//! What a `Store` holds for one invocation: WASI, limits and the capabilities.

use std::sync::Arc;

use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
    pub(crate) fn new(caps: Capabilities, limiter: Limiter, log_bytes: usize) -> Self {
        let stdout = LogPipe::new(log_bytes);
        let stderr = LogPipe::new(log_bytes);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
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
}

/// Projects [`Sandbox`] onto [`Capabilities`] for the generated `add_to_linker`.
pub(crate) struct Caps;

impl HasData for Caps {
    type Data<'a> = &'a mut Capabilities;
}
