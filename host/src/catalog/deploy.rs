//! Deploys, rollbacks and removals of functions on a running host, and the
//! functions a host starts with.
//!
//! A deploy is checked completely before anything changes: the upload must
//! be a component that compiles, imports only what Sluice offers, exports
//! what its manifest asks for, has schemas that compile and routes that do
//! not collide. Then its bytes are stored (content-addressed, through a
//! cap-std directory handle), its compilation cached, its metadata recorded
//! as a new version, and a new [`Catalog`] made live. Deploys of one host
//! run one at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::components::Components;
use super::{Catalog, Live, Origin, RouteConflict, Unit, UnitError};
use crate::config::Config;
use crate::config::manifest::{FunctionManifest, ManifestError, Source};
use crate::runtime::{Exports, LoadError, Runtime, Source as CodeSource, sha256_hex};
use crate::store::{NewVersion, Store, StoreError, StoredVersion};

/// Why a deploy, rollback or removal was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The tenant does not exist.
    #[error("no tenant {0:?}")]
    NoTenant(String),
    /// The function (or version) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component is refused.
    #[error(transparent)]
    Component(#[from] LoadError),
    /// The component does not fit its manifest.
    #[error(transparent)]
    Unit(UnitError),
    /// A route collides with another function's.
    #[error(transparent)]
    Route(#[from] RouteConflict),
    /// The manifest asks for limits above the host's ceilings.
    #[error("{0}")]
    Limits(String),
    /// The function comes from a functions directory.
    #[error(
        "function {tenant}/{name} is loaded from a functions directory; change its manifest there and restart, or deploy under another name"
    )]
    FromDirectory {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
    },
    /// The tenant is at its function quota.
    #[error("tenant {tenant} has {max} function(s), its quota; remove one or raise max_functions")]
    Quota {
        /// The tenant.
        tenant: String,
        /// Its quota.
        max: u32,
    },
    /// A stored component could not be read or written.
    #[error("component storage: {0}")]
    Storage(#[from] std::io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<UnitError> for DeployError {
    fn from(e: UnitError) -> Self {
        match e {
            UnitError::Route(conflict) => DeployError::Route(conflict),
            UnitError::Limits { .. } => DeployError::Limits(e.to_string()),
            other => DeployError::Unit(other),
        }
    }
}

/// What a deploy uploads: the manifest, its schemas and the component.
#[derive(Debug, Default)]
pub struct Upload {
    /// `sluice.toml`'s text.
    pub manifest: String,
    /// Schema files by the path the manifest names them with.
    pub schemas: HashMap<String, Vec<u8>>,
    /// The component's bytes.
    pub component: bytes::Bytes,
}

/// Why the functions a host starts with could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A functions directory's component could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A functions directory's component does not fit its manifest.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Two functions directories' routes collide.
    #[error(transparent)]
    Route(#[from] RouteConflict),
    /// The deployed versions could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deploys on one host: where its components live, what it loads them
/// with, the catalog they go live in, and the lock that makes deploys one
/// at a time.
pub struct Deployer {
    components: Arc<Components>,
    pub(super) lock: tokio::sync::Mutex<()>,
    /// What units are prepared with: body limit, queue defaults, limits.
    config: Config,
    pub(super) store: Store,
    runtime: Arc<Runtime>,
    pub(super) live: Arc<Live>,
    /// Largest upload the admin API reads.
    pub max_upload_bytes: usize,
}

/// A version to turn into a [`Unit`].
struct Spec<'a> {
    tenant: &'a str,
    name: &'a str,
    version: u32,
    manifest: &'a str,
    schemas: HashMap<String, Vec<u8>>,
    sha: &'a str,
}

impl<'a> Spec<'a> {
    fn of(v: &'a StoredVersion) -> Self {
        Spec {
            tenant: &v.tenant,
            name: &v.name,
            version: v.version,
            manifest: &v.manifest,
            schemas: v
                .schemas
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string().into_bytes()))
                .collect(),
            sha: &v.component,
        }
    }

    fn manifest(&self) -> Result<FunctionManifest, ManifestError> {
        FunctionManifest::parse(
            self.manifest,
            Source::Upload {
                tenant: self.tenant,
                name: self.name,
                schemas: &self.schemas,
            },
        )
    }
}

/// A blocking task's failure, as a deploy error.
fn joined(e: tokio::task::JoinError) -> DeployError {
    DeployError::Storage(std::io::Error::other(e.to_string()))
}

