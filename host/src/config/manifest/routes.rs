//! A manifest's `[[routes]]`: who may call each route and what it does
//! with the request body.

use std::path::PathBuf;

use serde::Deserialize;

use super::cors::RouteCors;

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
    /// `{ webhook = { scheme, secret, tolerance_s } }`: called by another
    /// service that signs the body with a secret shared with the tenant.
    Webhook {
        /// How the signature is made and checked.
        webhook: WebhookRule,
    },
}

/// A webhook route's signature check.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRule {
    /// Which sender's signature format.
    pub scheme: WebhookScheme,
    /// The name of the tenant's configuration value holding the secret
    /// (`sluice tenant config set … --secret`).
    pub secret: String,
    /// Most seconds between the signed timestamp and now, either way
    /// (default 300); a replayed old request is refused past it.
    #[serde(default = "default_tolerance")]
    pub tolerance_s: u64,
}

fn default_tolerance() -> u64 {
    300
}

/// The signature formats the host checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookScheme {
    /// Standard Webhooks (Svix and others): `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature: v1,<base64>` over
    /// `id.timestamp.body`; a `whsec_` secret is base64.
    Standard,
    /// Stripe: `stripe-signature: t=<timestamp>,v1=<hex>` over `timestamp.body`.
    Stripe,
    /// GitHub: `x-hub-signature-256: sha256=<hex>` over the body. GitHub
    /// signs no timestamp, so the tolerance cannot apply.
    Github,
}

impl WebhookScheme {
    /// Its name in a manifest.
    pub fn name(self) -> &'static str {
        match self {
            WebhookScheme::Standard => "standard",
            WebhookScheme::Stripe => "stripe",
            WebhookScheme::Github => "github",
        }
    }
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
    /// The name the function knows the route by (`create-todo`); default:
    /// derived from the method and path ([`RouteManifest::route_name`]).
    pub name: Option<String>,
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
    /// Cross-origin rules of this route alone, or `false` for none; default:
    /// the function's `[cors]`.
    pub cors: Option<RouteCors>,
    /// A one-line summary for the tenant's API description.
    pub summary: Option<String>,
    /// A longer description (Markdown) for the tenant's API description.
    pub description: Option<String>,
    /// The status the function answers with when it succeeds, for the
    /// tenant's API description (200 to 299).
    pub status: Option<u16>,
    /// JSON Schema file of the JSON body it answers with when it succeeds,
    /// for the tenant's API description; relative to the manifest.
    pub response_schema: Option<PathBuf>,
    /// Honour `Idempotency-Key`: a retry with the same key gets the first
    /// answer again instead of committing twice.
    #[serde(default)]
    pub idempotency: bool,
    /// A JSON file with an example request body, for the tenant's API
    /// description; it must match `schema`.
    pub example: Option<PathBuf>,
    /// A JSON file with an example success body, for the tenant's API
    /// description; it must match `response_schema`.
    pub response_example: Option<PathBuf>,
}

