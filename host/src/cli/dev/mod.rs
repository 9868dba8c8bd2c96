//! `sluice dev [DIR…]`: serves function crates on an embedded host with its
//! own SQLite data directory, rebuilds a crate when its sources or manifest
//! change and swaps the new version in without a restart.
//!
//! A reload is a deploy on the embedded host: checked completely first, so
//! a build or manifest error leaves the old version serving, and requests
//! in flight finish on the version they started on.

mod log;
mod watch;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use sluice_host::catalog::Upload;
use sluice_host::pipeline::authenticate::dev as dev_key;
use sluice_host::{App, Config, Server};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

use self::watch::FunctionCrate;
use super::build;

/// `sluice dev`'s arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Function crates (a `Cargo.toml` and a `sluice.toml`), or directories
    /// whose subdirectories are function crates.
    #[arg(default_value = ".")]
    dirs: Vec<PathBuf>,
    /// Listen address.
    #[arg(long, env = "SLUICE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Cargo profile to build with (`guest`: release, optimized for size).
    #[arg(long, default_value = build::GUEST_PROFILE)]
    profile: String,
    /// Start from an empty data directory instead of last session's state.
    #[arg(long)]
    fresh: bool,
}

/// The host's own log: warnings and errors, but not the development key's
/// warning (using it is what `sluice dev` is for), and not the function's
/// output (the dev log shows it under its request).
const QUIET: &str = "warn,sluice_host::pipeline::authenticate::dev=error,sluice::guest=off";

/// Who deploys, in the version history.
const OPERATOR: &str = "sluice dev";

