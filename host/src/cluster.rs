//! Keeping a node in step with the others that share its database.
//!
//! Deploys, rollbacks and tenant changes made on any node bump a generation
//! in the database in the same transaction. Every node follows it: on
//! PostgreSQL a `LISTEN` tells it at once, and a poll every half second
//! covers a lost connection (and lets a host notice what the `sluice` CLI
//! changed in its SQLite file). Deliveries added by another node's commit
//! wake this node's dispatcher through the same listener.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::app::{App, apply_tenant};
use crate::store::{Backend, Notice, Notices};

/// How often the generation is read, listener or not.
const POLL: Duration = Duration::from_millis(500);
/// Polls between recounts of every tenant's pending deliveries, which
/// `[queue] max_pending_per_tenant` is checked against (other nodes add
/// and consume them too).
const RECOUNT_EVERY: u64 = 4;
/// Wait before connecting the listener again after a failure.
const RECONNECT: Duration = Duration::from_secs(5);

/// What this node last applied.
#[derive(Default)]
struct Seen {
    generation: Option<i64>,
    /// The tenants that existed then, to notice those deleted since.
    tenants: HashSet<String>,
}

/// Follows changes made by other nodes until `stop` turns true.
pub async fn follow(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let shared = app.store.backend() == Backend::Postgres;
    let mut seen = Seen::default();
    let mut polls: u64 = 0;
    let mut notices: Option<Notices> = None;
    let mut next_connect = Instant::now();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if shared && notices.is_none() && Instant::now() >= next_connect {
            match app.store.notices().await {
                Ok(n) => notices = n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other nodes' changes; polling");
                    next_connect = Instant::now() + RECONNECT;
                }
            }
        }
        let notice = tokio::select! {
            _ = stop.changed() => break,
            _ = poll.tick() => None,
            notice = next(&mut notices) => Some(notice),
        };
        match notice {
            Some(Notice::Deliveries) => app.store.deliveries_ready().notify_one(),
            Some(Notice::Lost) => {
                notices = None;
                seen.generation = None;
            }
            Some(Notice::Catalog) | None => {
                if notice.is_none() && shared {
                    polls += 1;
                    if polls.is_multiple_of(RECOUNT_EVERY)
                        && let Err(e) = app.store.recount_pending().await
                    {
                        tracing::warn!(error = %e, "could not count pending deliveries");
                    }
                }
                if let Err(e) = catch_up(&app, &mut seen).await {
                    tracing::warn!(error = %e, "could not catch up with other nodes' changes");
                }
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}

async fn next(notices: &mut Option<Notices>) -> Notice {
    match notices {
        Some(n) => n.next().await,
        None => std::future::pending().await,
    }
}

/// Applies what changed since the generation last seen.
async fn catch_up(app: &App, seen: &mut Seen) -> Result<(), String> {
    let generation = app
        .store
        .catalog_generation()
        .await
        .map_err(|e| e.to_string())?;
    if seen.generation == Some(generation) {
        return Ok(());
    }
    let tenants = app.store.tenants().await.map_err(|e| e.to_string())?;
    // Settings that did not change stay as they are (rate buckets, fetched JWKS).
    for tenant in &tenants {
        apply_tenant(
            &app.quotas,
            app.store.storage_quotas(),
            &app.tenant_keyrings,
            tenant,
        );
    }
    let now: HashSet<String> = tenants.into_iter().map(|t| t.name).collect();
    for gone in seen.tenants.difference(&now) {
        app.quotas.set(gone, None);
        app.store.storage_quotas().set(gone, None);
        app.tenant_keyrings.set(gone, None);
        app.store.files().forget(gone);
    }
    seen.tenants = now;
    let changed = crate::deploy::sync(app).await.map_err(|e| e.to_string())?;
    if changed {
        tracing::info!(
            generation,
            "deployed functions changed on another node; now live here"
        );
    }
    seen.generation = Some(generation);
    Ok(())
}
