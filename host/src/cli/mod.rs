//! Every `sluice` subcommand, one file each: the host itself (`serve`),
//! what works on its database directly (`key`, `dead-letters`), what talks
//! to a running host's admin API (`tenant`, `deploy`, `functions`,
//! `versions`, `rollback`, `invocations`), `token`, and the guest
//! developer's `new` (a crate from a template) and `dev` (serve and reload).

pub mod build;
pub mod client;
pub mod config;
pub mod dead_letters;
pub mod dev;
pub mod functions;
pub mod invocations;
pub mod key;
pub mod new;
pub mod serve;
pub mod telemetry;
pub mod tenant;
pub mod token;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice_host::Config;
use sluice_host::store::Store;

pub use client::Admin;

/// Sluice: a WebAssembly plugin host for backend functions.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Config file (TOML). Default: `sluice.toml` in the current directory if
    /// present, else built-in defaults.
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (database, development key, compiled-code cache).
    #[arg(long, global = true, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (default: sqlite://<data-dir>/sluice.db).
    #[arg(
        long,
        global = true,
        env = "SLUICE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// The admin API of a running host, for the commands that manage it
    /// (default: `[cli] admin_url` in the config file, else `http://` and
    /// `[admin] listen`, i.e. http://127.0.0.1:8081).
    #[arg(long, global = true, env = "SLUICE_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// The operator key for the admin API (`sluice key create` makes one;
    /// default: `[cli] key` in the config file).
    #[arg(long, global = true, env = "SLUICE_ADMIN_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Compile the component on stdin to a host artifact on stdout; the
    /// host runs this in a child process to box compilation.
    #[command(hide = true)]
    CompileComponent {
        /// Meter fuel (the host's `[limits.max] fuel` is set).
        #[arg(long)]
        fuel: bool,
        /// The host's `[limits] max_wasm_stack_bytes`.
        #[arg(long)]
        max_wasm_stack: usize,
        /// Address space this process may use.
        #[arg(long)]
        max_memory_bytes: u64,
    },
    /// Serve the functions found in the functions directory.
    Serve(serve::Args),
    /// Start a function crate from a template: code, manifest, schema,
    /// README and a test that passes with `cargo test`.
    New(new::Args),
    /// Serve function crates on an embedded host and swap a new version in
    /// whenever their sources or manifest change.
    Dev(dev::Args),
    /// Create, list and revoke operator keys for the admin API.
    ///
    /// Works on the database directly: the first key cannot come from an API
    /// that needs a key.
    #[command(subcommand)]
    Key(key::Command),
    /// Create, list, show and delete tenants, through a running host's admin API.
    #[command(subcommand)]
    Tenant(tenant::Command),
    /// Deploy a function: a crate directory (built for wasm32-wasip2 first)
    /// or a `.wasm` component, with its `sluice.toml`. The new version is
    /// checked completely, then goes live at once; requests in flight finish
    /// on the old one.
    Deploy(functions::DeployArgs),
    /// List and delete live functions, through a running host's admin API.
    #[command(subcommand)]
    Functions(functions::Command),
    /// List a deployed function's versions: which is live, who deployed each, when.
    Versions {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
    },
    /// Make an earlier version of a deployed function live again.
    Rollback {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
        /// The version to go back to (default: the one before the live one).
        #[arg(long)]
        to: Option<u32>,
    },
    /// Print a JWT signed with the development key (or the configured HS* key).
    Token(token::Args),
    /// Recent invocation records (requests and message runs), newest first,
    /// through a running host's admin API.
    Invocations(invocations::Args),
    /// Inspect and replay messages whose consumer failed for good.
    ///
    /// Works on the database directly, with or without a running host; a
    /// running host picks replayed messages up within `queue.poll_ms` (a second by default).
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(dead_letters::Command),
    /// The key tenants' secrets are sealed with: make one, or reseal every
    /// secret with the current one after a rotation.
    #[command(subcommand)]
    Secrets(config::SecretsCommand),
}

impl Cli {
    /// The configuration: the file, with the flags' data directory and database.
    pub fn config(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            // In a function crate, `sluice.toml` is the function's manifest.
            None if Path::new("sluice.toml").is_file()
                && !is_manifest(Path::new("sluice.toml")) =>
            {
                Config::load(Path::new("sluice.toml"))?
            }
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if self.database_url.is_some() {
            config.database_url = self.database_url.clone();
        }
        // Keys come from the environment only, never a flag: a flag shows
        // in the process list.
        if let Ok(key) = std::env::var("SLUICE_SECRETS_KEY") {
            config.secrets.key = Some(key);
        }
        if let Ok(keys) = std::env::var("SLUICE_SECRETS_PREVIOUS_KEYS") {
            config.secrets.previous_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect();
        }
        Ok(config)
    }
}

/// True when `path` is a function's manifest (it names a tenant), not a
/// host's configuration.
fn is_manifest(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|table| table.contains_key("tenant"))
}

/// The admin API client: URL and key from flags or environment, else the config file.
pub fn admin(url: &Option<String>, key: &Option<String>, config: &Config) -> Result<Admin> {
    let url = (url.clone())
        .or_else(|| config.cli.admin_url.clone())
        .unwrap_or_else(|| format!("http://{}", config.admin.listen));
    let key = key.clone().or_else(|| config.cli.key.clone());
    Admin::new(&url, key)
}

/// The configured database, for the commands that work on it directly.
pub async fn open_store(config: &Config) -> Result<Store> {
    let url = config.database_url();
    let files = sluice_host::store::Files::open(&config.blobs, &config.blobs_dir())?;
    // These commands never read tenants' secrets: no key is needed.
    Store::open(
        &url,
        files,
        &config.database,
        &config.queue,
        Default::default(),
    )
    .await
    .with_context(|| format!("opening {}", sluice_host::config::redact_url(&url)))
}