/// Serves the crates until Ctrl-C.
pub async fn run(mut config: Config, args: Args) -> Result<()> {
    init_logs();
    let crates = watch::find_crates(&args.dirs)?;
    // Its own state, apart from `sluice serve`'s, and always SQLite.
    config.data_dir = config.data_dir.join("dev");
    config.database_url = None;
    config.functions_dirs = Vec::new();
    config.admin.enabled = false;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.fresh && config.data_dir.is_dir() {
        std::fs::remove_dir_all(&config.data_dir)
            .with_context(|| format!("emptying {}", config.data_dir.display()))?;
    }
    config.runtime.isolated_compiler = std::env::current_exe().ok();

    let started = Instant::now();
    let app = App::build(&config).await.context("starting the host")?;
    let admin = app.admin.clone();
    let live = app.live.clone();
    let server = Server::bind(app, config.listen, config.http.clone())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = server.local_addr()?;
    let reloader = Arc::new(Reloader {
        admin,
        profile: args.profile,
    });
    for function in &crates {
        reloader.reload(function, "built").await;
    }
    let token = dev_token(&config, crates.first().map(|c| c.tenant.as_str()))?;
    print_routes(&live, &crates, address, token.as_deref());
    println!(
        "ready in {:.1} s; watching for changes (Ctrl-C stops)",
        started.elapsed().as_secs_f64()
    );

    let (changes, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = watch::watch(&crates, changes)?;
    let reloads = {
        let reloader = reloader.clone();
        let crates = crates.clone();
        tokio::spawn(async move {
            while let Some(index) = changed.recv().await {
                // A burst of saves is one reload.
                let mut due = vec![index];
                while let Ok(more) = changed.try_recv() {
                    due.push(more);
                }
                due.sort_unstable();
                due.dedup();
                for index in due {
                    if let Some(function) = crates.get(index) {
                        reloader.reload(function, "reloaded").await;
                    }
                }
            }
        })
    };
    server.run(super::serve::shutdown_signal()).await;
    reloads.abort();
    println!("stopped");
    Ok(())
}

/// What rebuilds and swaps a crate in.
struct Reloader {
    admin: Arc<sluice_host::admin::Admin>,
    profile: String,
}

impl Reloader {
    /// Builds `function` and deploys it; prints how long each took, or why
    /// it failed (the version before keeps serving).
    async fn reload(&self, function: &FunctionCrate, done: &str) {
        let started = Instant::now();
        let dir = function.dir.clone();
        let profile = self.profile.clone();
        let built = tokio::task::spawn_blocking(move || build::build(&dir, &profile)).await;
        let component = match built {
            Ok(Ok(component)) => component,
            Ok(Err(e)) => {
                println!(
                    "✗ {}: {e:#}; the last good version keeps serving",
                    function.name
                );
                return;
            }
            Err(e) => {
                println!("✗ {}: the build stopped: {e}", function.name);
                return;
            }
        };
        let build_time = started.elapsed();
        match self.deploy(function, &component).await {
            Ok(version) => println!(
                "✓ {done} {}/{} v{version} in {:.2} s (build {:.2} s, load {:.2} s)",
                function.tenant,
                function.name,
                started.elapsed().as_secs_f64(),
                build_time.as_secs_f64(),
                (started.elapsed() - build_time).as_secs_f64(),
            ),
            Err(e) => println!(
                "✗ {}: {e:#}; the last good version keeps serving",
                function.name
            ),
        }
    }

    /// Deploys the crate's manifest, schemas and `component` as its next version.
    async fn deploy(&self, function: &FunctionCrate, component: &Path) -> Result<u32> {
        let manifest_path = function.dir.join("sluice.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let table: toml::Table = toml::from_str(&manifest)
            .with_context(|| format!("{} is not valid TOML", manifest_path.display()))?;
        let (tenant, name) = watch::names(&table, &manifest_path)?;
        let schemas = super::functions::read_schemas(&table, &function.dir)?
            .into_iter()
            .collect();
        let component =
            std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
        let store = &self.admin.store;
        if store.create_tenant(&tenant, OPERATOR).await?
            && let Some(record) = store.tenant(&tenant).await?
        {
            self.admin.tenants.apply(&record);
        }
        let upload = Upload {
            manifest,
            schemas,
            component: component.into(),
        };
        let version = (self.admin.deployer)
            .deploy(&tenant, &name, upload, OPERATOR)
            .await?;
        Ok(version)
    }
}

/// A token for the first crate's tenant, signed with the development key;
/// `None` when the host is configured with other keys.
fn dev_token(config: &Config, tenant: Option<&str>) -> Result<Option<String>> {
    let Some(tenant) = tenant else {
        return Ok(None);
    };
    let request = dev_key::TokenRequest {
        subject: "dev".into(),
        tenant: tenant.to_owned(),
        roles: vec!["admin".into()],
        ttl_seconds: 24 * 3600,
        extra: serde_json::Map::new(),
    };
    super::token::sign(config, request)
}

/// The live routes of each crate, and a `curl` to try the first.
fn print_routes(
    live: &sluice_host::catalog::Live,
    crates: &[FunctionCrate],
    address: SocketAddr,
    token: Option<&str>,
) {
    let catalog = live.load_full();
    let mut first = None;
    let mut first_is_get = false;
    println!();
    for function in crates {
        let Some(unit) = catalog.unit(&function.tenant, &function.name) else {
            println!(
                "  {}/{}: not live (see above)",
                function.tenant, function.name
            );
            continue;
        };
        println!("  {}/{}", function.tenant, function.name);
        for (method, path, target) in &unit.routes {
            println!(
                "    {:<7} http://{address}{path}  ({})",
                method.as_str(),
                target.route
            );
            // A GET without parameters is the best first try.
            let plain_get = method == http::Method::GET && !path.contains('{');
            if first.is_none() || (plain_get && !first_is_get) {
                first = Some((method.clone(), path.clone()));
                first_is_get = plain_get;
            }
        }
        for topic in &unit.topics {
            println!("    consumes {topic}");
        }
        for schedule in &unit.schedules {
            println!(
                "    schedule {} ({})",
                schedule.schedule.manifest.name, schedule.schedule.manifest.cron
            );
        }
    }
    println!();
    if let Some(token) = token {
        println!("  export TOKEN={token}");
        if let Some((method, path)) = first {
            let body = if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                " -H 'content-type: application/json' -d '{}'"
            } else {
                ""
            };
            println!(
                "  curl -i -X {method} http://{address}{path} -H \"authorization: Bearer $TOKEN\"{body}"
            );
        }
        println!();
    }
}

/// The dev log on stdout; the host's own warnings and errors on stderr.
fn init_logs() {
    let host = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(QUIET));
    let dev = Targets::new()
        .with_target("sluice_host", tracing::Level::INFO)
        .with_target("sluice::guest", tracing::Level::INFO);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(host);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(log::DevLog.with_filter(dev))
        .try_init();
}

/// A crate directory that is not one, said plainly.
pub(super) fn not_a_crate(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} holds no function crate (a Cargo.toml and a sluice.toml), nor do its subdirectories",
        dir.display()
    )
}
