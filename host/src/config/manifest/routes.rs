//! A manifest's `[[routes]]`: who may call each route and what it does
//! with the request body.

use std::path::PathBuf;

use serde::Deserialize;

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AuthRule {
    /// `"public"` or `"authenticated"`.
    Named(NamedRule),
    /// `{ any_role = ["admin", …] }`: authenticated and holding one of these roles.
    AnyRole {
        /// The roles, any one of which admits the caller.
        any_role: Vec<String>,
    },
}

/// The auth rules that need no parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamedRule {
    /// Anyone, no token needed; the function sees no claims.
    Public,
    /// Any valid token of the function's tenant.
    Authenticated,
}

impl Default for AuthRule {
    fn default() -> Self {
        AuthRule::Named(NamedRule::Authenticated)
    }
}

/// What a route does with the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// A JSON body, parsed and checked against the schema if there is one.
    Json,
    /// The body is not read; the function gets an empty one.
    None,
    /// Any bytes of an accepted media type, streamed to a staged blob
    /// before the function runs (see `accept`); the function gets an empty
    /// body and the upload through the `blobs` capability.
    Raw,
}

/// What the route's schema does with `format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Formats {
    /// As JSON Schema 2020-12 says by default: `format` is an annotation,
    /// not checked (unless the schema's `$vocabulary` asks for assertion).
    #[default]
    Annotate,
    /// Every `format` the validator knows is checked (422 when it fails).
    Assert,
}

/// One route of a function.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteManifest {
    /// HTTP method.
    pub method: String,
    /// Path pattern under the tenant, e.g. `/todos/{id}`.
    pub path: String,
    /// Who may call it.
    #[serde(default)]
    pub auth: AuthRule,
    /// JSON Schema file for the body, relative to the manifest.
    pub schema: Option<PathBuf>,
    /// What to do with the body; defaults by method.
    pub body: Option<BodyKind>,
    /// Per-route body size limit.
    pub max_body_bytes: Option<usize>,
    /// Media types a raw body may have (`image/png`, `image/*`, `*/*`).
    #[serde(default)]
    pub accept: Vec<String>,
    /// Whether the schema's `format` keywords are checked.
    #[serde(default)]
    pub formats: Formats,
}

impl RouteManifest {
    /// The body kind, defaulting to JSON for methods that usually carry one.
    pub fn body_kind(&self) -> BodyKind {
        self.body.unwrap_or(match self.method.as_str() {
            "POST" | "PUT" | "PATCH" => BodyKind::Json,
            _ => BodyKind::None,
        })
    }
}

/// A route with its schema loaded.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route as written.
    pub manifest: RouteManifest,
    /// The schema document, if any.
    pub schema: Option<serde_json::Value>,
}

/// `type/subtype`, `type/*` or `*/*`, in token characters.
fn is_media_range(range: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match range.split_once('/') {
        Some(("*", "*")) => true,
        Some((t, "*")) => token(t),
        Some((t, s)) => token(t) && token(s),
        None => false,
    }
}

/// Whether `content_type` (a header value, parameters allowed) matches one
/// of `accept`; an empty list accepts anything.
pub fn accepts(accept: &[String], content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    if ty.is_empty() || sub.is_empty() {
        return false;
    }
    accept.is_empty()
        || accept.iter().any(|range| match range.split_once('/') {
            Some(("*", "*")) => true,
            Some((t, "*")) => t.eq_ignore_ascii_case(ty),
            Some((t, s)) => t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(sub),
            None => false,
        })
}

/// The methods a route may have.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Checks one route as written; `Err` says what is wrong with it.
pub(super) fn check(route: &mut RouteManifest) -> Result<(), String> {
    route.method = route.method.to_ascii_uppercase();
    if !METHODS.contains(&route.method.as_str()) {
        return Err(format!("unsupported method {}", route.method));
    }
    if !route.path.starts_with('/') || route.path.starts_with("/_sluice") {
        return Err(format!(
            "route path {:?} must start with / and not with /_sluice",
            route.path
        ));
    }
    let raw = route.body_kind() == BodyKind::Raw;
    if raw && route.schema.is_some() {
        return Err(format!(
            "route {} {}: a raw body has no schema",
            route.method, route.path
        ));
    }
    if !raw && !route.accept.is_empty() {
        return Err(format!(
            "route {} {}: `accept` is for routes with body = \"raw\"",
            route.method, route.path
        ));
    }
    if let Some(bad) = route.accept.iter().find(|a| !is_media_range(a)) {
        return Err(format!(
            "route {} {}: {bad:?} is not a media type like image/png or image/*",
            route.method, route.path
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_rules_parse_in_all_three_forms() {
        #[derive(Deserialize)]
        struct T {
            a: AuthRule,
            b: AuthRule,
            c: AuthRule,
        }
        let t: T =
            toml::from_str("a = \"public\"\nb = \"authenticated\"\nc = { any_role = [\"admin\"] }")
                .expect("parse");
        assert_eq!(t.a, AuthRule::Named(NamedRule::Public));
        assert_eq!(t.b, AuthRule::Named(NamedRule::Authenticated));
        assert_eq!(
            t.c,
            AuthRule::AnyRole {
                any_role: vec!["admin".into()]
            }
        );
    }
}
