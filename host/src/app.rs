//! Everything a running host shares between requests: the live catalog of
//! functions (swapped whole by deploys), keys, the wasm runtime and the store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::catalog::{Catalog, Origin, Unit, UnitError};
use crate::config::{AuthConfig, Config, KeyConfig, QueueConfig};
use crate::deploy::{self, Deployer};
use crate::dev;
use crate::manifest::{FunctionManifest, ManifestError};
use crate::pipeline::authenticate::jwks::JwksClient;
use crate::pipeline::authenticate::{KeyError, Keyring};
use crate::pipeline::persist::Contention;
use crate::pipeline::receive::RouteConflict;
use crate::runtime::{LoadError, Runtime};
use crate::store::{Backend, Store, StoreError};

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
    /// A component could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A component does not fit its manifest.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Two routes collide.
    #[error(transparent)]
    Route(#[from] RouteConflict),
    /// The queue could not be prepared.
    #[error("preparing the queue: {0}")]
    Queue(#[from] crate::store::CommitError),
    /// The keys are unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTPS client for JWKS could not be set up.
    #[error("{0}")]
    Tls(String),
}

/// The shared state of a running host.
pub struct App {
    /// What is live: functions, routes, consumers, schedules. Swapped whole
    /// by deploys (see [`crate::catalog`]).
    pub catalog: ArcSwap<Catalog>,
    /// Bumped after every swap of `catalog`, for the loops that follow it.
    pub changes: watch::Sender<u64>,
    /// Deploys: component storage and the deploy lock.
    pub deployer: Arc<Deployer>,
    /// Token verification keys.
    pub keyring: Keyring,
    /// The wasm runtime.
    pub runtime: Arc<Runtime>,
    /// The database.
    pub store: Store,
    /// Time allowed for a request body.
    pub body_timeout: Duration,
    /// Re-runs allowed after a write conflict.
    pub max_conflict_retries: u32,
    /// Serialises re-runs on contended documents.
    pub contention: Contention,
    /// Delivery settings.
    pub queue: QueueConfig,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Per-tenant request rates.
    pub quotas: crate::quota::Quotas,
    /// Requests running, per function and per tenant.
    pub running: crate::quota::Concurrency,
    /// `[limits] tenant_concurrency`.
    pub tenant_concurrency: usize,
    /// Keyrings of tenants with their own token settings.
    pub tenant_keyrings: crate::pipeline::authenticate::TenantKeyrings,
    /// Fetches JWKS documents for keyrings that have a `jwks_url`.
    pub jwks_client: JwksClient,
}

impl App {
    /// The names of `tenant`'s live functions.
    pub fn functions_of(&self, tenant: &str) -> Vec<String> {
        let catalog = self.catalog.load();
        catalog
            .units_of(tenant)
            .map(|u| u.function.name.to_string())
            .collect()
    }

    /// Makes `catalog` the live one: new requests and deliveries use it,
    /// and its subscriptions take effect.
    pub fn activate(&self, catalog: Catalog) {
        self.store
            .subscriptions()
            .replace_all(catalog.subscriptions());
        self.catalog.store(Arc::new(catalog));
        self.changes.send_modify(|n| *n += 1);
    }
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
        let keyring = Keyring::new(&effective_auth(config).map_err(io_err)?)?;
        let store = Store::open(
            &config.database_url(),
            &config.blobs_dir(),
            &config.database,
            &config.queue,
        )
        .await?;
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
        let repair = store.repair_blobs().await?;
        if repair.staged_removed + repair.orphans_removed + repair.missing.len() > 0 {
            tracing::warn!(
                staged_removed = repair.staged_removed,
                orphans_removed = repair.orphans_removed,
                rows_without_files = repair.missing.len(),
                "blob storage repaired"
            );
        }
        let cache_dir =
            (config.runtime.cache_dir.clone()).unwrap_or_else(|| data_dir.join("cache"));
        let runtime = Arc::new(Runtime::new(
            &config.runtime,
            &config.limits,
            &config.cache,
            Some(&cache_dir),
        )?);
        let deployer = Arc::new(Deployer::new(config).map_err(io_err)?);

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
        let quotas = crate::quota::Quotas::default();
        let tenant_keyrings = crate::pipeline::authenticate::TenantKeyrings::default();
        for tenant in store.tenants().await? {
            apply_tenant(&quotas, store.storage_quotas(), &tenant_keyrings, &tenant);
        }
        let mut directory = Vec::with_capacity(manifests.len());
        for manifest in &manifests {
            let started = std::time::Instant::now();
            let function = runtime.load(&manifest.tenant, &manifest.name, &manifest.component)?;
            tracing::info!(
                tenant = %manifest.tenant,
                function = %manifest.name,
                component = %manifest.component.display(),
                ms = started.elapsed().as_millis() as u64,
                "function loaded"
            );
            let unit = Unit::prepare(function, Origin::Directory, manifest, config)?;
            directory.push(Arc::new(unit));
        }
        let started = std::time::Instant::now();
        let live = store.live_versions().await?;
        deployer.fetch_all(&store, &live).await;
        let deployed = deployer.restore(&runtime, &live);
        if !live.is_empty() {
            tracing::info!(
                functions = deployed.len(),
                ms = started.elapsed().as_millis() as u64,
                "deployed functions loaded"
            );
        }
        let catalog = deploy::initial_catalog(directory, deployed)?;
        store.subscriptions().replace_all(catalog.subscriptions());
        tracing::info!(
            functions = catalog.units().count(),
            routes = catalog.routes.len(),
            "functions loaded"
        );
        Ok(Self {
            catalog: ArcSwap::from_pointee(catalog),
            changes: watch::Sender::new(0),
            deployer,
            keyring,
            runtime,
            store,
            body_timeout: Duration::from_millis(config.http.body_timeout_ms),
            max_conflict_retries: config.runtime.max_conflict_retries,
            contention: Contention::default(),
            queue: config.queue.clone(),
            metrics: crate::metrics::Metrics::default(),
            quotas,
            running: crate::quota::Concurrency::default(),
            tenant_concurrency: config.limits.tenant_concurrency,
            tenant_keyrings,
            jwks_client: JwksClient::new().map_err(StartError::Tls)?,
        })
    }
}

