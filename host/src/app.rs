//! The composition root: opens the store, starts the runtime, puts tenants'
//! settings in force, loads the functions, and hands each part only the
//! handles it needs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::Admin;
use crate::catalog::deploy::{self, Deployer};
use crate::catalog::sync::Follower;
use crate::catalog::{Catalog, Live};
use crate::config::Config;
use crate::config::manifest::{FunctionManifest, ManifestError};
use crate::delivery::Dispatcher;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::pipeline::authenticate::{KeyError, Keys, dev};
use crate::pipeline::persist::Persist;
use crate::pipeline::receive::Admission;
use crate::policy::TenantPolicy;
use crate::runtime::{LoadError, Runtime};
use crate::store::{Backend, CommitError, Files, SealError, SecretKeys, Store, StoreError};

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or development key could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The wasm engine could not start.
    #[error(transparent)]
    Runtime(#[from] LoadError),
    /// A function could not be loaded.
    #[error(transparent)]
    Functions(#[from] deploy::StartError),
    /// The queue could not be prepared.
    #[error("preparing the queue: {0}")]
    Queue(#[from] CommitError),
    /// The keys are unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secrets keys are unusable.
    #[error("[secrets]: {0}")]
    Secrets(#[from] SealError),
}

/// A host ready to serve: each part with its handles.
pub struct App {
    /// What requests run through.
    pub pipeline: Arc<Pipeline>,
    /// What delivers messages, events and schedule ticks.
    pub dispatcher: Arc<Dispatcher>,
    /// What the admin API works on.
    pub admin: Arc<Admin>,
    /// What follows the other nodes' changes.
    pub follower: Follower,
    /// The live catalog, whose schedules fire.
    pub live: Arc<Live>,
    /// The database, closed last.
    pub store: Store,
}

impl App {
    /// Opens the store, compiles every function and builds the routing table.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let data_dir = &config.data_dir;
        let io_err = |source| StartError::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io_err)?;
        let keys = Arc::new(Keys::new(&dev::effective_auth(config).map_err(io_err)?)?);
        let url = config.database_url();
        let store = Store::open(
            &url,
            Files::open(&config.blobs, &config.blobs_dir())?,
            &config.database,
            &config.queue,
            SecretKeys::new(
                secrets_key(config, Backend::of(&url))
                    .map_err(io_err)?
                    .as_deref(),
                &config.secrets.previous_keys,
            )?,
        )
        .await?;
        recover(&store).await?;
        store.load_configs().await?;
        let cache_dir =
            (config.runtime.cache_dir.clone()).unwrap_or_else(|| data_dir.join("cache"));
        let runtime = Arc::new(Runtime::new(
            &config.runtime,
            &config.limits,
            &config.cache,
            Some(&cache_dir),
        )?);

        let mut manifests = Vec::new();
        for dir in &config.functions_dirs {
            if dir.is_dir() {
                manifests.extend(FunctionManifest::load_dir(dir)?);
            } else {
                tracing::warn!(dir = %dir.display(), "functions directory not found");
            }
        }
        // Every tenant of a loaded manifest exists, for the admin API.
        let tenants: BTreeSet<&str> = manifests.iter().map(|m| m.tenant.as_str()).collect();
        for tenant in tenants {
            store.create_tenant(tenant, "manifest").await?;
        }
        let admission = Arc::new(Admission::new(config.limits.tenant_concurrency));
        let policy = Arc::new(TenantPolicy::new(
            admission.clone(),
            keys.clone(),
            store.clone(),
        ));
        for tenant in store.tenants().await? {
            policy.apply(&tenant);
        }

        let live = Arc::new(Live::new(Catalog::default(), store.subscriptions().clone()));
        let deployer =
            Deployer::new(config, store.clone(), runtime.clone(), live.clone()).map_err(io_err)?;
        let deployer = Arc::new(deployer);
        deployer.start(&manifests).await?;

        let metrics = Arc::new(Metrics::default());
        let persist = Arc::new(Persist::new(
            store.clone(),
            config.runtime.max_conflict_retries,
            metrics.clone(),
        ));
        Ok(Self {
            pipeline: Arc::new(Pipeline {
                live: live.clone(),
                admission,
                keys,
                store: store.clone(),
                runtime: runtime.clone(),
                persist: persist.clone(),
                metrics: metrics.clone(),
                body_timeout: Duration::from_millis(config.http.body_timeout_ms),
                framing: (&config.http).into(),
                idempotency_window: Duration::from_secs(config.http.idempotency_window_secs),
            }),
            dispatcher: Arc::new(Dispatcher {
                live: live.clone(),
                store: store.clone(),
                runtime: runtime.clone(),
                persist,
                metrics: metrics.clone(),
                queue: config.queue.clone(),
            }),
            admin: Arc::new(Admin {
                store: store.clone(),
                live: live.clone(),
                deployer: deployer.clone(),
                tenants: policy.clone(),
                runtime,
                metrics,
            }),
            follower: Follower::new(store.clone(), deployer, policy),
            live,
            store,
        })
    }
}

/// The key tenants' secrets are sealed with: the configured one; else, on
/// SQLite (one host), one kept in the data directory and made on first
/// use; else none, and secrets cannot be set.
fn secrets_key(config: &Config, backend: Option<Backend>) -> std::io::Result<Option<String>> {
    if config.secrets.key.is_some() || backend != Some(Backend::Sqlite) {
        return Ok(config.secrets.key.clone());
    }
    let path = config.data_dir.join("secrets-key");
    let make = || SecretKeys::generate().map_err(std::io::Error::other);
    crate::config::key_file(&path, |_| true, make).map(Some)
}

/// Puts right what a host that stopped abruptly left behind.
async fn recover(store: &Store) -> Result<(), StartError> {
    // A process owns its SQLite file: any lease left is from a host that
    // stopped, and its messages are due again now. Nodes sharing a
    // PostgreSQL database hold live leases; theirs expire on their own.
    let released = match store.backend() {
        Backend::Sqlite => store.release_leases().await?,
        Backend::Postgres => 0,
    };
    if released > 0 {
        tracing::info!(
            released,
            "messages left running by the previous host are due again"
        );
    }
    // Likewise every staged blob file is from an invocation that is gone,
    // and a crash may have left files and rows out of step.
    let repair = match store.repair_blobs().await {
        Ok(repair) => repair,
        // A bucket that is down must not keep a node from serving
        // documents and messages; the sweeper tries again.
        Err(e) if store.files().is_bucket() => {
            tracing::warn!(error = %e, "the blob bucket cannot be swept; blob requests fail until it answers");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if repair.staged_removed + repair.orphans_removed + repair.missing.len() > 0 {
        tracing::warn!(
            staged_removed = repair.staged_removed,
            orphans_removed = repair.orphans_removed,
            rows_without_files = repair.missing.len(),
            "blob storage repaired"
        );
    }
    Ok(())
}
