//! What the host is told: `sluice serve`'s configuration (an optional TOML
//! file; every field has a default), function manifests, per-invocation
//! limits, the settings a tenant may have of its own, and every naming rule.

pub mod faults;
pub mod limits;
pub mod manifest;
pub mod names;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use limits::{Limits, LimitsConfig};

/// `cargo --config` arguments defining the `guest` profile functions are
/// built with (release, optimized for size, no debug information), for a
/// crate that does not define it: `sluice deploy` and `sluice-test` pass them.
pub const GUEST_PROFILE_CONFIG: [&str; 4] = [
    "profile.guest.inherits=\"release\"",
    "profile.guest.opt-level=\"s\"",
    "profile.guest.debug=false",
    "profile.guest.strip=true",
];

/// A key the host keeps for itself in `path`: what the file holds, if
/// `usable` takes it; else one `make` makes, written to a file only its
/// owner can read.
pub fn key_file(
    path: &Path,
    usable: impl Fn(&str) -> bool,
    make: impl FnOnce() -> std::io::Result<String>,
) -> std::io::Result<String> {
    use std::io::Write;
    match std::fs::read_to_string(path) {
        Ok(key) if usable(key.trim()) => return Ok(key.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = make()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(key.as_bytes())?;
    Ok(key)
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: toml::de::Error,
    },
}

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP listener binds.
    pub listen: SocketAddr,
    /// Where Sluice keeps its data (database, keys). Created on first start.
    pub data_dir: PathBuf,
    /// `sqlite://path` (default: `sluice.db` in the data directory).
    pub database_url: Option<String>,
    /// Directories whose subdirectories hold `sluice.toml` function manifests.
    pub functions_dirs: Vec<PathBuf>,
    /// JWT verification.
    pub auth: AuthConfig,
    /// HTTP limits.
    pub http: HttpConfig,
    /// The wasm engine: instance pool, conflict re-runs, compiled-code cache.
    pub runtime: RuntimeConfig,
    /// Per-invocation limits: defaults and ceilings.
    pub limits: LimitsConfig,
    /// Database tuning.
    pub database: DatabaseConfig,
    /// Message delivery.
    pub queue: QueueConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// The per-tenant cache.
    pub cache: CacheConfig,
    /// Where the `sluice` commands that manage a host find its admin API.
    pub cli: CliConfig,
    /// Where blob bytes live.
    pub blobs: BlobsConfig,
    /// OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
    /// The key tenants' secrets are sealed with.
    pub secrets: SecretsConfig,
}

/// `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP with
/// protobuf. Off unless `enabled` is true or `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; `OTEL_SDK_DISABLED=true`
/// turns it off whatever this says. The other `OTEL_*` variables
/// (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`, …) apply as usual.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Export traces.
    pub enabled: bool,
    /// The OTLP/HTTP endpoint, e.g. `http://collector:4318`; traces go to
    /// `<endpoint>/v1/traces`. Default: `OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// `http://localhost:4318`.
    pub endpoint: Option<String>,
    /// `service.name` of the spans. Default: `OTEL_SERVICE_NAME`, else `sluice`.
    pub service_name: Option<String>,
    /// The share of traces started here that are kept, 0.0 to 1.0; a trace
    /// continued from a caller's `traceparent` follows the caller's choice.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            service_name: None,
            sample_ratio: 1.0,
        }
    }
}

/// Where blob bytes live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobStoreKind {
    /// `blobs/` in the data directory.
    #[default]
    Local,
    /// An S3-compatible bucket.
    S3,
}

/// `[blobs]`: where blob bytes live. Credentials are never in this file:
/// they come from `credentials_file` or the `AWS_*` environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    /// `local` (default) or `s3`.
    pub store: BlobStoreKind,
    /// The S3 endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or a
    /// MinIO URL; default: AWS's for the region (or `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    /// The bucket (required for `s3`).
    pub bucket: Option<String>,
    /// The region; default: `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// A key prefix inside the bucket, for several clusters in one bucket.
    pub prefix: String,
    /// An AWS shared-credentials file; default: the `AWS_*` variables.
    pub credentials_file: Option<PathBuf>,
    /// The profile read from `credentials_file`.
    pub profile: String,
    /// Uploads larger than this go in parts of this size (at least 5 MiB).
    pub part_size_bytes: usize,
    /// How long an object a commit replaced is kept for downloads that
    /// already read its row.
    pub delete_delay_secs: u64,
    /// How old an object without a row must be before the sweeper deletes it.
    pub orphan_grace_secs: u64,
    /// How often each node sweeps the bucket for objects without a row.
    pub sweep_interval_secs: u64,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        Self {
            store: BlobStoreKind::Local,
            endpoint: None,
            bucket: None,
            region: None,
            prefix: String::new(),
            credentials_file: None,
            profile: "default".to_owned(),
            part_size_bytes: 8 * 1024 * 1024,
            delete_delay_secs: 60,
            orphan_grace_secs: 3600,
            sweep_interval_secs: 3600,
        }
    }
}

