//! Keeping a node in step with the others that share its database.
//!
//! Deploys, rollbacks and tenant changes made on any node bump a generation
//! in the database in the same transaction (as do changes to tenants'
//! configuration). Every node follows it: on
//! PostgreSQL a `LISTEN` tells it at once, and a poll every half second
//! covers a lost connection (and lets a host notice what the `sluice` CLI
//! changed in its SQLite file). Then the node reloads the deployed
//! functions that changed and puts every tenant's settings in force again.
//! Deliveries added by another node's commit wake this node's dispatcher
//! through the same listener.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Catalog, DeployError, Deployer, Origin};
use crate::store::{Backend, Notice, Notices, Store, Tenant};

/// How often the generation is read, listener or not.
const POLL: Duration = Duration::from_millis(500);
/// Polls between recounts of every tenant's pending deliveries, which
/// `[queue] max_pending_per_tenant` is checked against (other nodes add
/// and consume them too).
const RECOUNT_EVERY: u64 = 4;
/// Wait before connecting the listener again after a failure.
const RECONNECT: Duration = Duration::from_secs(5);

/// Where tenants' settings are put in force: the host's tenant policy,
/// handed to the follower by the app (it lives above the catalog).
pub trait TenantSettings: Send + Sync {
    /// Puts `tenant`'s settings in force; settings that did not change stay
    /// as they are (rate buckets, fetched JWKS).
    fn apply(&self, tenant: &Tenant);
    /// Drops everything in force for tenant `name`, deleted on another node.
    fn forget(&self, name: &str);
}

/// Follows the changes other nodes make.
pub struct Follower {
    store: Store,
    deployer: Arc<Deployer>,
    tenants: Arc<dyn TenantSettings>,
}

/// What this node last applied.
#[derive(Default)]
struct Seen {
    generation: Option<i64>,
    /// The tenants that existed then, to notice those deleted since.
    tenants: HashSet<String>,
}

impl Follower {
    /// A follower that reloads functions with `deployer` and puts tenants'
    /// settings in force with `tenants`.
    pub fn new(store: Store, deployer: Arc<Deployer>, tenants: Arc<dyn TenantSettings>) -> Self {
        Self {
            store,
            deployer,
            tenants,
        }
    }

    /// Follows changes made by other nodes until `stop` turns true.
    pub async fn follow(self, mut stop: watch::Receiver<bool>) {
        let shared = self.store.backend() == Backend::Postgres;
        let mut seen = Seen::default();
        let mut polls: u64 = 0;
        let mut notices: Option<Notices> = None;
        let mut next_connect = Instant::now();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if shared && notices.is_none() && Instant::now() >= next_connect {
                // Connecting waits for a database that is down: never
                // longer than the host's stop.
                let connected = tokio::select! {
                    _ = stop.changed() => break,
                    connected = self.store.notices() => connected,
                };
                match connected {
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
                Some(Notice::Deliveries) => self.store.deliveries_ready().notify_one(),
                Some(Notice::Lost) => {
                    notices = None;
                    seen.generation = None;
                }
                Some(Notice::Catalog) | None => {
                    if notice.is_none() && shared {
                        polls += 1;
                        if polls.is_multiple_of(RECOUNT_EVERY)
                            && let Err(e) = self.store.recount_pending().await
                        {
                            tracing::warn!(error = %e, "could not count pending deliveries");
                        }
                    }
                    if let Err(e) = self.catch_up(&mut seen).await {
                        tracing::warn!(error = %e, "could not catch up with other nodes' changes");
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
        }
    }

    /// Applies what changed since the generation last seen.
    async fn catch_up(&self, seen: &mut Seen) -> Result<(), String> {
        let generation = (self.store.catalog_generation().await).map_err(|e| e.to_string())?;
        if seen.generation == Some(generation) {
            return Ok(());
        }
        let tenants = self.store.tenants().await.map_err(|e| e.to_string())?;
        for tenant in &tenants {
            self.tenants.apply(tenant);
        }
        let now: HashSet<String> = tenants.into_iter().map(|t| t.name).collect();
        for gone in seen.tenants.difference(&now) {
            self.tenants.forget(gone);
        }
        seen.tenants = now;
        (self.store.load_configs().await).map_err(|e| e.to_string())?;
        let changed = self.deployer.sync().await.map_err(|e| e.to_string())?;
        if changed {
            tracing::info!(
                generation,
                "deployed functions changed on another node; now live here"
            );
        }
        seen.generation = Some(generation);
        Ok(())
    }
}

async fn next(notices: &mut Option<Notices>) -> Notice {
    match notices {
        Some(n) => n.next().await,
        None => std::future::pending().await,
    }
}

impl Deployer {
    /// Brings this node's deployed functions in line with the database (what
    /// another node deployed, rolled back or removed); returns whether the
    /// catalog changed. Versions already live here are kept, not recompiled.
    pub async fn sync(self: &Arc<Self>) -> Result<bool, DeployError> {
        let _one_at_a_time = self.lock.lock().await;
        let live = self.store.live_versions().await?;
        let current = self.live.load_full();
        let mut kept = Vec::new();
        let mut load = Vec::new();
        for version in live {
            match current.unit(&version.tenant, &version.name) {
                Some(unit) if unit.origin == Origin::Directory => {}
                Some(unit) if unit.function.version == Some(version.version) => {
                    kept.push(unit.clone())
                }
                _ => load.push(version),
            }
        }
        let deployed_here = current
            .units()
            .filter(|u| u.origin == Origin::Deployed)
            .count();
        if load.is_empty() && kept.len() == deployed_here {
            return Ok(false);
        }
        self.fetch_all(&load).await;
        let deployer = self.clone();
        let loaded = tokio::task::spawn_blocking(move || deployer.restore(&load))
            .await
            .map_err(|e| DeployError::Storage(std::io::Error::other(e.to_string())))?;
        let directory = current
            .units()
            .filter(|u| u.origin == Origin::Directory)
            .cloned()
            .collect();
        kept.extend(loaded);
        self.live.activate(Catalog::starting(directory, kept)?);
        Ok(true)
    }
}
