//! `sluice tenant config`: the values and secrets a tenant's functions
//! read, through a running host's admin API; and `sluice secrets`, the
//! host's key for them.

use std::io::Read;

use anyhow::{Context, Result, bail};
use http::Method;
use serde_json::{Value, json};

use super::Admin;

/// What to do with a tenant's configuration.
#[derive(Clone, clap::Subcommand)]
pub enum Command {
    /// Set a value; with --secret, sealed and never shown again.
    Set {
        /// The tenant.
        tenant: String,
        /// Its name, e.g. STRIPE_API_KEY.
        name: String,
        /// The value; left out, it is read from stdin (do that for secrets,
        /// which then stay out of your shell's history).
        value: Option<String>,
        /// Keep it as a secret.
        #[arg(long)]
        secret: bool,
        /// For this function alone (it wins over the tenant's value).
        #[arg(long)]
        function: Option<String>,
    },
    /// List a tenant's values; secrets by name only.
    List {
        /// The tenant.
        tenant: String,
    },
    /// Remove a value.
    Unset {
        /// The tenant.
        tenant: String,
        /// Its name.
        name: String,
        /// The function's own value rather than the tenant's.
        #[arg(long)]
        function: Option<String>,
    },
}

/// Runs `command` through `admin`.
pub async fn run(admin: &Admin, command: Command, json: bool) -> Result<()> {
    let answer = match &command {
        Command::Set {
            tenant,
            name,
            value,
            secret,
            function,
        } => {
            let value = match value {
                Some(v) => v.clone(),
                None => read_stdin()?,
            };
            let body = json!({ "value": value, "secret": secret, "function": function });
            let path = format!("/v1/tenants/{tenant}/config/{name}");
            admin.call(Method::PUT, &path, Some(&body)).await?
        }
        Command::List { tenant } => {
            let path = format!("/v1/tenants/{tenant}/config");
            admin.call(Method::GET, &path, None).await?
        }
        Command::Unset {
            tenant,
            name,
            function,
        } => {
            let query = function
                .as_ref()
                .map_or_else(String::new, |f| format!("?function={f}"));
            let path = format!("/v1/tenants/{tenant}/config/{name}{query}");
            admin.call(Method::DELETE, &path, None).await?
        }
    };
    if json {
        println!("{answer}");
        return Ok(());
    }
    match command {
        Command::Set { tenant, name, .. } => {
            let kind = if answer["secret"] == true {
                "secret"
            } else {
                "value"
            };
            println!("tenant {tenant}: {kind} {name} set{}", scope(&answer));
        }
        Command::Unset { tenant, name, .. } => println!("tenant {tenant}: {name} removed"),
        Command::List { .. } => {
            println!("{:<32}  {:<16}  VALUE", "NAME", "FUNCTION");
            for e in answer["config"].as_array().into_iter().flatten() {
                let value = match e["secret"] == true {
                    true => format!(
                        "(secret, sealed with key {})",
                        e["sealed_with"].as_str().unwrap_or("?")
                    ),
                    false => e["value"].as_str().unwrap_or_default().to_owned(),
                };
                println!(
                    "{:<32}  {:<16}  {value}",
                    e["name"].as_str().unwrap_or_default(),
                    e["function"].as_str().unwrap_or("(all)")
                );
            }
        }
    }
    Ok(())
}

/// " for function F", or nothing for the whole tenant.
fn scope(entry: &Value) -> String {
    entry["function"]
        .as_str()
        .map_or_else(String::new, |f| format!(" for function {f}"))
}

/// The value from stdin, without the one newline `echo` or a terminal adds.
fn read_stdin() -> Result<String> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("reading the value from stdin")?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!("no value given, and stdin was empty");
    }
    Ok(value)
}

/// What to do with the host's secrets key.
#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Print a fresh random key for `[secrets] key` or SLUICE_SECRETS_KEY.
    NewKey,
    /// Seal every secret again with the host's current key, after a
    /// rotation; then the previous keys can be dropped.
    Reseal,
}

/// Runs `command`; `admin` is only needed for a reseal.
pub async fn secrets(admin: Result<Admin>, command: SecretsCommand, json: bool) -> Result<()> {
    match command {
        SecretsCommand::NewKey => {
            let key = sluice_host::store::SecretKeys::generate()
                .map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            println!("{key}");
        }
        SecretsCommand::Reseal => {
            let answer = admin?
                .call(Method::POST, "/v1/secrets/reseal", None)
                .await?;
            if json {
                println!("{answer}");
            } else {
                println!(
                    "{} secret(s) resealed with the current key, {} already were, {} sealed with a key this host lacks",
                    answer["resealed"], answer["current"], answer["unreadable"]
                );
            }
        }
    }
    Ok(())
}