/// `[cli]`: defaults for the `sluice` commands that talk to the admin API.
/// Flags and environment variables win over these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CliConfig {
    /// The admin API's URL; default: `http://` and `[admin] listen`.
    pub admin_url: Option<String>,
    /// The operator key; keep a file holding it readable only by its owner.
    pub key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".sluice"),
            database_url: None,
            functions_dirs: vec![PathBuf::from("guest-examples")],
            auth: AuthConfig::default(),
            http: HttpConfig::default(),
            runtime: RuntimeConfig::default(),
            limits: LimitsConfig::default(),
            database: DatabaseConfig::default(),
            queue: QueueConfig::default(),
            admin: AdminConfig::default(),
            cache: CacheConfig::default(),
            cli: CliConfig::default(),
            blobs: BlobsConfig::default(),
            telemetry: TelemetryConfig::default(),
            secrets: SecretsConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path`; relative paths inside it are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data_dir = base.join(&config.data_dir);
        for dir in &mut config.functions_dirs {
            *dir = base.join(&*dir);
        }
        if let Some(file) = &mut config.blobs.credentials_file {
            *file = base.join(&*file);
        }
        for key in &mut config.auth.keys {
            if let Some(file) = &mut key.public_key_file {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    /// Where blob files live: `blobs` in the data directory.
    pub fn blobs_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("sluice.db").display()))
    }
}

/// `[secrets]`: the keys tenants' secrets are sealed with at rest. Without
/// a key, a host on SQLite makes one in its data directory
/// (`secrets-key`); hosts sharing PostgreSQL must all be given the same.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32 random bytes in base64 (`sluice secrets new-key`); also
    /// `SLUICE_SECRETS_KEY`. New secrets are sealed with it.
    pub key: Option<String>,
    /// Earlier keys, still opened during a rotation; also
    /// `SLUICE_SECRETS_PREVIOUS_KEYS` (comma-separated).
    pub previous_keys: Vec<String>,
}

/// Never the keys themselves, whoever prints the configuration.
impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("previous_keys", &self.previous_keys.len())
            .finish()
    }
}

/// How tokens are verified: for the whole host here, or for one tenant
/// through the admin API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Verification keys. With none configured (and no `jwks_url`), a
    /// development HS256 key is generated in the data directory and the
    /// server says so at start-up.
    pub keys: Vec<KeyConfig>,
    /// A JWKS URL (`https://…`) whose signing keys are accepted too: fetched
    /// when first needed, again when a token names an unknown `kid` (at most
    /// every 10 s) and when an hour old.
    pub jwks_url: Option<String>,
    /// Accepted `iss` values; when set, tokens must carry one of them.
    pub issuer: Option<Vec<String>>,
    /// Accepted `aud` values; when set, tokens must carry one of them.
    pub audience: Option<Vec<String>>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// The claim that names the caller's tenant.
    pub tenant_claim: String,
    /// The claim that lists the caller's roles (an array, or a space-separated string).
    pub roles_claim: String,
    /// Longest bearer token looked at; longer ones are refused (401) unread.
    pub max_token_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            jwks_url: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            tenant_claim: "tenant".into(),
            roles_claim: "roles".into(),
            max_token_bytes: 8 * 1024,
        }
    }
}

/// One verification key. The algorithm is the key's, never the token's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Matched against the token's `kid` header when both are present.
    pub kid: Option<String>,
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `ES256`, `ES384` or `EdDSA`.
    pub algorithm: String,
    /// The shared secret, for HS* algorithms.
    pub secret: Option<String>,
    /// A PEM public key file, for RS*, PS*, ES* and EdDSA.
    pub public_key_file: Option<PathBuf>,
    /// The PEM public key itself, instead of a file.
    #[serde(default)]
    pub public_key_pem: Option<String>,
}

/// HTTP listener limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted, unless a route sets its own.
    pub max_body_bytes: usize,
    /// Time allowed for a client to send the request head.
    pub header_read_timeout_ms: u64,
    /// Time allowed for a client to send the request body.
    pub body_timeout_ms: u64,
    /// Open connections beyond this wait to be accepted.
    pub max_connections: usize,
    /// Longest path and query (414 past it).
    pub max_uri_bytes: usize,
    /// Largest header section, every `name: value` line counted (431 past it).
    pub max_header_bytes: usize,
    /// Largest single header line (431 past it).
    pub max_header_line_bytes: usize,
    /// How long a route with `idempotency` answers a retry of the same
    /// `Idempotency-Key` from the first commit (default a day).
    pub idempotency_window_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 10_000,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_header_line_bytes: 16 * 1024,
            idempotency_window_secs: 24 * 60 * 60,
        }
    }
}

