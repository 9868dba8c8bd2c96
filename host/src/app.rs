//! Everything a running host shares between requests, built once from the
//! configuration: routes, keys, the wasm runtime and the store.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;

use crate::config::{AuthConfig, Config, KeyConfig, QueueConfig};
use crate::delivery::schedule::Scheduled;
use crate::delivery::{Consumer, ConsumerKey};
use crate::dev;
use crate::manifest::{FunctionManifest, ManifestError};
use crate::pipeline::authenticate::{KeyError, Keyring};
use crate::pipeline::persist::Contention;
use crate::pipeline::receive::{RouteConflict, RouteTarget, Routes};
use crate::pipeline::validate::Schema;
use crate::runtime::{Function, LoadError, Runtime};
use crate::store::{Store, StoreError};

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
    /// A schema does not compile.
    #[error("schema of {route}: {message}")]
    Schema {
        /// The route.
        route: String,
        /// The compiler's reason.
        message: String,
    },
    /// Two routes collide.
    #[error(transparent)]
    Route(#[from] RouteConflict),
    /// A manifest asks for an export the component does not have.
    #[error("function {tenant}/{name}: {message}")]
    Exports {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
        /// What is missing.
        message: String,
    },
    /// The queue could not be prepared.
    #[error("preparing the queue: {0}")]
    Queue(#[from] crate::store::CommitError),
    /// The keys are unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The shared state of a running host.
pub struct App {
    /// The routing table.
    pub routes: Routes,
    /// Token verification keys.
    pub keyring: Keyring,
    /// The wasm runtime.
    pub runtime: Runtime,
    /// The database.
    pub store: Store,
    /// Time allowed for a request body.
    pub body_timeout: Duration,
    /// Re-runs allowed after a write conflict.
    pub max_conflict_retries: u32,
    /// Serialises re-runs on contended documents.
    pub contention: Contention,
    /// Functions that consume messages, by (tenant, function).
    pub consumers: HashMap<ConsumerKey, Consumer>,
    /// Every schedule of every function.
    pub schedules: Vec<Scheduled>,
    /// Delivery settings.
    pub queue: QueueConfig,
    /// The loaded functions' names, by tenant.
    pub functions: std::collections::BTreeMap<String, Vec<String>>,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Per-tenant request rates.
    pub quotas: crate::quota::Quotas,
    /// Keyrings of tenants with their own token settings.
    pub tenant_keyrings: crate::pipeline::authenticate::TenantKeyrings,
}

impl App {
    /// The names of `tenant`'s loaded functions.
    pub fn functions_of(&self, tenant: &str) -> Vec<String> {
        self.functions.get(tenant).cloned().unwrap_or_default()
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
        let store = Store::open(&config.database_url(), &config.database, &config.queue).await?;
        // This process owns the SQLite file: any lease left is from a host
        // that stopped, and its messages are due again now.
        let released = store.release_leases().await?;
        if released > 0 {
            tracing::info!(
                released,
                "messages left running by the previous host are due again"
            );
        }
        let cache_dir =
            (config.runtime.cache_dir.clone()).unwrap_or_else(|| data_dir.join("cache"));
        let runtime = Runtime::new(&config.runtime, Some(&cache_dir))?;

        let mut manifests = Vec::new();
        for dir in &config.functions_dirs {
            if dir.is_dir() {
                manifests.extend(FunctionManifest::load_dir(dir)?);
            } else {
                tracing::warn!(dir = %dir.display(), "functions directory not found");
            }
        }
        let mut functions = std::collections::BTreeMap::<String, Vec<String>>::new();
        for manifest in &manifests {
            functions
                .entry(manifest.tenant.clone())
                .or_default()
                .push(manifest.name.clone());
        }
        // Every tenant of a loaded manifest exists, for the admin API.
        for tenant in functions.keys() {
            store.create_tenant(tenant, "manifest").await?;
        }
        let quotas = crate::quota::Quotas::default();
        let tenant_keyrings = crate::pipeline::authenticate::TenantKeyrings::default();
        for tenant in store.tenants().await? {
            quotas.set(&tenant.name, tenant.rate);
            if let Some(auth) = &tenant.auth {
                // Checked when it was set; should the keys no longer load, the
                // tenant's tokens are refused rather than checked with the host's keys.
                let keyring = Keyring::new(auth).unwrap_or_else(|e| {
                    tracing::error!(tenant = %tenant.name, error = %e, "tenant keys unusable; refusing its tokens");
                    Keyring::empty(auth)
                });
                tenant_keyrings.set(&tenant.name, Some(keyring));
            }
        }
        let mut routes = Routes::default();
        let mut consumers = HashMap::new();
        let mut schedules = Vec::new();
        for manifest in &manifests {
            let function =
                add_function(&mut routes, &runtime, manifest, config.http.max_body_bytes)?;
            if manifest.messages.is_none() && manifest.schedules.is_empty() {
                continue;
            }
            if !function.handles_messages() {
                return Err(StartError::Exports {
                    tenant: manifest.tenant.clone(),
                    name: manifest.name.clone(),
                    message: "[messages] and [[schedules]] need a component that exports \
                              sluice:function/message-handler (#[sluice_sdk::on_message])"
                        .into(),
                });
            }
            if let Some(messages) = &manifest.messages {
                store
                    .subscriptions()
                    .subscribe(&function.tenant, &function.name, &messages.topics);
            }
            schedules.extend(manifest.schedules.iter().map(|schedule| Scheduled {
                tenant: function.tenant.clone(),
                function: function.name.clone(),
                schedule: schedule.clone(),
            }));
            let consumer =
                Consumer::new(function.clone(), manifest.messages.as_ref(), &config.queue);
            consumers.insert((function.tenant.clone(), function.name.clone()), consumer);
        }
        tracing::info!(
            functions = manifests.len(),
            routes = routes.len(),
            "functions loaded"
        );
        Ok(Self {
            routes,
            keyring,
            runtime,
            store,
            body_timeout: Duration::from_millis(config.http.body_timeout_ms),
            max_conflict_retries: config.runtime.max_conflict_retries,
            contention: Contention::default(),
            consumers,
            schedules,
            queue: config.queue.clone(),
            functions,
            metrics: crate::metrics::Metrics::default(),
            quotas,
            tenant_keyrings,
        })
    }
}

/// The configured keys, or the development key when none are configured.
pub fn effective_auth(config: &Config) -> std::io::Result<AuthConfig> {
    let mut auth = config.auth.clone();
    if auth.keys.is_empty() {
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

fn add_function(
    routes: &mut Routes,
    runtime: &Runtime,
    manifest: &FunctionManifest,
    default_body_limit: usize,
) -> Result<Function, StartError> {
    let started = std::time::Instant::now();
    let function = runtime.load(&manifest.tenant, &manifest.name, &manifest.component)?;
    tracing::info!(
        tenant = %manifest.tenant,
        function = %manifest.name,
        component = %manifest.component.display(),
        ms = started.elapsed().as_millis() as u64,
        "function loaded"
    );
    if !manifest.routes.is_empty() && !function.handles_requests() {
        return Err(StartError::Exports {
            tenant: manifest.tenant.clone(),
            name: manifest.name.clone(),
            message: "[[routes]] need a component that exports sluice:function/handler \
                      (#[sluice_sdk::handler])"
                .into(),
        });
    }
    for route in &manifest.routes {
        let m = &route.manifest;
        let path = format!("/{}{}", manifest.tenant, m.path);
        let name = format!("{} {path}", m.method);
        let schema = route
            .schema
            .as_ref()
            .map(Schema::compile)
            .transpose()
            .map_err(|message| StartError::Schema {
                route: name.clone(),
                message,
            })?;
        let method = Method::from_bytes(m.method.as_bytes()).map_err(|_| StartError::Schema {
            route: name.clone(),
            message: "invalid method".into(),
        })?;
        routes.add(
            method,
            &path,
            RouteTarget {
                function: function.clone(),
                name: name.into(),
                auth: m.auth.clone(),
                body: m.body_kind(),
                max_body_bytes: m.max_body_bytes.unwrap_or(default_body_limit),
                schema,
            },
        )?;
    }
    Ok(function)
}
