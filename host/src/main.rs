//! The `sluice` binary: `sluice serve` runs the host, `sluice token` mints a
//! development token.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod cli;

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
    /// The admin API of a running host, for the commands that manage it
    /// (default: `[cli] admin_url` in the config file, else `http://` and
    /// `[admin] listen`, i.e. http://127.0.0.1:8081).
    #[arg(long, global = true, env = "SLUICE_ADMIN_URL")]
    admin_url: Option<String>,
    /// The operator key for the admin API (`sluice key create` makes one;
    /// default: `[cli] key` in the config file).
    #[arg(long, global = true, env = "SLUICE_ADMIN_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    Serve {
        /// Listen address, e.g. 127.0.0.1:8080.
        #[arg(long, env = "SLUICE_LISTEN")]
        listen: Option<SocketAddr>,
        /// Directory whose subdirectories hold `sluice.toml` manifests; repeat for several.
        #[arg(long = "functions-dir")]
        functions_dirs: Vec<PathBuf>,
        /// Admin API listen address, e.g. 127.0.0.1:8081.
        #[arg(long, env = "SLUICE_ADMIN_LISTEN")]
        admin_listen: Option<SocketAddr>,
    },
    /// Create, list and revoke operator keys for the admin API.
    ///
    /// Works on the database directly: the first key cannot come from an API
    /// that needs a key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create, list, show and delete tenants, through a running host's admin API.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Deploy a function: a crate directory (built for wasm32-wasip2 first)
    /// or a `.wasm` component, with its `sluice.toml`. The new version is
    /// checked completely, then goes live at once; requests in flight finish
    /// on the old one.
    Deploy {
        /// A crate directory with `Cargo.toml` and `sluice.toml`, a directory
        /// with a `sluice.toml` naming its component, or a `.wasm` file.
        path: PathBuf,
        /// The manifest, if not `sluice.toml` in the directory (or next to the `.wasm`).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Deploy for this tenant instead of the manifest's.
        #[arg(long)]
        tenant: Option<String>,
        /// Deploy under this name instead of the manifest's.
        #[arg(long)]
        name: Option<String>,
        /// Cargo profile for building a crate.
        #[arg(long, default_value = "release")]
        profile: String,
    },
    /// List and delete live functions, through a running host's admin API.
    #[command(subcommand)]
    Functions(FunctionsCommand),
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
    /// Recent invocation records (requests and message runs), newest first,
    /// through a running host's admin API.
    Invocations {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this function's.
        #[arg(long)]
        function: Option<String>,
        /// Show at most this many (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Inspect and replay messages whose consumer failed for good.
    ///
    /// Works on the database directly, with or without a running host; a
    /// running host picks replayed messages up within `queue.poll_ms` (a second by default).
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(DeadLetters),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key and print it; it is shown this once.
    Create {
        /// What the key is for, e.g. the operator's name.
        #[arg(long)]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id (the `sk_<id>_` part); it stops working at once.
    Revoke {
        /// The key's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// 1-63 characters of a-z, 0-9 and -.
        name: String,
    },
    /// List tenants.
    List,
    /// Show a tenant and its functions.
    Show {
        /// The tenant.
        name: String,
    },
    /// Set or clear a tenant's request rate (429 with retry-after past it).
    Rate {
        /// The tenant.
        name: String,
        /// Requests per second, sustained.
        #[arg(long, required_unless_present = "clear")]
        rps: Option<f64>,
        /// Requests admitted at once (default: one second's worth).
        #[arg(long)]
        burst: Option<u32>,
        /// Remove the limit.
        #[arg(long, conflicts_with_all = ["rps", "burst"])]
        clear: bool,
    },
    /// Give a tenant its own token settings (a JSON file), or return it to the host's.
    Auth {
        /// The tenant.
        name: String,
        /// A JSON file: {"keys": [{"algorithm", "secret" | "public_key_pem", "kid"?}], "issuer"?, "audience"?, "tenant_claim"?, "roles_claim"?}.
        #[arg(long, required_unless_present = "clear")]
        file: Option<PathBuf>,
        /// Use the host's settings again.
        #[arg(long, conflicts_with = "file")]
        clear: bool,
    },
    /// Delete a tenant and its data; refused while it has functions.
    Delete {
        /// The tenant.
        name: String,
        /// Delete it with its functions and data.
        #[arg(long)]
        force: bool,
    },
    /// Set a tenant's quotas; a quota left out is lifted.
    Quota {
        /// The tenant.
        name: String,
        /// Most functions it may deploy.
        #[arg(long)]
        max_functions: Option<u32>,
        /// Most bytes of documents it may store.
        #[arg(long)]
        max_stored_bytes: Option<u64>,
    },
}

#[derive(Subcommand)]
enum FunctionsCommand {
    /// List live functions: origin, version, routes, topics, schedules.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Take a deployed function down and delete its versions.
    Delete {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
    },
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
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, not a backtrace: this is for operators.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut config = load_config(&cli)?;
    match cli.command {
        Command::CompileComponent {
            fuel,
            max_wasm_stack,
            max_memory_bytes,
        } => sluice_host::runtime::compile_component(fuel, max_wasm_stack, max_memory_bytes)
            .map_err(anyhow::Error::msg),
        Command::Serve {
            listen,
            functions_dirs,
            admin_listen,
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
            if let Some(admin) = admin_listen {
                config.admin.listen = admin;
            }
            // Components are compiled by this same binary in a boxed child.
            config.runtime.isolated_compiler = std::env::current_exe().ok();
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
        Command::Key(command) => key(&config, command, cli.json).await,
        Command::Invocations {
            tenant,
            function,
            limit,
        } => {
            let admin = admin_client(&cli.admin_url, &cli.key, &config)?;
            invocations(&admin, tenant, function, limit, cli.json).await
        }
        Command::Tenant(command) => {
            let admin = admin_client(&cli.admin_url, &cli.key, &config)?;
            tenant(&admin, command, cli.json).await
        }
        Command::Deploy {
            path,
            manifest,
            tenant,
            name,
            profile,
        } => {
            let admin = admin_client(&cli.admin_url, &cli.key, &config)?;
            let args = cli::functions::DeployArgs {
                tenant,
                name,
                manifest,
                profile,
            };
            cli::functions::deploy(&admin, &path, args, cli.json).await
        }
        Command::Functions(command) => {
            let admin = admin_client(&cli.admin_url, &cli.key, &config)?;
            match command {
                FunctionsCommand::List { tenant } => {
                    cli::functions::list(&admin, tenant.as_deref(), cli.json).await
                }
                FunctionsCommand::Delete { tenant, name } => {
                    cli::functions::delete(&admin, &tenant, &name, cli.json).await
                }
            }
        }
        Command::Versions { tenant, name } => {
            let admin = admin_client(&cli.admin_url, &cli.key, &config)?;
            cli::functions::versions(&admin, &tenant, &name, cli.json).await
        }
        Command::Rollback { tenant, name, to } => {
            let admin = admin_client(&cli.admin_url, &cli.key, &config)?;
            cli::functions::rollback(&admin, &tenant, &name, to, cli.json).await
        }
    }
}

/// The admin API client: URL and key from flags or environment, else the config file.
fn admin_client(url: &Option<String>, key: &Option<String>, config: &Config) -> Result<cli::Admin> {
    let url = (url.clone())
        .or_else(|| config.cli.admin_url.clone())
        .unwrap_or_else(|| format!("http://{}", config.admin.listen));
    let key = key.clone().or_else(|| config.cli.key.clone());
    cli::Admin::new(&url, key)
}

async fn open_store(config: &Config) -> Result<Store> {
    let url = config.database_url();
    Store::open(&url, &config.blobs_dir(), &config.database, &config.queue)
        .await
        .with_context(|| format!("opening {url}"))
}

async fn key(config: &Config, command: KeyCommand, json: bool) -> Result<()> {
    let store = open_store(config).await?;
    match command {
        KeyCommand::Create { name } => {
            let (key, listed) = store.create_operator_key(&name).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "key": key, "id": listed.id, "name": listed.name })
                );
            } else {
                eprintln!(
                    "operator key {} ({name}) created; it is shown only now:",
                    listed.id
                );
                println!("{key}");
            }
        }
        KeyCommand::List => {
            let keys = store.operator_keys().await?;
            if json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                println!("{:<14}  {:<24}  STATE", "ID", "NAME");
                for k in &keys {
                    let state = if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!("{:<14}  {:<24}  {state}", k.id, k.name);
                }
            }
        }
        KeyCommand::Revoke { id } => {
            if !store.revoke_operator_key(&id).await? {
                bail!("no active key {id}");
            }
            println!("key {id} revoked");
        }
    }
    store.close().await;
    Ok(())
}