/// Puts `tenant`'s settings (rate, storage quota, token keys) in force.
pub fn apply_tenant(
    quotas: &crate::quota::Quotas,
    storage_quotas: &crate::store::StorageQuotas,
    keyrings: &crate::pipeline::authenticate::TenantKeyrings,
    tenant: &crate::store::Tenant,
) {
    quotas.set(&tenant.name, tenant.rate);
    storage_quotas.set(&tenant.name, tenant.max_stored_bytes);
    if let (Some(auth), Some(current)) = (&tenant.auth, keyrings.get(&tenant.name))
        && current.built_from(auth)
    {
        return;
    }
    let keyring = tenant.auth.as_ref().map(|auth| {
        // Checked when it was set; should the keys no longer load, the
        // tenant's tokens are refused rather than checked with the host's keys.
        Keyring::new(auth).unwrap_or_else(|e| {
            tracing::error!(tenant = %tenant.name, error = %e, "tenant keys unusable; refusing its tokens");
            Keyring::empty(auth)
        })
    });
    keyrings.set(&tenant.name, keyring);
}

/// The configured keys, or the development key when none are configured.
pub fn effective_auth(config: &Config) -> std::io::Result<AuthConfig> {
    let mut auth = config.auth.clone();
    if auth.keys.is_empty() && auth.jwks_url.is_none() {
        let secret = dev::dev_secret(&config.data_dir)?;
        tracing::warn!(
            key = %dev::dev_key_path(&config.data_dir).display(),
            "no [[auth.keys]] configured: accepting tokens signed with the DEVELOPMENT key \
             (mint one with `sluice token`); configure real keys before exposing this host"
        );
        auth.keys.push(KeyConfig {
            kid: Some(dev::DEV_KID.to_owned()),
            algorithm: "HS256".to_owned(),
            secret: Some(secret),
            public_key_file: None,
            public_key_pem: None,
        });
    }
    Ok(auth)
}
