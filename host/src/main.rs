//! The `sluice` binary: `sluice serve` runs the host, `sluice token` mints a
//! development token.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};
use sluice_host::store::{DeadLetterFilter, Store};
use sluice_host::{App, Config, Server, app, dev};
use tracing_subscriber::EnvFilter;

/// Sluice: a WebAssembly plugin host for backend functions.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Default: `sluice.toml` in the current directory if
    /// present, else built-in defaults.
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (database, development key, compiled-code cache).
    #[arg(long, global = true, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (default: sqlite://<data-dir>/sluice.db).
    #[arg(long, global = true, env = "SLUICE_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the functions found in the functions directory.
    Serve {
        /// Listen address, e.g. 127.0.0.1:8080.
        #[arg(long, env = "SLUICE_LISTEN")]
        listen: Option<SocketAddr>,
        /// Directory whose subdirectories hold `sluice.toml` manifests; repeat for several.
        #[arg(long = "functions-dir")]
        functions_dirs: Vec<PathBuf>,
    },
    /// Print a JWT signed with the development key (or the configured HS* key).
    Token {
        /// The `sub` claim: who the caller is.
        #[arg(long)]
        sub: String,
        /// The tenant claim.
        #[arg(long)]
        tenant: String,
        /// A role; repeat for several.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// An extra claim as NAME=JSON (or NAME=text); repeat for several.
        #[arg(long = "claim", value_parser = parse_claim)]
        claims: Vec<(String, Value)>,
    },
    /// Inspect and replay messages whose consumer failed for good.
    ///
    /// Works on the database directly, with or without a running host; a
    /// running host picks replayed messages up within `queue.poll_ms` (a second by default).
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(DeadLetters),
}

#[derive(Subcommand)]
enum DeadLetters {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Show at most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its payload and last error.
    Show {
        /// The dead letter's id (first column of `list`).
        id: String,
    },
    /// Queue dead letters again, with their attempts reset.
    Replay {
        /// The dead letter's id; or use --all with optional filters.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Replay every dead letter that matches the filters.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: Filter,
    },
}

/// Narrows dead letters to a tenant or a function.
#[derive(clap::Args)]
struct Filter {
    /// Only this tenant's.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this function's.
    #[arg(long)]
    function: Option<String>,
}

impl Filter {
    fn with_id(self, id: Option<String>) -> DeadLetterFilter {
        DeadLetterFilter {
            id,
            tenant: self.tenant,
            function: self.function,
        }
    }
}

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None if Path::new("sluice.toml").is_file() => Config::load(Path::new("sluice.toml"))?,
        None => Config::default(),
    };
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if cli.database_url.is_some() {
        config.database_url = cli.database_url.clone();
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = load_config(&cli)?;
    match cli.command {
        Command::Serve {
            listen,
            functions_dirs,
        } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .init();
            if let Some(listen) = listen {
                config.listen = listen;
            }
            if !functions_dirs.is_empty() {
                config.functions_dirs = functions_dirs;
            }
            serve(config).await
        }
        Command::Token {
            sub,
            tenant,
            roles,
            ttl,
            claims,
        } => {
            let auth = app::effective_auth(&config).context("reading the development key")?;
            let Some(key) = auth.keys.iter().find(|k| k.algorithm.starts_with("HS")) else {
                bail!("`sluice token` signs with an HS256 key; none is configured");
            };
            let Some(secret) = &key.secret else {
                bail!("the HS key has no secret");
            };
            let request = dev::TokenRequest {
                subject: sub,
                tenant,
                roles,
                ttl_seconds: ttl,
                extra: claims.into_iter().collect::<Map<_, _>>(),
            };
            let token = dev::mint(
                secret,
                key.kid.as_deref(),
                &auth.tenant_claim,
                &auth.roles_claim,
                &request,
            )?;
            println!("{token}");
            Ok(())
        }
        Command::DeadLetters(command) => dead_letters(&config, command).await,
    }
}

async fn dead_letters(config: &Config, command: DeadLetters) -> Result<()> {
    let url = config.database_url();
    let store = Store::open(&url, &config.database, &config.queue)
        .await
        .with_context(|| format!("opening {url}"))?;
    match command {
        DeadLetters::List {
            filter,
            limit,
            json,
        } => {
            let letters = store.dead_letters(&filter.with_id(None), limit).await?;
            if json {
                for letter in &letters {
                    println!("{}", serde_json::to_string(letter)?);
                }
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:<36}  {:<24}  {:<20}  {:>8}  LAST ERROR",
                    "ID", "FUNCTION", "TOPIC", "ATTEMPTS"
                );
                for l in &letters {
                    let function = format!("{}/{}", l.tenant, l.function);
                    let error: String = l.last_error.chars().take(60).collect();
                    println!(
                        "{:<36}  {function:<24}  {:<20}  {:>8}  {error}",
                        l.id, l.topic, l.attempts
                    );
                }
            }
        }
        DeadLetters::Show { id } => {
            let filter = DeadLetterFilter {
                id: Some(id.clone()),
                ..DeadLetterFilter::default()
            };
            let Some(letter) = store.dead_letters(&filter, 1).await?.pop() else {
                bail!("no dead letter {id}");
            };
            println!("{}", serde_json::to_string_pretty(&letter)?);
        }
        DeadLetters::Replay { id, all: _, filter } => {
            let replayed = store.replay_dead_letters(filter.with_id(id)).await?;
            println!("{replayed} message(s) queued again");
        }
    }
    store.close().await;
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    let app = App::build(&config).await.context("starting sluice")?;
    let server = Server::bind(app, config.listen, config.http.clone())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(
        address = %server.local_addr()?,
        data_dir = %config.data_dir.display(),
        database = %config.database_url(),
        "sluice is serving"
    );
    server.run(shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
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
