//! What is live: every function with its routes, consumer and schedules,
//! the routing table built from them, and how that changes.
//!
//! A catalog is immutable. A deploy, rollback or removal ([`deploy`]), or
//! another node's ([`sync`]), builds a new one and swaps it in ([`Live`])
//! in one step: a request routed before the swap keeps its function to the
//! end, the next request sees the new catalog. Nothing is ever
//! half-activated.

pub mod components;
pub mod consumer;
pub mod cors;
pub mod deploy;
pub mod openapi;
pub mod routes;
pub mod schema;
pub mod sync;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use http::Method;
use tokio::sync::watch;

pub use consumer::{Consumer, ConsumerKey, Scheduled};
pub use cors::Cors;
pub use deploy::{DeployError, Deployer, Upload};
pub use routes::{Matched, NoRoute, RouteConflict, RouteDoc, RouteTarget, Routes};
pub use schema::Schema;

use crate::config::Config;
use crate::config::manifest::{FunctionManifest, RouteCors};
use crate::runtime::Function;
use crate::store::Subscriptions;

/// Why a loaded component cannot be served as its manifest says.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// A schema does not compile.
    #[error("the schema of {route} does not compile: {message}")]
    Schema {
        /// The route.
        route: String,
        /// The compiler's reason.
        message: String,
    },
    /// An example in the manifest does not match its schema.
    #[error("route {route}: {message}")]
    Example {
        /// The route.
        route: String,
        /// Which example, and where it fails.
        message: String,
    },
    /// The manifest asks for an export the component does not have.
    #[error("function {tenant}/{name}: {message}")]
    Exports {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
        /// What is missing.
        message: String,
    },
    /// A route collides with another one.
    #[error(transparent)]
    Route(#[from] RouteConflict),
    /// The manifest asks for more than the host's ceilings allow.
    #[error("function {tenant}/{name}: {message}")]
    Limits {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
        /// Which limit, and the ceiling.
        message: String,
    },
}

/// Where a function comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A manifest in a functions directory, loaded at start-up.
    Directory,
    /// The admin API; it has versions.
    Deployed,
}

/// One function ready to serve: its component, routes, consumer and schedules.
pub struct Unit {
    /// The compiled function.
    pub function: Function,
    /// Where it comes from.
    pub origin: Origin,
    /// `(method, full path, target)` for each route.
    pub routes: Vec<(Method, String, Arc<RouteTarget>)>,
    /// Its consumer, when it has `[messages]` or schedules.
    pub consumer: Option<Consumer>,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// Its schedules.
    pub schedules: Vec<Scheduled>,
}