impl Deployer {
    /// Components under the data directory's `components/`; functions go
    /// live in `live`.
    pub fn new(
        config: &Config,
        store: Store,
        runtime: Arc<Runtime>,
        live: Arc<Live>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            components: Arc::new(Components::open(&config.data_dir.join("components"))?),
            lock: tokio::sync::Mutex::new(()),
            config: config.clone(),
            store,
            runtime,
            live,
            max_upload_bytes: config.admin.max_upload_bytes,
        })
    }

    /// Makes the functions of `manifests` (from the functions directories)
    /// and the live version of every deployed function live: what a host
    /// starts with. A directory's function that does not load stops the
    /// start; a deployed one is logged and left out.
    pub async fn start(&self, manifests: &[FunctionManifest]) -> Result<(), StartError> {
        let mut directory = Vec::with_capacity(manifests.len());
        for manifest in manifests {
            let started = std::time::Instant::now();
            let function =
                (self.runtime).load(&manifest.tenant, &manifest.name, &manifest.component)?;
            tracing::info!(
                tenant = %manifest.tenant,
                function = %manifest.name,
                component = %manifest.component.display(),
                ms = started.elapsed().as_millis() as u64,
                "function loaded"
            );
            let unit = Unit::prepare(function, Origin::Directory, manifest, &self.config)?;
            self.check_routes(&unit).await?;
            directory.push(Arc::new(unit));
        }
        let started = std::time::Instant::now();
        let live = self.store.live_versions().await?;
        self.fetch_all(&live).await;
        let deployed = self.restore(&live);
        if !live.is_empty() {
            tracing::info!(
                functions = deployed.len(),
                ms = started.elapsed().as_millis() as u64,
                "deployed functions loaded"
            );
        }
        let catalog = Catalog::starting(directory, deployed)?;
        tracing::info!(
            functions = catalog.units().count(),
            routes = catalog.routes.len(),
            "functions loaded"
        );
        self.live.activate(catalog);
        Ok(())
    }

    /// One version, ready to serve. With its `bytes` (a deploy, a rollback)
    /// the component is compiled (or taken from the cache), linked and
    /// checked now; without them (a restart, another node's deploy) it was
    /// checked when it was deployed, and its code is loaded on its first
    /// invocation.
    fn unit(&self, spec: &Spec<'_>, bytes: Option<&[u8]>) -> Result<Unit, DeployError> {
        let manifest = spec.manifest()?;
        let source = self.source(spec);
        let version = Some(spec.version);
        let function = match bytes {
            Some(bytes) => {
                let component = self.runtime.compile(&source.shown, bytes, spec.sha)?;
                let shown = source.shown.clone();
                (self.runtime).link(
                    spec.tenant,
                    spec.name,
                    version,
                    &shown,
                    &component,
                    Some(source),
                )?
            }
            None if !self.components.has(spec.sha) => {
                return Err(DeployError::NotFound(format!(
                    "component {} is not on this node",
                    spec.sha
                )));
            }
            None => {
                let exports = Exports {
                    requests: !manifest.routes.is_empty(),
                    messages: manifest.messages.is_some() || !manifest.schedules.is_empty(),
                };
                (self.runtime).lazy(spec.tenant, spec.name, version, exports, source)
            }
        };
        Ok(Unit::prepare(
            function,
            Origin::Deployed,
            &manifest,
            &self.config,
        )?)
    }

    /// Where `spec`'s code is loaded from again, after it was unloaded.
    fn source(&self, spec: &Spec<'_>) -> CodeSource {
        let (components, sha) = (self.components.clone(), spec.sha.to_owned());
        CodeSource {
            sha: spec.sha.to_owned(),
            shown: format!("{}/{} v{}", spec.tenant, spec.name, spec.version),
            read: Arc::new(move || components.read(&sha)),
        }
    }

    /// Prepares the live version of every deployed function, on all cores;
    /// blocks the caller (start-up, or a blocking task). Their code, checked
    /// when they were deployed, is loaded on each one's first invocation.
    /// A version whose manifest or component is unusable is logged and left
    /// out: one broken function does not keep the others down.
    pub(super) fn restore(&self, stored: &[StoredVersion]) -> Vec<Arc<Unit>> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let chunk = stored.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = stored
                .chunks(chunk)
                .map(|versions| {
                    scope.spawn(move || {
                        versions
                            .iter()
                            .filter_map(|v| match self.unit(&Spec::of(v), None) {
                                Ok(unit) => Some(Arc::new(unit)),
                                Err(e) => {
                                    tracing::error!(tenant = %v.tenant, function = %v.name,
                                        version = v.version, error = %e,
                                        "deployed function could not be loaded; it is not served");
                                    None
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        })
    }

    /// Makes sure component `sha` is in this node's component directory,
    /// fetching it from the database (where every deploy stores it) when a
    /// deploy on another node put it there.
    async fn fetch(&self, sha: &str) -> Result<(), DeployError> {
        if self.components.has(sha) {
            return Ok(());
        }
        let bytes = self.store.component(sha).await?.ok_or_else(|| {
            DeployError::NotFound(format!("component {sha} is not in the database"))
        })?;
        if sha256_hex(&bytes) != sha {
            return Err(DeployError::Storage(std::io::Error::other(format!(
                "component {sha} in the database does not match its hash"
            ))));
        }
        let components = self.components.clone();
        let sha = sha.to_owned();
        tokio::task::spawn_blocking(move || components.put(&sha, &bytes))
            .await
            .map_err(joined)??;
        Ok(())
    }

    /// [`Deployer::fetch`] for each of `versions`; one that fails is logged,
    /// and [`Deployer::restore`] leaves that version out.
    pub(super) async fn fetch_all(&self, versions: &[StoredVersion]) {
        for version in versions {
            if let Err(e) = self.fetch(&version.component).await {
                tracing::error!(tenant = %version.tenant, function = %version.name, error = %e,
                    "component of a deployed function unavailable");
            }
        }
    }

    /// Loads stored version `v`: its component must be here (see [`Deployer::fetch`]).
    fn load_stored(&self, v: &StoredVersion) -> Result<Unit, DeployError> {
        let bytes = self.components.read(&v.component)?;
        self.unit(&Spec::of(v), Some(&bytes))
    }

    /// Checks, stores and activates `upload` as the next version of
    /// `tenant`'s `name`; returns the new version's number.
    pub async fn deploy(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        upload: Upload,
        operator: &str,
    ) -> Result<u32, DeployError> {
        let _one_at_a_time = self.lock.lock().await;
        let record = (self.store.tenant(tenant).await?)
            .ok_or_else(|| DeployError::NoTenant(tenant.to_owned()))?;
        let current = self.live.load_full();
        if deployed_unit(&current, tenant, name)?.is_none()
            && let Some(max) = record.max_functions
            && current.units_of(tenant).count() >= max as usize
        {
            return Err(DeployError::Quota {
                tenant: tenant.to_owned(),
                max,
            });
        }
        let version = self.store.next_version(tenant, name).await?;
        let sha = sha256_hex(&upload.component);
        let (unit, manifest, schemas, component) = {
            let deployer = self.clone();
            let (tenant, name, sha) = (tenant.to_owned(), name.to_owned(), sha.clone());
            let Upload {
                manifest,
                schemas,
                component,
            } = upload;
            // Compiling takes a core for a while: off the async workers.
            tokio::task::spawn_blocking(move || {
                let spec = Spec {
                    tenant: &tenant,
                    name: &name,
                    version,
                    manifest: &manifest,
                    schemas,
                    sha: &sha,
                };
                let unit = deployer.unit(&spec, Some(&component))?;
                deployer.components.put(&sha, &component)?;
                let schemas: BTreeMap<String, serde_json::Value> = spec
                    .schemas
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), serde_json::from_slice(v).ok()?)))
                    .collect();
                Ok::<_, DeployError>((unit, manifest, schemas, component))
            })
            .await
            .map_err(joined)??
        };
        self.check_routes(&unit).await?;
        let unit = Arc::new(unit);
        let next = current.with(unit.clone())?;
        let recorded = self
            .store
            .record_version(NewVersion {
                tenant,
                name,
                manifest: &manifest,
                schemas: &schemas,
                component: &sha,
                bytes: &component,
                deployed_by: operator,
            })
            .await?;
        // Deploys of one host are serialized; another node sharing the database
        // may have recorded a version in between. Its change notice makes every
        // node (this one too) reload the live version from the database.
        if recorded != version {
            tracing::warn!(
                tenant,
                function = name,
                version,
                recorded,
                "another node deployed this function meanwhile; reloading from the database"
            );
        }
        self.live.activate(next);
        tracing::info!(
            tenant,
            function = name,
            version,
            operator,
            routes = unit.routes.len(),
            "function deployed"
        );
        Ok(version)
    }

    /// Compares the route names the component serves (its
    /// `handler.routes()`) with its manifest's, both ways. A component that
    /// dispatches itself, or was built against 0.1.0, names none.
    async fn check_routes(&self, unit: &Unit) -> Result<(), UnitError> {
        let function = &unit.function;
        if !function.handles_requests() {
            return Ok(());
        }
        let failed = |message: String| UnitError::Exports {
            tenant: function.tenant.to_string(),
            name: function.name.to_string(),
            message,
        };
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(function.limits.timeout_ms);
        let served = (self.runtime.routes(function, &self.store, deadline).await)
            .map_err(|e| failed(format!("asking the component for its routes failed: {e}")))?;
        let Some(served) = served else {
            return Ok(());
        };
        let manifest: Vec<(&str, &str)> = (unit.routes.iter())
            .map(|(_, _, target)| (&*target.route, &*target.name))
            .collect();
        if let Some((route, shown)) = manifest
            .iter()
            .find(|(r, _)| !served.iter().any(|s| s == r))
        {
            return Err(failed(format!(
                "route {route:?} ({shown}) has no function in the component, which serves {}",
                listed(served.iter().map(String::as_str))
            )));
        }
        if let Some(extra) = served
            .iter()
            .find(|s| !manifest.iter().any(|(r, _)| r == s))
        {
            return Err(failed(format!(
                "the component has a function for route {extra:?}, which the manifest does not \
                 name; its routes are {}",
                listed(manifest.iter().map(|(r, _)| *r))
            )));
        }
        Ok(())
    }

    /// Makes `version` (by default the one before the live one) live again.
    pub async fn rollback(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        version: Option<u32>,
        operator: &str,
    ) -> Result<u32, DeployError> {
        let _one_at_a_time = self.lock.lock().await;
        let current = self.live.load_full();
        let live = deployed_unit(&current, tenant, name)?.and_then(|u| u.function.version);
        let versions = self.store.versions(tenant, name).await?;
        if versions.is_empty() {
            return Err(DeployError::NotFound(format!(
                "no deployed function {tenant}/{name}"
            )));
        }
        let target = match version {
            Some(v) => v,
            None => versions
                .iter()
                .map(|v| v.version)
                .filter(|v| live.is_none_or(|live| *v < live))
                .max()
                .ok_or_else(|| {
                    DeployError::NotFound(format!(
                        "{tenant}/{name} has no version before v{}",
                        live.unwrap_or_default()
                    ))
                })?,
        };
        let stored = (self.store.stored_version(tenant, name, target).await?).ok_or_else(|| {
            DeployError::NotFound(format!("{tenant}/{name} has no version {target}"))
        })?;
        self.fetch(&stored.component).await?;
        let deployer = self.clone();
        let unit = tokio::task::spawn_blocking(move || deployer.load_stored(&stored))
            .await
            .map_err(joined)??;
        let next = current.with(Arc::new(unit))?;
        (self.store)
            .activate_version(tenant, name, target, operator)
            .await?;
        self.live.activate(next);
        tracing::info!(
            tenant,
            function = name,
            version = target,
            operator,
            "function rolled back"
        );
        Ok(target)
    }

    /// Takes `tenant`'s deployed `name` down and deletes its versions.
    pub async fn remove(&self, tenant: &str, name: &str) -> Result<(), DeployError> {
        let _one_at_a_time = self.lock.lock().await;
        let current = self.live.load_full();
        deployed_unit(&current, tenant, name)?;
        if self.store.versions(tenant, name).await?.is_empty() {
            return Err(DeployError::NotFound(format!(
                "no deployed function {tenant}/{name}"
            )));
        }
        let next = current.without(tenant, name)?;
        let unused = self.store.delete_function(tenant, name).await?;
        self.live.activate(next);
        for sha in unused {
            self.components.remove(&sha);
        }
        tracing::info!(tenant, function = name, "function removed");
        Ok(())
    }
}

/// `tenant`'s live `name`, if any; refuses a function from a functions
/// directory, which deploys, rollbacks and removals must not touch.
fn deployed_unit<'c>(
    catalog: &'c Catalog,
    tenant: &str,
    name: &str,
) -> Result<Option<&'c Arc<Unit>>, DeployError> {
    match catalog.unit(tenant, name) {
        Some(unit) if unit.origin == Origin::Directory => Err(DeployError::FromDirectory {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        }),
        found => Ok(found),
    }
}

/// `"a", "b"`, or `none`.
fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("{n:?}")).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
