//! `sluice serve`: the host, until Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use sluice_host::{App, Config, Server};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer};

/// `sluice serve`'s flags; the configuration file sets the rest.
#[derive(clap::Args)]
pub struct Args {
    /// Listen address, e.g. 127.0.0.1:8080.
    #[arg(long, env = "SLUICE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory whose subdirectories hold `sluice.toml` manifests; repeat for several.
    #[arg(long = "functions-dir")]
    functions_dirs: Vec<PathBuf>,
    /// Admin API listen address, e.g. 127.0.0.1:8081.
    #[arg(long, env = "SLUICE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
}

/// Serves `config` with the flags' changes, logging to stderr.
pub async fn run(mut config: Config, args: Args) -> Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let telemetry = if super::telemetry::wanted(&config.telemetry) {
        let (traces, telemetry) = super::telemetry::install(&config.telemetry)?;
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
        registry.with(traces).init();
        Some(telemetry)
    } else {
        // Off: as if traces did not exist.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init();
        None
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if !args.functions_dirs.is_empty() {
        config.functions_dirs = args.functions_dirs;
    }
    if let Some(admin) = args.admin_listen {
        config.admin.listen = admin;
    }
    // Components are compiled by this same binary in a boxed child.
    config.runtime.isolated_compiler = std::env::current_exe().ok();
    let served = serve(config).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    served
}

async fn serve(config: Config) -> Result<()> {
    let app = App::build(&config).await.context("starting sluice")?;
    let mut server = Server::bind(app, config.listen, config.http.clone())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    if config.admin.enabled {
        server = server
            .with_admin(config.admin.listen)
            .await
            .with_context(|| format!("binding the admin API to {}", config.admin.listen))?;
    }
    if let Some(admin) = server.admin_addr() {
        tracing::info!(admin = %admin, "admin API listening");
    }
    tracing::info!(
        address = %server.local_addr()?,
        data_dir = %config.data_dir.display(),
        database = %sluice_host::config::redact_url(&config.database_url()),
        "sluice is serving"
    );
    server.run(shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
