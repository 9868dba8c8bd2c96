//! `sluice tenant`: tenants and their settings, through a running host's
//! admin API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

use super::Admin;

/// What to do with tenants.
#[derive(clap::Subcommand)]
pub enum Command {
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
    /// Values and secrets the tenant's functions read (`sluice_sdk::config`).
    #[command(subcommand)]
    Config(super::config::Command),
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

/// Runs `command` through `admin`.
pub async fn run(admin: &Admin, command: Command, json: bool) -> Result<()> {
    use http::Method;
    let answer = match &command {
        Command::Config(config) => return super::config::run(admin, config.clone(), json).await,
        Command::Create { name } => {
            let body = serde_json::json!({ "name": name });
            admin.call(Method::POST, "/v1/tenants", Some(&body)).await?
        }
        Command::List => admin.call(Method::GET, "/v1/tenants", None).await?,
        Command::Show { name } => {
            admin
                .call(Method::GET, &format!("/v1/tenants/{name}"), None)
                .await?
        }
        Command::Rate {
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
        Command::Auth { name, file, .. } => {
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
        Command::Delete { name, force } => {
            let query = if *force { "?force=true" } else { "" };
            let path = format!("/v1/tenants/{name}{query}");
            admin.call(Method::DELETE, &path, None).await?
        }
        Command::Quota {
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
        Command::Create { name } => println!("tenant {name} created"),
        Command::Delete { name, .. } => println!("tenant {name} deleted"),
        Command::Auth { name, file, .. } => match file {
            Some(_) => println!("tenant {name}: its own token settings"),
            None => println!("tenant {name}: the host's token settings"),
        },
        Command::Quota { name, .. } => println!(
            "tenant {name}: max_functions {}, max_stored_bytes {}",
            answer["max_functions"], answer["max_stored_bytes"]
        ),
        Command::Rate { name, rps, .. } => match rps {
            Some(rps) => println!("tenant {name}: {rps} requests/s"),
            None => println!("tenant {name}: no rate limit"),
        },
        Command::List => {
            println!("{:<24}  CREATED BY", "NAME");
            for t in answer["tenants"].as_array().into_iter().flatten() {
                let name = t["name"].as_str().unwrap_or_default();
                let by = t["created_by"].as_str().unwrap_or_default();
                println!("{name:<24}  {by}");
            }
        }
        // Answered above.
        Command::Config(_) => {}
        Command::Show { name } => {
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