impl Unit {
    /// Checks `function` against `manifest` (exports, schemas, methods) and
    /// prepares its route targets and consumer.
    pub fn prepare(
        mut function: Function,
        origin: Origin,
        manifest: &FunctionManifest,
        config: &Config,
    ) -> Result<Self, UnitError> {
        function.limits =
            config
                .limits
                .resolve(&manifest.limits)
                .map_err(|message| UnitError::Limits {
                    tenant: manifest.tenant.clone(),
                    name: manifest.name.clone(),
                    message,
                })?;
        let (default_body_limit, queue) = (config.http.max_body_bytes, &config.queue);
        let exports = |message: &str| UnitError::Exports {
            tenant: manifest.tenant.clone(),
            name: manifest.name.clone(),
            message: message.into(),
        };
        if !manifest.routes.is_empty() && !function.handles_requests() {
            return Err(exports(
                "[[routes]] need a component that exports sluice:function/handler \
                 (#[sluice_sdk::handler])",
            ));
        }
        let wants_messages = manifest.messages.is_some() || !manifest.schedules.is_empty();
        if wants_messages && !function.handles_messages() {
            return Err(exports(
                "[messages] and [[schedules]] need a component that exports \
                 sluice:function/message-handler (#[sluice_sdk::on_message])",
            ));
        }
        let function_cors = manifest.cors.as_ref().map(|c| Arc::new(Cors::compile(c)));
        let mut routes = Vec::with_capacity(manifest.routes.len());
        for route in &manifest.routes {
            let m = &route.manifest;
            let path = format!("/{}{}", manifest.tenant, m.path);
            let name = format!("{} {path}", m.method);
            let schema = route
                .schema
                .as_ref()
                .map(|schema| Schema::compile(schema, m.formats))
                .transpose()
                .map_err(|message| UnitError::Schema {
                    route: name.clone(),
                    message,
                })?;
            // Examples that break their schemas would teach clients wrong.
            let check =
                |example: &Option<serde_json::Value>, schema: Option<&Schema>, what: &str| {
                    let (Some(example), Some(schema)) = (example, schema) else {
                        return Ok(());
                    };
                    match schema.errors(example).first() {
                        None => Ok(()),
                        Some(e) => Err(UnitError::Example {
                            route: name.clone(),
                            message: format!(
                                "{what} does not match its schema at {:?}: {}",
                                e.pointer, e.message
                            ),
                        }),
                    }
                };
            check(&route.example, schema.as_ref(), "the example")?;
            let response_schema = (route.response_schema.as_ref())
                .map(|s| Schema::compile(s, m.formats))
                .transpose()
                .map_err(|message| UnitError::Schema {
                    route: name.clone(),
                    message: format!("response_schema: {message}"),
                })?;
            check(
                &route.response_example,
                response_schema.as_ref(),
                "the response example",
            )?;
            let method =
                Method::from_bytes(m.method.as_bytes()).map_err(|_| UnitError::Schema {
                    route: name.clone(),
                    message: "invalid method".into(),
                })?;
            let target = RouteTarget {
                function: function.clone(),
                name: name.into(),
                route: m.route_name().into(),
                pattern: m.path.as_str().into(),
                auth: m.auth.clone(),
                body: m.body_kind(),
                max_body_bytes: m.max_body_bytes.unwrap_or(default_body_limit),
                accept: m.accept.clone(),
                schema,
                cors: match &m.cors {
                    Some(RouteCors::Enabled(_)) => None,
                    Some(RouteCors::Rules(rules)) => Some(Arc::new(Cors::compile(rules))),
                    None => function_cors.clone(),
                },
                idempotent: m.idempotency,
                doc: RouteDoc {
                    summary: m.summary.clone(),
                    description: m.description.clone(),
                    status: m.status,
                    schema: route.schema.clone().map(Arc::new),
                    response_schema: route.response_schema.clone().map(Arc::new),
                    example: route.example.clone().map(Arc::new),
                    response_example: route.response_example.clone().map(Arc::new),
                },
            };
            routes.push((method, path, Arc::new(target)));
        }
        let schedules = manifest
            .schedules
            .iter()
            .map(|schedule| Scheduled {
                tenant: function.tenant.clone(),
                function: function.name.clone(),
                schedule: schedule.clone(),
            })
            .collect();
        let consumer = wants_messages
            .then(|| Consumer::new(function.clone(), manifest.messages.as_ref(), queue));
        let topics = manifest
            .messages
            .as_ref()
            .map(|m| m.topics.clone())
            .unwrap_or_default();
        Ok(Self {
            function,
            origin,
            routes,
            consumer,
            topics,
            schedules,
        })
    }

    /// `(tenant, name)`.
    pub fn key(&self) -> ConsumerKey {
        (self.function.tenant.clone(), self.function.name.clone())
    }
}

/// The live catalog, swapped whole; requests, deliveries, schedules and the
/// admin API read it, deploys and the cluster follower change it.
pub struct Live {
    catalog: ArcSwap<Catalog>,
    /// Bumped after every swap, for the loops that follow the catalog.
    changes: watch::Sender<u64>,
    /// The committer fans messages out by these: kept in step with the catalog.
    subscriptions: Arc<Subscriptions>,
}

impl Live {
    /// Makes `catalog` live, its subscriptions in force.
    pub fn new(catalog: Catalog, subscriptions: Arc<Subscriptions>) -> Self {
        subscriptions.replace_all(catalog.subscriptions());
        Self {
            catalog: ArcSwap::from_pointee(catalog),
            changes: watch::Sender::new(0),
            subscriptions,
        }
    }

    /// The live catalog, for a quick look.
    pub fn load(&self) -> Guard<Arc<Catalog>> {
        self.catalog.load()
    }

