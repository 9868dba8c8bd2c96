//! Function manifests (`sluice.toml`): which component, which tenant, which routes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML for this schema.
    #[error("invalid manifest {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: toml::de::Error,
    },
    /// A schema file is not JSON.
    #[error("schema {path} is not JSON: {source}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: serde_json::Error,
    },
    /// A field breaks a naming rule.
    #[error("manifest {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

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

/// `[messages]`: the topics a consumer subscribes to and how its deliveries are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesManifest {
    /// Topics of its tenant; `documents.<collection>.*` stands for the
    /// created, updated and deleted events of a collection.
    pub topics: Vec<String>,
    /// Deliveries before a message goes to the dead letters.
    pub max_attempts: Option<u32>,
    /// Delay before the first retry; doubles with each attempt, with jitter.
    pub backoff_ms: Option<u64>,
    /// Longest delay between two attempts.
    pub max_backoff_ms: Option<u64>,
    /// Most of this function's messages handled at once.
    pub concurrency: Option<usize>,
}

/// What a schedule does about ticks that passed while no host was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missed {
    /// Fire one catch-up tick for all the missed ones.
    #[default]
    Once,
    /// Drop them; fire at the next tick on time.
    Skip,
}

/// `[[schedules]]`: ticks delivered to the function's message handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleManifest {
    /// Unique within the function; the tick's topic is `schedule.<name>`.
    pub name: String,
    /// `sec min hour day-of-month month day-of-week [year]`.
    pub cron: String,
    /// An IANA time zone name; UTC by default.
    pub timezone: Option<String>,
    /// What happens to ticks missed while down.
    #[serde(default)]
    pub missed: Missed,
}

/// A schedule with its expression and time zone parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written.
    pub manifest: ScheduleManifest,
    /// The parsed expression.
    pub cron: cron::Schedule,
    /// The parsed time zone.
    pub timezone: chrono_tz::Tz,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    tenant: Option<String>,
    name: Option<String>,
    component: Option<PathBuf>,
    #[serde(default)]
    routes: Vec<RouteManifest>,
    messages: Option<MessagesManifest>,
    #[serde(default)]
    schedules: Vec<ScheduleManifest>,
    #[serde(default)]
    limits: crate::limits::LimitsManifest,
}

/// A loaded manifest: everything needed to serve a function.
#[derive(Debug, Clone)]
pub struct FunctionManifest {
    /// The owning tenant.
    pub tenant: String,
    /// The function's name, unique within its tenant.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
    /// Its routes.
    pub routes: Vec<Route>,
    /// Its subscriptions, with `documents.<collection>.*` expanded.
    pub messages: Option<MessagesManifest>,
    /// Its schedules.
    pub schedules: Vec<Schedule>,
    /// The limits it asks for, within the host's ceilings.
    pub limits: crate::limits::LimitsManifest,
}

/// A route's schema: read next to the manifest, or taken from the upload.
fn read_schema(
    source: &Source<'_>,
    base: &Path,
    rel: &Path,
) -> Result<serde_json::Value, ManifestError> {
    let parse = |path: PathBuf, text: &[u8]| {
        serde_json::from_slice(text).map_err(|source| ManifestError::Schema { path, source })
    };
    match source {
        Source::File(_) => {
            let path = base.join(rel);
            let text = std::fs::read(&path).map_err(|source| ManifestError::Read {
                path: path.clone(),
                source,
            })?;
            parse(path, &text)
        }
        Source::Upload { schemas, .. } => {
            let key = rel.to_string_lossy();
            let key = key.strip_prefix("./").unwrap_or(&key);
            let text = schemas.get(key).ok_or_else(|| ManifestError::Invalid {
                path: PathBuf::from("sluice.toml"),
                message: format!(
                    "schema {key:?} is named by a route but was not uploaded (send it as a `schema` part with filename {key:?})"
                ),
            })?;
            parse(rel.to_owned(), text)
        }
    }
}

/// The document event kinds; `documents.<collection>.<kind>` is their topic.
pub const EVENT_KINDS: [&str; 3] = ["created", "updated", "deleted"];

/// True for topic names made of `[A-Za-z0-9_.-]`, 1 to 128 long.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 128
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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

/// True for topics only the host may send to: document events and schedule ticks.
pub fn is_reserved_topic(topic: &str) -> bool {
    topic.starts_with("documents.") || topic.starts_with("schedule.")
}

