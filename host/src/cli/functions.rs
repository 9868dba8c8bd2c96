//! `sluice deploy`, `functions`, `versions` and `rollback`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use http::Method;
use serde_json::Value;

use super::Admin;

/// What `sluice deploy` was given.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// A crate directory with `Cargo.toml` and `sluice.toml`, a directory
    /// with a `sluice.toml` naming its component, or a `.wasm` file.
    pub path: PathBuf,
    /// The manifest, if not `sluice.toml` in the directory (or next to the `.wasm`).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Deploy for this tenant instead of the manifest's.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Deploy under this name instead of the manifest's.
    #[arg(long)]
    pub name: Option<String>,
    /// Cargo profile for building a crate: `guest` (release, optimized for
    /// size, no debug information; defined for any crate) or one of the
    /// crate's own.
    #[arg(long, default_value = super::build::GUEST_PROFILE)]
    pub profile: String,
}

/// Deploys a crate directory (built first) or a `.wasm` file with its manifest.
pub async fn deploy(admin: &Admin, args: DeployArgs, json: bool) -> Result<()> {
    let (manifest_path, component_path) = locate(&args.path, &args).await?;
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let mut manifest: toml::Table = toml::from_str(&manifest_text)
        .with_context(|| format!("{} is not valid TOML", manifest_path.display()))?;
    let mut pick = |key: &str, given: Option<String>| {
        let value = given
            .or_else(|| {
                manifest
                    .get(key)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .with_context(|| format!("{} names no {key}; pass --{key}", manifest_path.display()))?;
        // The host checks the manifest against the URL: say the same thing in both.
        manifest.insert(key.to_owned(), toml::Value::String(value.clone()));
        anyhow::Ok(value)
    };
    let tenant = pick("tenant", args.tenant)?;
    let name = pick("name", args.name)?;
    let manifest_text = toml::to_string(&manifest)?;
    let component = std::fs::read(&component_path)
        .with_context(|| format!("reading {}", component_path.display()))?;

    let base = manifest_path.parent().unwrap_or(Path::new("."));
    let mut form = Multipart::new();
    form.part(
        "manifest",
        "sluice.toml",
        "application/toml",
        manifest_text.as_bytes(),
    );
    form.part(
        "component",
        "component.wasm",
        "application/wasm",
        &component,
    );
    for (schema, bytes) in read_schemas(&manifest, base)? {
        form.part("schema", &schema, "application/json", &bytes);
    }
    let (content_type, body) = form.finish();
    let answer = admin
        .send(
            Method::POST,
            &format!("/v1/tenants/{tenant}/functions/{name}/versions"),
            Some(&content_type),
            body,
        )
        .await?;
    if json {
        println!("{answer}");
    } else {
        println!(
            "deployed {tenant}/{name} v{} ({} bytes from {}); it is live",
            answer["version"],
            component.len(),
            component_path.display()
        );
    }
    Ok(())
}

/// The manifest and the component to upload for `path`.
async fn locate(path: &Path, args: &DeployArgs) -> Result<(PathBuf, PathBuf)> {
    if path.is_dir() {
        let manifest = args
            .manifest
            .clone()
            .unwrap_or_else(|| path.join("sluice.toml"));
        if !manifest.is_file() {
            bail!(
                "{} not found; a function's directory holds its sluice.toml (or pass --manifest)",
                manifest.display()
            );
        }
        if path.join("Cargo.toml").is_file() {
            let (dir, profile) = (path.to_owned(), args.profile.clone());
            let component =
                tokio::task::spawn_blocking(move || super::build::build(&dir, &profile))
                    .await
                    .context("the build task failed")??;
            return Ok((manifest, component));
        }
        let text = std::fs::read_to_string(&manifest)?;
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let Some(component) = table.get("component").and_then(|c| c.as_str()) else {
            bail!(
                "{} is not a crate and its manifest names no component",
                path.display()
            );
        };
        let base = manifest.parent().unwrap_or(Path::new("."));
        return Ok((manifest.clone(), base.join(component)));
    }
    if !path.is_file() {
        bail!("{} does not exist", path.display());
    }
    let manifest = match &args.manifest {
        Some(m) => m.clone(),
        None => {
            let beside = path.with_file_name("sluice.toml");
            if beside.is_file() {
                beside
            } else if Path::new("sluice.toml").is_file() {
                PathBuf::from("sluice.toml")
            } else {
                bail!(
                    "no sluice.toml next to {} or here; pass --manifest",
                    path.display()
                );
            }
        }
    };
    Ok((manifest, path.to_owned()))
}

/// The schema files the manifest's routes name, read from `base`: (path
/// as the manifest names it, contents).
pub(super) fn read_schemas(manifest: &toml::Table, base: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    sluice_host::config::manifest::route_files(manifest)
        .into_iter()
        .map(|schema| {
            let file = base.join(&schema);
            let bytes = std::fs::read(&file)
                .with_context(|| format!("reading schema {}", file.display()))?;
            Ok((schema, bytes))
        })
        .collect()
}

/// A `multipart/form-data` body.
struct Multipart {
    boundary: String,
    body: BytesMut,
}

impl Multipart {
    fn new() -> Self {
        Self {
            boundary: format!("sluice-{}", uuid::Uuid::now_v7().simple()),
            body: BytesMut::new(),
        }
    }

    fn part(&mut self, name: &str, filename: &str, content_type: &str, bytes: &[u8]) {
        let filename = filename.replace(['"', '\r', '\n'], "_");
        self.body.put_slice(
            format!(
                "--{}\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\ncontent-type: {content_type}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.put_slice(bytes);
        self.body.put_slice(b"\r\n");
    }

    fn finish(mut self) -> (String, Bytes) {
        self.body
            .put_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body.freeze(),
        )
    }
}

/// `sluice functions list`.
pub async fn list(admin: &Admin, tenant: Option<&str>, json: bool) -> Result<()> {
    let path = match tenant {
        Some(t) => format!("/v1/functions?tenant={t}"),
        None => "/v1/functions".to_owned(),
    };
    let answer = admin.call(Method::GET, &path, None).await?;
    let functions = answer["functions"].as_array().cloned().unwrap_or_default();
    if json {
        for f in &functions {
            println!("{f}");
        }
        return Ok(());
    }
    println!(
        "{:<32}  {:<9}  {:>7}  ROUTES / TOPICS / SCHEDULES",
        "FUNCTION", "ORIGIN", "VERSION"
    );
    for f in &functions {
        let name = format!("{}/{}", text(&f["tenant"]), text(&f["name"]));
        let version = f["version"]
            .as_u64()
            .map_or_else(|| "-".to_owned(), |v| format!("v{v}"));
        let count = |k: &str| f[k].as_array().map_or(0, Vec::len);
        println!(
            "{name:<32}  {:<9}  {version:>7}  {} / {} / {}",
            text(&f["origin"]),
            count("routes"),
            count("topics"),
            count("schedules")
        );
    }
    Ok(())
}

/// `sluice functions delete`.
pub async fn delete(admin: &Admin, tenant: &str, name: &str, json: bool) -> Result<()> {
    let answer = admin
        .call(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/functions/{name}"),
            None,
        )
        .await?;
    if json {
        println!("{answer}");
    } else {
        println!("{tenant}/{name} taken down and its versions deleted");
    }
    Ok(())
}

/// `sluice versions`.
pub async fn versions(admin: &Admin, tenant: &str, name: &str, json: bool) -> Result<()> {
    let answer = admin
        .call(
            Method::GET,
            &format!("/v1/tenants/{tenant}/functions/{name}/versions"),
            None,
        )
        .await?;
    if json {
        println!("{answer}");
        return Ok(());
    }
    println!(
        "{:>7}  {:<6}  {:<20}  {:<28}  {:>10}  SHA-256",
        "VERSION", "LIVE", "DEPLOYED", "BY", "BYTES"
    );
    for v in answer["versions"].as_array().into_iter().flatten() {
        let live = if v["active"] == true { "live" } else { "" };
        let by = match v["deployed_by_name"].as_str() {
            Some(n) => format!("{} ({n})", text(&v["deployed_by"])),
            None => text(&v["deployed_by"]).to_owned(),
        };
        let sha: String = text(&v["component_sha256"]).chars().take(12).collect();
        println!(
            "{:>7}  {live:<6}  {:<20}  {by:<28}  {:>10}  {sha}",
            format!("v{}", v["version"]),
            time(&v["deployed_at"]),
            v["component_bytes"],
        );
    }
    Ok(())
}

/// `sluice rollback`.
pub async fn rollback(
    admin: &Admin,
    tenant: &str,
    name: &str,
    to: Option<u32>,
    json: bool,
) -> Result<()> {
    let body = serde_json::json!({ "version": to });
    let answer = admin
        .call(
            Method::POST,
            &format!("/v1/tenants/{tenant}/functions/{name}/rollback"),
            Some(&body),
        )
        .await?;
    if json {
        println!("{answer}");
    } else {
        println!("{tenant}/{name} v{} is live", answer["version"]);
    }
    Ok(())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS` UTC.
fn time(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// What to do with live functions.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List live functions: origin, version, routes, topics, schedules.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Take a deployed function down and delete its versions.
    Delete {
        /// The tenant.
        tenant: String,
        /// The function.
        name: String,
    },
}