    /// The live catalog, to keep.
    pub fn load_full(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// Makes `catalog` the live one: new requests and deliveries use it,
    /// and its subscriptions take effect.
    pub fn activate(&self, catalog: Catalog) {
        self.subscriptions.replace_all(catalog.subscriptions());
        self.catalog.store(Arc::new(catalog));
        self.changes.send_modify(|n| *n += 1);
    }

    /// Changes each time another catalog goes live.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The names of `tenant`'s live functions.
    pub fn functions_of(&self, tenant: &str) -> Vec<String> {
        let catalog = self.catalog.load();
        catalog
            .units_of(tenant)
            .map(|u| u.function.name.to_string())
            .collect()
    }
}

/// Everything live, indexed for the request path and the delivery engine.
#[derive(Default)]
pub struct Catalog {
    units: BTreeMap<ConsumerKey, Arc<Unit>>,
    /// The routing table.
    pub routes: Routes,
    /// Functions that consume messages, by (tenant, function).
    pub consumers: HashMap<ConsumerKey, Consumer>,
    /// Every schedule of every function.
    pub schedules: Vec<Scheduled>,
}

impl Catalog {
    /// Indexes `units`; fails if two routes collide.
    pub fn build(units: impl IntoIterator<Item = Arc<Unit>>) -> Result<Self, RouteConflict> {
        let mut catalog = Self::default();
        for unit in units {
            for (method, path, target) in &unit.routes {
                catalog.routes.add(method.clone(), path, target.clone())?;
            }
            if let Some(consumer) = &unit.consumer {
                catalog.consumers.insert(unit.key(), consumer.clone());
            }
            catalog.schedules.extend(unit.schedules.iter().cloned());
            catalog.units.insert(unit.key(), unit);
        }
        Ok(catalog)
    }

    /// Builds the catalog of a starting host: the functions directories'
    /// units (which must all fit) and the deployed ones, each deployed one
    /// left out, with an error, if its routes collide.
    pub fn starting(
        directory: Vec<Arc<Unit>>,
        deployed: Vec<Arc<Unit>>,
    ) -> Result<Self, RouteConflict> {
        let all = directory.iter().chain(&deployed).cloned();
        if let Ok(catalog) = Self::build(all) {
            return Ok(catalog);
        }
        let mut catalog = Self::build(directory)?;
        for unit in deployed {
            match catalog.with(unit.clone()) {
                Ok(next) => catalog = next,
                Err(e) => {
                    tracing::error!(tenant = %unit.function.tenant, function = %unit.function.name,
                    error = %e, "deployed function collides with a functions directory; it is not served")
                }
            }
        }
        Ok(catalog)
    }

    /// This catalog with `unit` added, or replacing the function of the same name.
    pub fn with(&self, unit: Arc<Unit>) -> Result<Self, RouteConflict> {
        let key = unit.key();
        let others = self.units.iter().filter(|(k, _)| **k != key);
        Self::build(others.map(|(_, u)| u.clone()).chain([unit]))
    }

    /// This catalog without `tenant`'s function `name`.
    pub fn without(&self, tenant: &str, name: &str) -> Result<Self, RouteConflict> {
        let others = self
            .units
            .iter()
            .filter(|(k, _)| !(&*k.0 == tenant && &*k.1 == name));
        Self::build(others.map(|(_, u)| u.clone()))
    }

    /// The live function `name` of `tenant`.
    pub fn unit(&self, tenant: &str, name: &str) -> Option<&Arc<Unit>> {
        self.units.get(&(Arc::from(tenant), Arc::from(name)))
    }

    /// Every live function, by tenant then name.
    pub fn units(&self) -> impl Iterator<Item = &Arc<Unit>> {
        self.units.values()
    }

    /// The live functions of `tenant`.
    pub fn units_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Arc<Unit>> + 'a {
        self.units
            .values()
            .filter(move |u| &*u.function.tenant == tenant)
    }

    /// `(tenant, function, topics)` of every subscriber.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, &[String])> {
        self.units
            .values()
            .map(|u| (&u.function.tenant, &u.function.name, u.topics.as_slice()))
    }
}