/// Checks the subscribed topics and expands `documents.<collection>.*`.
fn expand_topics(topics: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for topic in topics {
        if let Some(rest) = topic.strip_prefix("documents.") {
            let (collection, kind) = rest.rsplit_once('.').unwrap_or((rest, ""));
            if collection.is_empty() || !is_valid_topic(collection) {
                return Err(format!(
                    "topic {topic:?}: expected documents.<collection>.<created|updated|deleted|*>"
                ));
            }
            match kind {
                "*" => out.extend(
                    EVENT_KINDS
                        .iter()
                        .map(|k| format!("documents.{collection}.{k}")),
                ),
                k if EVENT_KINDS.contains(&k) => out.push(topic.clone()),
                _ => {
                    return Err(format!(
                        "topic {topic:?}: expected documents.<collection>.<created|updated|deleted|*>"
                    ));
                }
            }
        } else if topic.starts_with("schedule.") {
            return Err(format!(
                "topic {topic:?}: schedule ticks reach their own function; use [[schedules]]"
            ));
        } else if !is_valid_topic(topic) {
            return Err(format!(
                "topic {topic:?} must be 1-128 characters of A-Z, a-z, 0-9, _, . and -"
            ));
        } else {
            out.push(topic.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses a schedule's expression and time zone.
fn parse_schedule(manifest: ScheduleManifest) -> Result<Schedule, String> {
    if !is_valid_name(&manifest.name) {
        return Err(format!(
            "schedule name {:?} must be 1-63 characters of a-z, 0-9 and -",
            manifest.name
        ));
    }
    let cron = manifest.cron.parse::<cron::Schedule>().map_err(|e| {
        format!(
            "schedule {:?}: cron {:?} is invalid ({e}); expected sec min hour day-of-month month day-of-week [year]",
            manifest.name, manifest.cron
        )
    })?;
    let timezone = match &manifest.timezone {
        None => chrono_tz::Tz::UTC,
        Some(name) => name
            .parse()
            .map_err(|_| format!("schedule {:?}: unknown time zone {name:?}", manifest.name))?,
    };
    Ok(Schedule {
        manifest,
        cron,
        timezone,
    })
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// True for names made of `[a-z0-9-]`, starting with a letter or digit, at most 63 long.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Where a manifest comes from: a file on disk, or an upload to the admin API.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// A `sluice.toml` file; schemas and the component are read next to it.
    File(&'a Path),
    /// A deploy: the tenant and name come from the URL (the manifest may
    /// repeat them), schemas from the upload, keyed by the path the manifest gives.
    Upload {
        /// The tenant deployed to.
        tenant: &'a str,
        /// The function deployed.
        name: &'a str,
        /// The uploaded schema files by path.
        schemas: &'a std::collections::HashMap<String, Vec<u8>>,
    },
}

impl FunctionManifest {
    /// Reads a `sluice.toml` and the schema files it names.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Source::File(path))
    }

    /// Parses a manifest's text; `source` says where schemas come from.
    pub fn parse(text: &str, source: Source<'_>) -> Result<Self, ManifestError> {
        let path = match source {
            Source::File(path) => path.to_owned(),
            Source::Upload { .. } => PathBuf::from("sluice.toml"),
        };
        let invalid = |message: String| ManifestError::Invalid {
            path: path.clone(),
            message,
        };
        let file: ManifestFile = toml::from_str(text).map_err(|source| ManifestError::Parse {
            path: path.clone(),
            source,
        })?;
        let (tenant, name) = match source {
            Source::File(_) => (
                file.tenant
                    .ok_or_else(|| invalid("tenant is required".into()))?,
                file.name
                    .ok_or_else(|| invalid("name is required".into()))?,
            ),
            Source::Upload { tenant, name, .. } => {
                for (what, given, expected) in
                    [("tenant", &file.tenant, tenant), ("name", &file.name, name)]
                {
                    if let Some(given) = given
                        && given != expected
                    {
                        return Err(invalid(format!(
                            "the manifest's {what} is {given:?}, but this deploy is for {what} {expected:?}"
                        )));
                    }
                }
                (tenant.to_owned(), name.to_owned())
            }
        };
        for (what, value) in [("tenant", &tenant), ("name", &name)] {
            if !is_valid_name(value) {
                return Err(invalid(format!(
                    "{what} {value:?} must be 1-63 characters of a-z, 0-9 and -"
                )));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let component = match (&source, file.component) {
            (Source::File(_), Some(component)) => base.join(component),
            (Source::File(_), None) => return Err(invalid("component is required".into())),
            // The uploaded component is the one served, whatever the manifest names.
            (Source::Upload { .. }, _) => PathBuf::new(),
        };
        let mut routes = Vec::with_capacity(file.routes.len());
        for mut route in file.routes {
            route.method = route.method.to_ascii_uppercase();
            if !METHODS.contains(&route.method.as_str()) {
                return Err(invalid(format!("unsupported method {}", route.method)));
            }
            if !route.path.starts_with('/') || route.path.starts_with("/_sluice") {
                return Err(invalid(format!(
                    "route path {:?} must start with / and not with /_sluice",
                    route.path
                )));
            }
            let raw = route.body_kind() == BodyKind::Raw;
            if raw && route.schema.is_some() {
                return Err(invalid(format!(
                    "route {} {}: a raw body has no schema",
                    route.method, route.path
                )));
            }
            if !raw && !route.accept.is_empty() {
                return Err(invalid(format!(
                    "route {} {}: `accept` is for routes with body = \"raw\"",
                    route.method, route.path
                )));
            }
            if let Some(bad) = route.accept.iter().find(|a| !is_media_range(a)) {
                return Err(invalid(format!(
                    "route {} {}: {bad:?} is not a media type like image/png or image/*",
                    route.method, route.path
                )));
            }
            let schema = match &route.schema {
                Some(rel) => Some(read_schema(&source, base, rel)?),
                None => None,
            };
            routes.push(Route {
                manifest: route,
                schema,
            });
        }
        let messages = match file.messages {
            Some(mut messages) => {
                messages.topics = expand_topics(&messages.topics).map_err(invalid)?;
                if messages.max_attempts == Some(0) || messages.concurrency == Some(0) {
                    return Err(invalid(
                        "[messages] max_attempts and concurrency must be at least 1".into(),
                    ));
                }
                Some(messages)
            }
            None => None,
        };
        let mut schedules = Vec::with_capacity(file.schedules.len());
        for schedule in file.schedules {
            if schedules
                .iter()
                .any(|s: &Schedule| s.manifest.name == schedule.name)
            {
                return Err(invalid(format!(
                    "schedule {:?} appears twice",
                    schedule.name
                )));
            }
            schedules.push(parse_schedule(schedule).map_err(invalid)?);
        }
        Ok(Self {
            tenant,
            name,
            component,
            routes,
            messages,
            schedules,
            limits: file.limits,
        })
    }

    /// Loads every `*/sluice.toml` one level below `dir`, in name order.
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>, ManifestError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ManifestError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("sluice.toml"))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        paths.iter().map(|p| Self::load(p)).collect()
    }
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

    #[test]
    fn event_wildcards_expand_and_schedule_topics_are_refused() {
        let topics = expand_topics(&["jobs".into(), "documents.posts.*".into()]).expect("expand");
        assert_eq!(
            topics,
            [
                "documents.posts.created",
                "documents.posts.deleted",
                "documents.posts.updated",
                "jobs"
            ]
        );
        assert!(expand_topics(&["documents.posts.renamed".into()]).is_err());
        assert!(expand_topics(&["schedule.x".into()]).is_err());
        assert!(expand_topics(&["a/b".into()]).is_err());
    }

    #[test]
    fn schedules_parse_with_seconds_and_time_zone() {
        let s = parse_schedule(ScheduleManifest {
            name: "digest".into(),
            cron: "0 30 8 * * *".into(),
            timezone: Some("Europe/Paris".into()),
            missed: Missed::Once,
        })
        .expect("parse");
        assert_eq!(s.timezone, chrono_tz::Europe::Paris);
        let bad = |cron: &str, tz: Option<&str>| {
            parse_schedule(ScheduleManifest {
                name: "x".into(),
                cron: cron.into(),
                timezone: tz.map(Into::into),
                missed: Missed::Skip,
            })
            .is_err()
        };
        assert!(bad("every day", None));
        assert!(bad("* * * * * *", Some("Mars/Olympus")));
    }

    #[test]
    fn names_follow_the_rule() {
        assert!(is_valid_name("demo-1"));
        assert!(!is_valid_name("Demo"));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a/b"));
    }
}