async fn invocations(
    admin: &cli::Admin,
    tenant: Option<String>,
    function: Option<String>,
    limit: u32,
    json: bool,
) -> Result<()> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &limit.to_string());
    if let Some(t) = &tenant {
        query.append_pair("tenant", t);
    }
    if let Some(f) = &function {
        query.append_pair("function", f);
    }
    let path = format!("/v1/invocations?{}", query.finish());
    let answer = admin.call(http::Method::GET, &path, None).await?;
    let rows = answer["invocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if json {
        for row in &rows {
            println!("{row}");
        }
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:<32}  {:>6}  {:<12}  {:>10}",
        "REQUEST ID", "FUNCTION", "ROUTE", "STATUS", "OUTCOME", "DURATION"
    );
    for r in &rows {
        let function = format!(
            "{}/{}",
            r["tenant"].as_str().unwrap_or_default(),
            r["function"].as_str().unwrap_or_default()
        );
        let micros = r["duration_us"].as_i64().unwrap_or_default();
        println!(
            "{:<36}  {function:<20}  {:<32}  {:>6}  {:<12}  {:>8.1}ms",
            r["request_id"].as_str().unwrap_or_default(),
            r["route"].as_str().unwrap_or_default(),
            r["status"].as_i64().unwrap_or_default(),
            r["outcome"].as_str().unwrap_or_default(),
            micros as f64 / 1000.0,
        );
    }
    Ok(())
}

