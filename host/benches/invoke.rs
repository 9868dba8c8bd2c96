//! One invocation without HTTP: Sluice's `Runtime::invoke` (fresh Store,
//! locked-down WASI, staging set-up, instantiate, call, log capture) next to
//! the bare wasmtime floor for the same component (fresh Store, instantiate
//! from the same kind of pooled `InstancePre`, call). The ratio of the two is
//! the overhead Sluice adds per invocation.
//!
//! Needs the guests built: `bash scripts/build-guests.sh`. Run with
//! `cargo bench -p sluice-host --bench invoke`.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_host::config::{DatabaseConfig, QueueConfig, RuntimeConfig};
use sluice_host::runtime::Runtime;
use sluice_host::runtime::bindings::Request;
use sluice_host::runtime::bindings::exports::sluice::function::handler::GuestIndices;
use sluice_host::store::Store;
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

fn component() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/guest/echo.wasm")
}

fn request() -> Request {
    Request {
        route: "get-echo-a".into(),
        pattern: "/echo/{a}".into(),
        method: "GET".into(),
        path: "/acme/echo/bench".into(),
        params: vec![("a".into(), "bench".into())],
        query: Vec::new(),
        headers: vec![("accept".into(), "application/json".into())],
        body: Vec::new(),
        claims: None,
        request_id: "bench".into(),
    }
}

struct Bare {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn bare_pre() -> wasmtime::Result<(Engine, InstancePre<Bare>, GuestIndices)> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(64)
        .total_core_instances(512)
        .total_memories(128)
        .total_tables(256)
        .total_stacks(64);
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config)?;
    let mut linker = Linker::<Bare>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // echo imports only the (function-less) types instance and WASI.
    linker.instance("sluice:function/types@0.1.0")?;
    let component = Component::from_file(&engine, component())?;
    let pre = linker.instantiate_pre(&component)?;
    let handler = GuestIndices::new(&pre)?;
    Ok((engine, pre, handler))
}

fn invoke(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let data = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", data.path().join("bench.db").display());
    let store = rt
        .block_on(Store::open(
            &url,
            sluice_host::store::Files::open(&Default::default(), &data.path().join("blobs"))
                .expect("blobs"),
            &DatabaseConfig::default(),
            &QueueConfig::default(),
            Default::default(),
        ))
        .expect("store");
    let config = RuntimeConfig {
        max_instances: 64,
        ..RuntimeConfig::default()
    };
    let runtime = std::sync::Arc::new(
        Runtime::new(
            &config,
            &sluice_host::config::LimitsConfig::default(),
            &sluice_host::config::CacheConfig::default(),
            Some(&data.path().join("cache")),
        )
        .expect("runtime"),
    );
    let function = runtime
        .load("acme", "echo", &component())
        .expect("echo.wasm: run scripts/build-guests.sh first");
    let (engine, pre, handler) = bare_pre().expect("bare wasmtime");
    let req = request();

    let mut group = c.benchmark_group("invocation");
    group.bench_function("wasmtime_floor", |b| {
        b.to_async(&rt).iter(|| async {
            let mut store = wasmtime::Store::new(
                &engine,
                Bare {
                    ctx: WasiCtx::builder().build(),
                    table: ResourceTable::new(),
                },
            );
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
            handler
                .load(&mut store, &instance)
                .expect("load")
                .call_handle(&mut store, &req)
                .await
                .expect("call")
        })
    });
    group.bench_function("sluice_invoke", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .invoke(&function, &store, &req, None, far_deadline())
                .await
                .expect("invoke")
        })
    });
    group.finish();
}

criterion_group!(benches, invoke);
criterion_main!(benches);

/// A deadline the benchmark never reaches.
fn far_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(3600)
}
