//! The routing table: path patterns to per-method targets, and what each
//! target holds for the stages that serve it.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use super::cors::Cors;
use super::schema::Schema;
use crate::config::manifest::{AuthRule, BodyKind};
use crate::runtime::Function;

/// What a route leads to: the function and the rules the next stages apply.
pub struct RouteTarget {
    /// The function that handles it.
    pub function: Function,
    /// `METHOD /tenant/pattern`, for logs and invocation records.
    pub name: Arc<str>,
    /// The route's name in its manifest, which the function dispatches on.
    pub route: Arc<str>,
    /// Its path pattern in the manifest, without the tenant.
    pub pattern: Arc<str>,
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
    /// Its cross-origin rules, if browsers on other origins may call it.
    pub cors: Option<Arc<Cors>>,
    /// Whether a retry with the same `Idempotency-Key` is answered from
    /// the first commit.
    pub idempotent: bool,
    /// What the tenant's API description says of it.
    pub doc: RouteDoc,
}

/// A route as the tenant's OpenAPI document describes it: what the
/// manifest says beyond serving it.
#[derive(Debug, Default)]
pub struct RouteDoc {
    /// One line.
    pub summary: Option<String>,
    /// Markdown.
    pub description: Option<String>,
    /// The success status, if the manifest names one.
    pub status: Option<u16>,
    /// The body's JSON Schema as written.
    pub schema: Option<Arc<serde_json::Value>>,
    /// The success response's JSON Schema, if the manifest names one.
    pub response_schema: Option<Arc<serde_json::Value>>,
    /// An example request body, checked against the body's schema.
    pub example: Option<Arc<serde_json::Value>>,
    /// An example success body, checked against `response_schema`.
    pub response_example: Option<Arc<serde_json::Value>>,
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

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No route has this path.
    Path,
    /// Routes have this path, with these methods but not the one asked for.
    Method(Vec<Method>),
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
    pub fn route(&self, method: &Method, path: &str) -> Result<Matched, NoRoute> {
        let matched = self.router.at(path).map_err(|_| NoRoute::Path)?;
        let table = &self.tables[*matched.value];
        let target = table
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| NoRoute::Method(table.iter().map(|(m, _)| m.clone()).collect()))?;
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
