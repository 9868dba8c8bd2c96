//! Receive: match method and path against the routing table built from the
//! manifests. Returns the route target and its path parameters; rejects
//! unknown paths (404), unknown methods on known paths (405), requests over
//! their tenant's rate (429) and requests past the function's or the
//! tenant's concurrency (429).

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use crate::manifest::{AuthRule, BodyKind};
use crate::quota::{Busy, Concurrency, Permit, Quotas};
use crate::runtime::Function;

use super::validate::Schema;

/// Why a request matched no route.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// No route has this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// The tenant is over its request rate.
    #[error("tenant {tenant} is over its request rate; retry in {retry_after:?}")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// When a request will be admitted again.
        retry_after: std::time::Duration,
    },
    /// The function or its tenant has as many requests running as it may.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Routes have this path, but not this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method asked for.
        method: Method,
        /// The path asked for.
        path: String,
        /// The methods that are served there.
        allowed: Vec<Method>,
    },
}

/// Admits one request of `tenant` under its request rate.
pub fn admit(quotas: &Quotas, tenant: &str) -> Result<(), ReceiveError> {
    quotas
        .admit(tenant)
        .map_err(|retry_after| ReceiveError::RateLimited {
            tenant: tenant.to_owned(),
            retry_after,
        })
}

/// Lets one more request of `function` run, under its own concurrency limit
/// and its tenant's; the permit is held until the response is ready.
pub fn enter<'a>(
    running: &'a Concurrency,
    function: &Function,
    tenant_max: usize,
) -> Result<Permit<'a>, ReceiveError> {
    Ok(running.enter(
        &function.tenant,
        &function.name,
        function.limits.concurrency,
        tenant_max,
    )?)
}

/// What a route leads to: the function and the rules the next stages apply.
pub struct RouteTarget {
    /// The function that handles it.
    pub function: Function,
    /// `METHOD /tenant/pattern`, for logs and invocation records.
    pub name: Arc<str>,
    /// Who may call it.
    pub auth: AuthRule,
    /// What to do with the body.
    pub body: BodyKind,
    /// Body size limit.
    pub max_body_bytes: usize,
    /// Media types a raw body may have; empty: any.
    pub accept: Vec<String>,
    /// The compiled body schema.
    pub schema: Option<Schema>,
}

/// A matched route and its captured path parameters.
pub type Matched = (Arc<RouteTarget>, Vec<(String, String)>);

/// The routing table: path patterns to per-method targets.
#[derive(Default)]
pub struct Routes {
    router: matchit::Router<usize>,
    patterns: HashMap<String, usize>,
    tables: Vec<Vec<(Method, Arc<RouteTarget>)>>,
}

/// Why a route could not be added.
#[derive(Debug, thiserror::Error)]
#[error("route {route} cannot be added: {reason}")]
pub struct RouteConflict {
    /// The route.
    pub route: String,
    /// Why (a duplicate or an overlapping pattern).
    pub reason: String,
}

impl Routes {
    /// Adds `target` at `method` `path` (the full path, tenant included).
    pub fn add(
        &mut self,
        method: Method,
        path: &str,
        target: Arc<RouteTarget>,
    ) -> Result<(), RouteConflict> {
        let conflict = |reason: String| RouteConflict {
            route: format!("{method} {path}"),
            reason,
        };
        let index = match self.patterns.get(path) {
            Some(&i) => i,
            None => {
                let i = self.tables.len();
                // matchit refuses patterns that overlap ambiguously.
                self.router
                    .insert(path, i)
                    .map_err(|e| conflict(e.to_string()))?;
                self.patterns.insert(path.to_owned(), i);
                self.tables.push(Vec::new());
                i
            }
        };
        let table = &mut self.tables[index];
        if let Some((_, other)) = table.iter().find(|(m, _)| *m == method) {
            let owner = &other.function;
            return Err(conflict(format!(
                "function {}/{} serves it already",
                owner.tenant, owner.name
            )));
        }
        table.push((method, target));
        Ok(())
    }

    /// Finds the route for `method` `path`, with its captured parameters.
    pub fn route(&self, method: &Method, path: &str) -> Result<Matched, ReceiveError> {
        let matched = self
            .router
            .at(path)
            .map_err(|_| ReceiveError::NotFound(path.to_owned()))?;
        let table = &self.tables[*matched.value];
        let target = table
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| ReceiveError::MethodNotAllowed {
                method: method.clone(),
                path: path.to_owned(),
                allowed: table.iter().map(|(m, _)| m.clone()).collect(),
            })?;
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok((target, params))
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.tables.iter().map(Vec::len).sum()
    }

    /// True when no route is defined.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}
