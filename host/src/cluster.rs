//! Keeping a node in step with the others that share its database.
//!
//! Deploys, rollbacks and tenant changes made on any node bump a generation
//! in the database in the same transaction. Every node follows it: on
//! PostgreSQL a `LISTEN` tells it at once, and a poll every half second
//! covers a lost connection (and lets a host notice what the `sluice` CLI
//! changed in its SQLite file). Deliveries added by another node's commit
//! wake this node's dispatcher through the same listener.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::app::{App, apply_tenant};
use crate::store::{Backend, CATALOG_CHANNEL, DELIVERIES_CHANNEL};

/// How often the generation is read, listener or not.
const POLL: Duration = Duration::from_millis(500);
/// Polls between recounts of every tenant's pending deliveries, which
/// `[queue] max_pending_per_tenant` is checked against (other nodes add
/// and consume them too).
const RECOUNT_EVERY: u64 = 4;
/// Wait before connecting the listener again after a failure.
const RECONNECT: Duration = Duration::from_secs(5);

enum Event {
    Poll,
    Catalog,
    Deliveries,
    /// The listener's connection dropped: notices may have been missed.
    Lost,
}

/// What this node last applied.
#[derive(Default)]
struct Seen {
    generation: Option<i64>,
    /// Each tenant's settings as last applied, to apply only what changed.
    tenants: HashMap<String, String>,
}

/// Follows changes made by other nodes until `stop` turns true.
pub async fn follow(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut seen = Seen::default();
    let mut polls: u64 = 0;
    let mut listener: Option<PgListener> = None;
    let mut next_connect = Instant::now();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if app.store.backend() == Backend::Postgres
            && listener.is_none()
            && Instant::now() >= next_connect
        {
            match listen(app.store.url()).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other nodes' changes; polling");
                    next_connect = Instant::now() + RECONNECT;
                }
            }
        }
        let event = tokio::select! {
            _ = stop.changed() => break,
            _ = poll.tick() => Event::Poll,
            event = next_notice(&mut listener) => event,
        };
        match event {
            Event::Deliveries => app.store.deliveries_ready().notify_one(),
            Event::Lost => {
                listener = None;
                seen.generation = None;
            }
            Event::Poll if app.store.backend() == Backend::Postgres => {
                polls += 1;
                if polls.is_multiple_of(RECOUNT_EVERY)
                    && let Err(e) = app.store.recount_pending().await
                {
                    tracing::warn!(error = %e, "could not count pending deliveries");
                }
                if let Err(e) = catch_up(&app, &mut seen).await {
                    tracing::warn!(error = %e, "could not catch up with other nodes' changes");
                }
            }
            Event::Catalog | Event::Poll => {
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

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener
        .listen_all([CATALOG_CHANNEL, DELIVERIES_CHANNEL])
        .await?;
    Ok(listener)
}

async fn next_notice(listener: &mut Option<PgListener>) -> Event {
    let Some(l) = listener else {
        return std::future::pending().await;
    };
    match l.try_recv().await {
        Ok(Some(n)) if n.channel() == DELIVERIES_CHANNEL => Event::Deliveries,
        Ok(Some(_)) => Event::Catalog,
        Ok(None) | Err(_) => Event::Lost,
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
    let mut now = HashMap::with_capacity(tenants.len());
    for tenant in &tenants {
        let settings = format!(
            "{:?}",
            (&tenant.rate, &tenant.auth, tenant.max_stored_bytes)
        );
        if seen.tenants.get(&tenant.name) != Some(&settings) {
            apply_tenant(
                &app.quotas,
                app.store.storage_quotas(),
                &app.tenant_keyrings,
                tenant,
            );
        }
        now.insert(tenant.name.clone(), settings);
    }
    for gone in seen.tenants.keys().filter(|t| !now.contains_key(*t)) {
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