impl RouteManifest {
    /// Its name: `name`, or the method and the path's segments in lower
    /// case joined by `-`, parameters without their braces:
    /// `POST /todos/{id}/done` is `post-todos-id-done`, `GET /` is `get`.
    pub fn route_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let mut name = self.method.to_ascii_lowercase();
        for segment in self.path.split('/').filter(|s| !s.is_empty()) {
            let segment = segment.trim_start_matches('{').trim_end_matches('}');
            let segment = segment.trim_start_matches('*');
            name.push('-');
            for c in segment.chars() {
                name.push(if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                });
            }
        }
        name
    }

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
    /// The success response's schema document, if any.
    pub response_schema: Option<serde_json::Value>,
    /// The example request body, if any.
    pub example: Option<serde_json::Value>,
    /// The example success body, if any.
    pub response_example: Option<serde_json::Value>,
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
    if let AuthRule::Webhook { webhook } = &route.auth {
        if route.body_kind() != BodyKind::Json {
            return Err(format!(
                "route {} {}: a webhook route needs body = \"json\": its signature covers the body",
                route.method, route.path
            ));
        }
        if !crate::config::names::is_valid_config_name(&webhook.secret) {
            return Err(format!(
                "route {} {}: webhook secret {:?} must name a configuration value (A-Z, a-z, 0-9, _, . and -)",
                route.method, route.path, webhook.secret
            ));
        }
        if !(1..=86_400).contains(&webhook.tolerance_s) {
            return Err(format!(
                "route {} {}: webhook tolerance_s must be 1 to 86400 seconds",
                route.method, route.path
            ));
        }
    }
    if let Some(status) = route.status
        && !(200..=299).contains(&status)
    {
        return Err(format!(
            "route {} {}: status {status} is not a success status (200 to 299)",
            route.method, route.path
        ));
    }
    match &route.cors {
        Some(RouteCors::Enabled(true)) => {
            return Err(format!(
                "route {} {}: cors = true says nothing; write its rules, or leave it out to use the function's [cors]",
                route.method, route.path
            ));
        }
        Some(RouteCors::Rules(rules)) => rules
            .check()
            .map_err(|e| format!("route {} {}: {e}", route.method, route.path))?,
        _ => {}
    }
    if route.example.is_some() && route.body_kind() != BodyKind::Json {
        return Err(format!(
            "route {} {}: an example is of a JSON body; this route takes none",
            route.method, route.path
        ));
    }
    if route.idempotency {
        if route.method == "GET" {
            return Err(format!(
                "route {} {}: idempotency is for writes; a GET is idempotent already",
                route.method, route.path
            ));
        }
        if route.auth == AuthRule::Named(NamedRule::Public) {
            return Err(format!(
                "route {} {}: idempotency needs a caller to keep keys apart; a public route has none",
                route.method, route.path
            ));
        }
    }
    if let Some(name) = &route.name
        && !is_route_name(name)
    {
        return Err(format!(
            "route {} {}: name {name:?} must be 1-64 characters of a-z, 0-9 and -, \
             starting with a letter",
            route.method, route.path
        ));
    }
    Ok(())
}

/// `a-z`, `0-9` and `-`, 1 to 64 of them, starting with a letter.
fn is_route_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Refuses two routes of one function with the same name.
pub(super) fn check_names(routes: &[RouteManifest]) -> Result<(), String> {
    let mut seen = std::collections::HashMap::new();
    for route in routes {
        let name = route.route_name();
        if let Some(first) = seen.insert(name.clone(), route) {
            return Err(format!(
                "routes {} {} and {} {} are both named {name:?}; give one a `name`",
                first.method, first.path, route.method, route.path
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_are_derived_from_method_and_path() {
        let route = |method: &str, path: &str| RouteManifest {
            name: None,
            method: method.into(),
            path: path.into(),
            auth: AuthRule::default(),
            schema: None,
            body: None,
            max_body_bytes: None,
            accept: Vec::new(),
            formats: Formats::default(),
            cors: None,
            summary: None,
            description: None,
            status: None,
            response_schema: None,
            idempotency: false,
            example: None,
            response_example: None,
        };
        assert_eq!(
            route("POST", "/todos/{id}/done").route_name(),
            "post-todos-id-done"
        );
        assert_eq!(route("GET", "/").route_name(), "get");
        assert_eq!(
            route("GET", "/files/{*path}").route_name(),
            "get-files-path"
        );
        assert_eq!(route("PUT", "/a_b/c.d").route_name(), "put-a-b-c-d");
        let named = RouteManifest {
            name: Some("create".into()),
            ..route("POST", "/todos")
        };
        assert_eq!(named.route_name(), "create");
        assert!(check_names(&[route("GET", "/a"), route("POST", "/a")]).is_ok());
        let clash = check_names(&[
            named.clone(),
            RouteManifest {
                name: Some("create".into()),
                ..route("PUT", "/x")
            },
        ]);
        assert!(clash.is_err_and(|e| e.contains("both named \"create\"")));
        assert!(is_route_name("create-todo") && !is_route_name("Create") && !is_route_name("1a"));
    }

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
