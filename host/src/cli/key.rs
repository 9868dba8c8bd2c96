//! `sluice key`: operator keys for the admin API, made on the database
//! directly (the first key cannot come from an API that needs a key).

use anyhow::{Result, bail};
use sluice_host::Config;

use super::open_store;

/// What to do with operator keys.
#[derive(clap::Subcommand)]
pub enum Command {
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

/// Runs `command` on `config`'s database.
pub async fn run(config: &Config, command: Command, json: bool) -> Result<()> {
    let store = open_store(config).await?;
    match command {
        Command::Create { name } => {
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
        Command::List => {
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
        Command::Revoke { id } => {
            if !store.revoke_operator_key(&id).await? {
                bail!("no active key {id}");
            }
            println!("key {id} revoked");
        }
    }
    store.close().await;
    Ok(())
}
