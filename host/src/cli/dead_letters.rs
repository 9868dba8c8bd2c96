//! `sluice dead-letters`: messages whose consumer failed for good, listed,
//! shown and queued again on the database directly.

use anyhow::{Result, bail};
use sluice_host::Config;
use sluice_host::store::DeadLetterFilter;

use super::open_store;

/// What to do with dead letters.
#[derive(clap::Subcommand)]
pub enum Command {
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
pub struct Filter {
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

/// Runs `command` on `config`'s database.
pub async fn run(config: &Config, command: Command) -> Result<()> {
    let store = open_store(config).await?;
    match command {
        Command::List {
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
        Command::Show { id } => {
            let filter = DeadLetterFilter {
                id: Some(id.clone()),
                ..DeadLetterFilter::default()
            };
            let Some(letter) = store.dead_letters(&filter, 1).await?.pop() else {
                bail!("no dead letter {id}");
            };
            println!("{}", serde_json::to_string_pretty(&letter)?);
        }
        Command::Replay { id, all: _, filter } => {
            let replayed = store.replay_dead_letters(filter.with_id(id)).await?;
            println!("{replayed} message(s) queued again");
        }
    }
    store.close().await;
    Ok(())
}
