//! What is live: every function with its routes, consumer and schedules,
//! and the routing table built from them.
//!
//! A catalog is immutable. A deploy, rollback or removal builds a new one
//! and swaps it in ([`App::catalog`](crate::App)) in one step: a request
//! routed before the swap keeps its function to the end, the next request
//! sees the new catalog. Nothing is ever half-activated.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::Method;

use crate::config::Config;
use crate::delivery::schedule::Scheduled;
use crate::delivery::{Consumer, ConsumerKey};
use crate::manifest::FunctionManifest;
use crate::pipeline::receive::{RouteConflict, RouteTarget, Routes};
use crate::pipeline::validate::Schema;
use crate::runtime::Function;

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
        let mut routes = Vec::with_capacity(manifest.routes.len());
        for route in &manifest.routes {
            let m = &route.manifest;
            let path = format!("/{}{}", manifest.tenant, m.path);
            let name = format!("{} {path}", m.method);
            let schema = route
                .schema
                .as_ref()
                .map(Schema::compile)
                .transpose()
                .map_err(|message| UnitError::Schema {
                    route: name.clone(),
                    message,
                })?;
            let method =
                Method::from_bytes(m.method.as_bytes()).map_err(|_| UnitError::Schema {
                    route: name.clone(),
                    message: "invalid method".into(),
                })?;
            let target = RouteTarget {
                function: function.clone(),
                name: name.into(),
                auth: m.auth.clone(),
                body: m.body_kind(),
                max_body_bytes: m.max_body_bytes.unwrap_or(default_body_limit),
                accept: m.accept.clone(),
                schema,
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