async fn tenant(admin: &cli::Admin, command: TenantCommand, json: bool) -> Result<()> {
    use http::Method;
    let answer = match &command {
        TenantCommand::Create { name } => {
            let body = serde_json::json!({ "name": name });
            admin.call(Method::POST, "/v1/tenants", Some(&body)).await?
        }
        TenantCommand::List => admin.call(Method::GET, "/v1/tenants", None).await?,
        TenantCommand::Show { name } => {
            admin
                .call(Method::GET, &format!("/v1/tenants/{name}"), None)
                .await?
        }
        TenantCommand::Rate {
            name, rps, burst, ..
        } => {
            let path = format!("/v1/tenants/{name}/rate");
            match rps {
                Some(rps) => {
                    let body = serde_json::json!({ "requests_per_second": rps, "burst": burst });
                    admin.call(Method::PUT, &path, Some(&body)).await?
                }
                None => admin.call(Method::DELETE, &path, None).await?,
            }
        }
        TenantCommand::Auth { name, file, .. } => {
            let path = format!("/v1/tenants/{name}/auth");
            match file {
                Some(file) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let body: Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", file.display()))?;
                    admin.call(Method::PUT, &path, Some(&body)).await?
                }
                None => admin.call(Method::DELETE, &path, None).await?,
            }
        }
        TenantCommand::Delete { name, force } => {
            let query = if *force { "?force=true" } else { "" };
            let path = format!("/v1/tenants/{name}{query}");
            admin.call(Method::DELETE, &path, None).await?
        }
        TenantCommand::Quota {
            name,
            max_functions,
            max_stored_bytes,
        } => {
            let body = serde_json::json!({
                "max_functions": max_functions,
                "max_stored_bytes": max_stored_bytes,
            });
            let path = format!("/v1/tenants/{name}/quota");
            admin.call(Method::PUT, &path, Some(&body)).await?
        }
    };
    if json {
        println!("{answer}");
        return Ok(());
    }
    match command {
        TenantCommand::Create { name } => println!("tenant {name} created"),
        TenantCommand::Delete { name, .. } => println!("tenant {name} deleted"),
        TenantCommand::Auth { name, file, .. } => match file {
            Some(_) => println!("tenant {name}: its own token settings"),
            None => println!("tenant {name}: the host's token settings"),
        },
        TenantCommand::Quota { name, .. } => println!(
            "tenant {name}: max_functions {}, max_stored_bytes {}",
            answer["max_functions"], answer["max_stored_bytes"]
        ),
        TenantCommand::Rate { name, rps, .. } => match rps {
            Some(rps) => println!("tenant {name}: {rps} requests/s"),
            None => println!("tenant {name}: no rate limit"),
        },
        TenantCommand::List => {
            println!("{:<24}  CREATED BY", "NAME");
            for t in answer["tenants"].as_array().into_iter().flatten() {
                let name = t["name"].as_str().unwrap_or_default();
                let by = t["created_by"].as_str().unwrap_or_default();
                println!("{name:<24}  {by}");
            }
        }
        TenantCommand::Show { name } => {
            println!(
                "tenant {name}, created by {}",
                answer["created_by"].as_str().unwrap_or_default()
            );
            for f in answer["functions"].as_array().into_iter().flatten() {
                println!("  function {}", f.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

async fn dead_letters(config: &Config, command: DeadLetters) -> Result<()> {
    let store = open_store(config).await?;
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