/// The wasm runtime: the instance pool, conflict retries, compilation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Instances that can exist at once (the pooling allocator's size).
    pub max_instances: u32,
    /// How many times an invocation is re-run after a write conflict before 409.
    pub max_conflict_retries: u32,
    /// Where compiled code is cached (default: `cache` in the data directory).
    pub cache_dir: Option<PathBuf>,
    /// Wall-clock time one component's compilation may take.
    pub compile_timeout_ms: u64,
    /// Address space the process compiling a component may use.
    pub compile_memory_bytes: u64,
    /// The `sluice` binary that compiles components in a boxed child
    /// process; `sluice serve` sets it to itself. `None`: compile in process.
    #[serde(skip)]
    pub isolated_compiler: Option<PathBuf>,
    /// Seconds a deployed function may sit idle before its compiled code is
    /// unloaded (its next invocation loads it again); 0 keeps it loaded.
    pub unload_idle_s: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_conflict_retries: 8,
            cache_dir: None,
            compile_timeout_ms: 60_000,
            compile_memory_bytes: 2 * 1024 * 1024 * 1024,
            isolated_compiler: None,
            unload_idle_s: 600,
        }
    }
}

/// SQLite durability: what a commit waits for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: nothing acknowledged is lost on power failure.
    #[default]
    Full,
    /// fsync at WAL checkpoints only: a power failure may lose the last commits, never corrupts.
    Normal,
}

/// Database tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// SQLite `synchronous` setting.
    pub synchronous: Synchronous,
    /// Most invocations committed together in one transaction.
    pub max_batch: usize,
    /// Connections used for reads.
    pub read_connections: u32,
    /// Longest wait for a database connection before a read, a write
    /// outside the committer or a reconnect gives up: while the database
    /// is down, requests fail fast (503) instead of holding their slots.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL's `application_name` for the host's connections, so that
    /// operators can tell them apart in `pg_stat_activity`; default
    /// `sluice/<hostname>`. A URL's own `application_name` wins.
    pub application_name: Option<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_batch: 512,
            read_connections: 4,
            acquire_timeout_ms: 1_000,
            application_name: None,
        }
    }
}

/// `url` with any password in it replaced by `***`: the one in its
/// user-information (`postgres://user:PASSWORD@host/db`) and a `password`
/// query parameter. For every URL the host logs or shows.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let start = scheme_end + 3;
        let authority_end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@')
            && let Some(colon) = out[start..start + at].find(':')
        {
            out.replace_range(start + colon + 1..start + at, "***");
        }
    }
    if let Some(query) = out.find('?') {
        let (head, tail) = out.split_at(query + 1);
        let params: Vec<String> = tail
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

/// The admin API's listener. It answers only requests with an operator key
/// (`sluice key create`); keep it on loopback or a private network.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    pub enabled: bool,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Largest deploy upload (component, manifest and schemas together).
    pub max_upload_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            max_upload_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Message delivery: concurrency, retries, leases. A function's `[messages]`
/// section overrides the per-function defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Most messages handled at once, across all functions.
    pub max_concurrency: usize,
    /// Most messages of one function handled at once, unless its manifest says otherwise.
    pub concurrency: usize,
    /// Deliveries before a message goes to the dead letters, by default.
    pub max_attempts: u32,
    /// First retry delay, by default; doubles with each attempt, with jitter.
    pub backoff_ms: u64,
    /// Longest retry delay, by default.
    pub max_backoff_ms: u64,
    /// How long a runner holds a delivery before another may take it. Must
    /// exceed the function timeout plus the commit.
    pub lease_ms: u64,
    /// How long an idempotency key dedupes sends to its topic.
    pub idempotency_window_secs: u64,
    /// How often the dispatcher looks for due messages when nothing woke it.
    pub poll_ms: u64,
    /// Deliveries a tenant may have waiting; past it, its sends fail with
    /// `limit-exceeded` until its consumers catch up.
    pub max_pending_per_tenant: u64,
    /// Consumer runs a chain of messages may take (a consumer's sends and
    /// document events count one more than its message); a message past it
    /// is dead-lettered as `loop-detected`.
    pub max_hops: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 64,
            concurrency: 16,
            max_attempts: 5,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            lease_ms: 60_000,
            idempotency_window_secs: 24 * 60 * 60,
            poll_ms: 1_000,
            max_pending_per_tenant: 1_000_000,
            max_hops: 16,
        }
    }
}

/// `[cache]`: the per-tenant cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes of keys and values one tenant may keep; past it, moka's
    /// TinyLFU policy evicts (rarely and least recently used entries first).
    pub tenant_bytes: u64,
    /// Largest value one entry may hold.
    pub max_value_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            tenant_bytes: 16 * 1024 * 1024,
            max_value_bytes: 1024 * 1024,
        }
    }
}

/// A tenant's request rate limit, set through the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second, sustained.
    pub requests_per_second: f64,
    /// Requests admitted at once after a quiet spell; defaults to one second's worth.
    pub burst: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c: Config = toml::from_str("").expect("parse");
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.database.synchronous, Synchronous::Full);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        for (url, shown) in [
            (
                "postgres://sluice:s3cret@db:5432/sluice",
                "postgres://sluice:***@db:5432/sluice",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=require&password=x",
                "postgresql://u:***@h/db?sslmode=require&password=***",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&Password=x",
                "postgres://h/db?user=u&Password=***",
            ),
            ("sqlite://.sluice/sluice.db", "sqlite://.sluice/sluice.db"),
            (
                "https://a:b@example.com/x@y",
                "https://a:***@example.com/x@y",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
