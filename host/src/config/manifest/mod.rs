//! Function manifests (`sluice.toml`): which component, which tenant, which
//! routes, and what the function consumes.

mod cors;
mod messages;
mod routes;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cors::{CorsManifest, RouteCors};
pub use messages::{MessagesManifest, Missed, Schedule, ScheduleManifest};
pub use routes::{
    AuthRule, BodyKind, Formats, NamedRule, Route, RouteManifest, WebhookRule, WebhookScheme,
    accepts,
};

use crate::config::limits::LimitsManifest;
use crate::config::names::is_valid_name;

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
    limits: LimitsManifest,
    cors: Option<CorsManifest>,
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
    pub limits: LimitsManifest,
    /// Cross-origin rules for its routes (a route's own `cors` wins).
    pub cors: Option<CorsManifest>,
}

/// The JSON files a manifest's routes name (bodies' and responses'
/// schemas and examples), relative to it, each once: what a deploy
/// uploads beside it.
pub fn route_files(manifest: &toml::Table) -> Vec<String> {
    let mut paths: Vec<String> = manifest
        .get("routes")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .flat_map(|route| {
            ["schema", "response_schema", "example", "response_example"]
                .into_iter()
                .filter_map(|field| route.get(field).and_then(|s| s.as_str()))
        })
        .map(|s| s.strip_prefix("./").unwrap_or(s).to_owned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
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
        let (tenant, name) = identity(&file, &source).map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let component = match (&source, file.component) {
            (Source::File(_), Some(component)) => base.join(component),
            (Source::File(_), None) => return Err(invalid("component is required".into())),
            // The uploaded component is the one served, whatever the manifest names.
            (Source::Upload { .. }, _) => PathBuf::new(),
        };
        if let Some(cors) = &file.cors {
            cors.check().map_err(invalid)?;
        }
        let mut routes = Vec::with_capacity(file.routes.len());
        let mut checked = file.routes;
        for route in &mut checked {
            routes::check(route).map_err(invalid)?;
        }
        routes::check_names(&checked).map_err(invalid)?;
        for route in checked {
            let schema = match &route.schema {
                Some(rel) => Some(read_schema(&source, base, rel)?),
                None => None,
            };
            let read = |rel: &Option<PathBuf>| {
                rel.as_ref()
                    .map(|rel| read_schema(&source, base, rel))
                    .transpose()
            };
            routes.push(Route {
                schema,
                response_schema: read(&route.response_schema)?,
                example: read(&route.example)?,
                response_example: read(&route.response_example)?,
                manifest: route,
            });
        }
        let messages = file
            .messages
            .map(messages::check)
            .transpose()
            .map_err(invalid)?;
        let schedules = messages::parse_schedules(file.schedules).map_err(invalid)?;
        Ok(Self {
            tenant,
            name,
            component,
            routes,
            messages,
            schedules,
            limits: file.limits,
            cors: file.cors,
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

/// The function's tenant and name: from a file, as written; from an
/// upload, the deploy's (a manifest that names others is refused).
fn identity(file: &ManifestFile, source: &Source<'_>) -> Result<(String, String), String> {
    let (tenant, name) = match source {
        Source::File(_) => (
            file.tenant.clone().ok_or("tenant is required")?,
            file.name.clone().ok_or("name is required")?,
        ),
        Source::Upload { tenant, name, .. } => {
            for (what, given, expected) in
                [("tenant", &file.tenant, tenant), ("name", &file.name, name)]
            {
                if let Some(given) = given
                    && given != expected
                {
                    return Err(format!(
                        "the manifest's {what} is {given:?}, but this deploy is for {what} {expected:?}"
                    ));
                }
            }
            ((*tenant).to_owned(), (*name).to_owned())
        }
    };
    for (what, value) in [("tenant", &tenant), ("name", &name)] {
        if !is_valid_name(value) {
            return Err(format!(
                "{what} {value:?} must be 1-63 characters of a-z, 0-9 and -"
            ));
        }
    }
    Ok((tenant, name))
}
