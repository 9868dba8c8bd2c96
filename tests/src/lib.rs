//! Test harness: a real Sluice host on an ephemeral loopback port, with a
//! temporary data directory and database, spoken to over real HTTP.
//!
//! The database is the SQLite file in the data directory, or with
//! `SLUICE_TEST_BACKEND=postgres` a fresh PostgreSQL database tied to the
//! data directory ([`database_url`], [`postgres`]). Blobs live in the data
//! directory, or with `SLUICE_TEST_BLOBS=s3` on a test S3 server ([`s3`]).
//!
//! Guests are built once by `scripts/build-guests.sh` (the test script runs
//! it first); every host here loads the example guests and the test guests.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sluice_host::config::{Config, KeyConfig};
use sluice_host::{App, Server};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use reqwest::StatusCode;

pub mod otlp;
mod own_server;
pub mod postgres;
pub mod s3;

use postgres::{Backend, backend};

/// The HS256 secret the test hosts accept.
pub const HS_SECRET: &str = "sluice-tests-hs256-secret-0123456789abcdef";

/// A hang guard for every network call: a failing host fails the test, it
/// does not hang CI. Not a performance assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A test fixture file.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// Reads a test fixture file.
pub fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_default()
}

/// A running host.
pub struct TestHost {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin API: `http://127.0.0.1:PORT`.
    pub admin: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    data: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The configuration every test host uses, with its data in `data_dir` and
/// its database from [`database_url`].
pub fn config(data_dir: &Path) -> Result<Config> {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        database_url: database_url_sync(data_dir)?,
        functions_dirs: vec![root().join("guest-examples"), root().join("tests/guests")],
        ..Config::default()
    };
    config.listen = ([127, 0, 0, 1], 0).into();
    config.auth.keys = vec![
        KeyConfig {
            kid: None,
            algorithm: "HS256".into(),
            secret: Some(HS_SECRET.into()),
            public_key_file: None,
            public_key_pem: None,
        },
        KeyConfig {
            kid: Some("rsa".into()),
            algorithm: "RS256".into(),
            secret: None,
            public_key_file: Some(fixture("rs256-public.pem")),
            public_key_pem: None,
        },
        KeyConfig {
            kid: Some("ec".into()),
            algorithm: "ES256".into(),
            secret: None,
            public_key_file: Some(fixture("es256-public.pem")),
            public_key_pem: None,
        },
    ];
    config.http.max_body_bytes = 64 * 1024;
    config.runtime.max_instances = 128;
    // Compiled guests are shared by every test host: compile once per run.
    config.runtime.cache_dir = Some(root().join("target/sluice-test-cache"));
    if s3::blobs() == s3::Blobs::Bucket {
        config.blobs = s3::config(data_dir)?;
    }
    Ok(config)
}

/// The file in a data directory that names its PostgreSQL database, so that
/// a host restarted on the directory finds its data again.
const DATABASE_URL_FILE: &str = "test-database-url";

/// The database URL for a host with its data in `data_dir`: `None` on
/// SQLite (the host's default, `sluice.db` in `data_dir`); on PostgreSQL a
/// fresh database the first time, recorded in `<data_dir>/test-database-url`
/// and the same one after that.
pub async fn database_url(data_dir: &Path) -> Result<Option<String>> {
    if backend() == Backend::Sqlite {
        return Ok(None);
    }
    if let Some(url) = recorded_database_url(data_dir)? {
        return Ok(Some(url));
    }
    let url = postgres::fresh_database().await?;
    std::fs::create_dir_all(data_dir)?;
    let file = data_dir.join(DATABASE_URL_FILE);
    std::fs::write(&file, &url).with_context(|| format!("writing {}", file.display()))?;
    Ok(Some(url))
}

/// [`database_url`] for code that is not async (process and CLI helpers).
pub fn database_url_sync(data_dir: &Path) -> Result<Option<String>> {
    if backend() == Backend::Sqlite {
        return Ok(None);
    }
    if let Some(url) = recorded_database_url(data_dir)? {
        return Ok(Some(url));
    }
    // A thread with its own runtime: the caller may be inside a runtime,
    // where `block_on` panics.
    let dir = data_dir.to_owned();
    std::thread::spawn(move || -> Result<Option<String>> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(database_url(&dir))
    })
    .join()
    .map_err(|_| anyhow!("creating the test database panicked"))?
}

/// The PostgreSQL database URL recorded in `data_dir`, if any.
fn recorded_database_url(data_dir: &Path) -> Result<Option<String>> {
    let file = data_dir.join(DATABASE_URL_FILE);
    match std::fs::read_to_string(&file) {
        Ok(url) => Ok(Some(url.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

impl TestHost {
    /// Starts a host with the test configuration on a fresh data directory.
    pub async fn start() -> Result<Self> {
        Self::start_with(TempDir::new()?, |_| {}).await
    }

    /// Starts a host on `data`, letting `adjust` change the configuration.
    pub async fn start_with(data: TempDir, adjust: impl FnOnce(&mut Config)) -> Result<Self> {
        let todo = root().join("target/wasm32-wasip2/guest/todo.wasm");
        if !todo.is_file() {
            bail!(
                "guests are not built ({} is missing): run scripts/build-guests.sh",
                todo.display()
            );
        }
        // Creates the PostgreSQL database here, without blocking the runtime.
        database_url(data.path()).await?;
        let mut config = config(data.path())?;
        adjust(&mut config);
        let app = App::build(&config).await.context("building the app")?;
        let server = Server::bind(app, config.listen, config.http.clone())
            .await?
            .with_admin(([127, 0, 0, 1], 0).into())
            .await?;
        let base = format!("http://{}", server.local_addr()?);
        let admin = format!(
            "http://{}",
            server.admin_addr().context("admin listener not bound")?
        );
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Ok(Self {
            base,
            admin,
            // Idle connections are dropped before the host's 10 s header
            // timeout closes them: a request on a connection the host is
            // closing at that moment would be reset.
            client: reqwest::Client::builder()
                .timeout(HANG_GUARD)
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            data,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Stops the host gracefully (in-flight requests finish, commits flush)
    /// and returns its data directory.
    pub async fn stop(mut self) -> Result<TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(HANG_GUARD, task)
                .await
                .context("host did not stop")??;
        }
        Ok(self.data)
    }

    /// Stops this host and starts a new one on the same data directory.
    pub async fn restart(self) -> Result<Self> {
        let data = self.stop().await?;
        Self::start_with(data, |_| {}).await
    }

    /// The data directory (SQLite database or `test-database-url`, keys).
    pub fn data(&self) -> &Path {
        self.data.path()
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A read-only pool on the host's database, to check what was committed.
    pub async fn db(&self) -> Result<AnyPool> {
        db(self.data.path()).await
    }

    /// Runs a `SELECT count(*) …` with bound values on the host's database.
    /// Invocation records of requests that staged nothing are written after
    /// the response: count those after [`TestHost::stop`], with [`count`].
    pub async fn count(&self, sql: &'static str, binds: &[&str]) -> Result<i64> {
        count(self.data.path(), sql, binds).await
    }

    /// Sends a request and reads the whole response: status, headers, JSON body (or `Null`).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply> {
        send(req).await
    }

    /// GET `path` with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply> {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// POST `body` as JSON to `path` with an optional bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Reply> {
        self.send_json(reqwest::Method::POST, path, token, body)
            .await
    }

    /// Sends `body` as JSON with `method` to `path` with an optional bearer token.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Reply> {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON, `Null` when it is not JSON.
    pub body: Value,
    /// The body bytes.
    pub raw: Vec<u8>,
}

impl Reply {
    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `x-request-id` header.
    pub fn request_id(&self) -> &str {
        self.header("x-request-id")
    }

    /// Asserts this is a problem+json response with `status` that carries the request id.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.header("content-type"), "application/problem+json");
        assert_eq!(self.body["status"], status);
        assert!(!self.request_id().is_empty());
        assert_eq!(self.body["request_id"], self.request_id());
    }
}

/// Sends `req` and reads the whole reply; fails after [`HANG_GUARD`].
pub async fn send(req: reqwest::RequestBuilder) -> Result<Reply> {
    let response = tokio::time::timeout(HANG_GUARD, req.send())
        .await
        .context("request hung")??;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        body,
        raw: bytes.to_vec(),
    })
}

/// Claims valid for ten minutes.
pub fn claims(sub: &str, tenant: &str, roles: &[&str]) -> Value {
    json!({
        "sub": sub,
        "tenant": tenant,
        "roles": roles,
        "exp": jsonwebtoken::get_current_timestamp() + 600,
    })
}

/// An HS256 token the test hosts accept.
pub fn token(sub: &str, tenant: &str, roles: &[&str]) -> String {
    sign_hs256(&claims(sub, tenant, roles), HS_SECRET.as_bytes())
}

/// Signs `claims` with HS256 and `secret`.
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

/// Signs `claims` with the RS256 test key (kid `rsa`).
pub fn sign_rs256(claims: &Value) -> String {
    sign_rs256_kid(claims, "rsa")
}

/// Signs `claims` with the RS256 test key, naming key id `kid`.
pub fn sign_rs256_kid(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(&read_fixture("rs256-private.pem"));
    key.and_then(|k| encode(&header, claims, &k))
        .unwrap_or_default()
}

/// Signs `claims` with the ES256 test key (kid `ec`).
pub fn sign_es256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec".into());
    let key = EncodingKey::from_ec_pem(&read_fixture("es256-private.pem"));
    key.and_then(|k| encode(&header, claims, &k))
        .unwrap_or_default()
}

/// A read-only pool on the database of the host with its data in
/// `data_dir`: checks must never change what the host wrote. Write SQL that
/// both backends run: `$1` placeholders, no SQLite-only functions, and a
/// cast to BIGINT where PostgreSQL would answer NUMERIC.
pub async fn db(data_dir: &Path) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = match backend() {
        Backend::Sqlite => format!("sqlite://{}?mode=ro", data_dir.join("sluice.db").display()),
        Backend::Postgres => {
            let url = recorded_database_url(data_dir)?
                .with_context(|| format!("no database recorded in {}", data_dir.display()))?;
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}options[default_transaction_read_only]=on")
        }
    };
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Runs a `SELECT count(*) …` with bound values on the database in `data_dir`.
/// The values are bound as text: compare a number column with
/// `CAST($1 AS BIGINT)`, as PostgreSQL does not compare text with numbers.
pub async fn count(data_dir: &Path, sql: &'static str, binds: &[&str]) -> Result<i64> {
    let db = db(data_dir).await?;
    let mut query = sqlx::query_scalar(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    let n: i64 = query.fetch_one(&db).await?;
    db.close().await;
    Ok(n)
}

/// Polls `check` every 50 ms until it yields a value; fails after
/// [`HANG_GUARD`]. For effects that happen after the response (deliveries).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    poll_until(what, Duration::from_millis(50), HANG_GUARD, check).await
}

/// Polls `check` every `every` until it yields a value; fails after `guard`.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    every: Duration,
    guard: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + guard;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}

/// The live document `collection/key` of `tenant` in the database in `data_dir`, as JSON.
pub async fn document(
    data_dir: &Path,
    tenant: &str,
    collection: &str,
    key: &str,
) -> Result<Option<Value>> {
    let db = db(data_dir).await?;
    let value: Option<String> = sqlx::query_scalar(
        "SELECT value FROM documents WHERE tenant = $1 AND collection = $2 AND key = $3 AND value IS NOT NULL",
    )
    .bind(tenant)
    .bind(collection)
    .bind(key)
    .fetch_optional(&db)
    .await?;
    db.close().await;
    Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
}

/// The `sluice` binary next to this test binary (cargo builds it for the
/// host's own integration tests).
pub fn sluice_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?;
    let binary = dir.join("sluice");
    if !binary.is_file() {
        bail!("{} is missing: run `cargo build --tests`", binary.display());
    }
    Ok(binary)
}

/// The real `sluice` binary on the data directory and database of the host
/// with its data in `data_dir`.
pub fn sluice_command(data_dir: &Path) -> Result<Command> {
    let mut command = Command::new(sluice_binary()?);
    // The environment must not pick another database than the host's.
    command
        .env_remove("SLUICE_DATABASE_URL")
        .arg("--data-dir")
        .arg(data_dir);
    if let Some(url) = database_url_sync(data_dir)? {
        command.arg("--database-url").arg(url);
    }
    Ok(command)
}

/// Runs the real `sluice` binary against `host`'s data directory, database
/// and admin API.
pub fn sluice(host: &TestHost, key: Option<&str>, args: &[&str]) -> Result<std::process::Output> {
    let mut command = sluice_command(host.data())?;
    command.args(["--admin-url", &host.admin]);
    if let Some(key) = key {
        command.args(["--key", key]);
    }
    let output = command.args(args).output()?;
    if !output.status.success() {
        bail!(
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// The `sluice` arguments that deploy the `consumer` test guest to
/// `tenant` with its send-many route and a consumer of topic `jobs` (4 at
/// once); its manifest is written into `dir`.
pub fn consumer_deploy(dir: &Path, tenant: &str) -> Result<Vec<String>> {
    let manifest = dir.join(format!("{tenant}-consumer.toml"));
    std::fs::write(
        &manifest,
        "[[routes]]\nmethod = \"POST\"\npath = \"/consumer/send-many\"\nauth = \"authenticated\"\n\n\
         [messages]\ntopics = [\"jobs\"]\nconcurrency = 4\n",
    )?;
    let wasm = root().join("target/wasm32-wasip2/guest/consumer.wasm");
    Ok(vec![
        "deploy".into(),
        wasm.to_string_lossy().into_owned(),
        "--manifest".into(),
        manifest.to_string_lossy().into_owned(),
        "--tenant".into(),
        tenant.into(),
        "--name".into(),
        "consumer".into(),
    ])
}

/// Creates tenant `tenant` through the admin API and deploys the `echo`
/// test guest to it as function `echo` under `manifest` (written into the
/// host's data directory), with `sluice deploy`; what the CLI said, or why
/// it refused.
pub async fn echo_tenant(
    host: &TestHost,
    key: &str,
    tenant: &str,
    manifest: &str,
) -> Result<std::process::Output> {
    let made = admin(
        host,
        reqwest::Method::POST,
        "/v1/tenants",
        Some(key),
        Some(serde_json::json!({ "name": tenant })),
    )
    .await?;
    if made.status.as_u16() != 201 && made.status.as_u16() != 409 {
        bail!("creating tenant {tenant}: {}", made.body);
    }
    deploy_echo(host, key, tenant, manifest)
}

/// Deploys the `echo` test guest to `tenant` as function `echo` under
/// `manifest`, with `sluice deploy`.
pub fn deploy_echo(
    host: &TestHost,
    key: &str,
    tenant: &str,
    manifest: &str,
) -> Result<std::process::Output> {
    let path = host.data().join(format!("{tenant}-echo.toml"));
    std::fs::write(&path, manifest)?;
    let wasm = root().join("target/wasm32-wasip2/guest/echo.wasm");
    let (wasm, path) = (wasm.to_string_lossy(), path.to_string_lossy());
    sluice(
        host,
        Some(key),
        &[
            "deploy",
            &wasm,
            "--manifest",
            &path,
            "--tenant",
            tenant,
            "--name",
            "echo",
        ],
    )
}

/// A new operator key, made with `sluice key create`.
pub fn operator_key(host: &TestHost) -> Result<String> {
    let out = sluice(host, None, &["key", "create", "--name", "tests"])?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Calls the admin API of `host` with an optional operator key and JSON body.
pub async fn admin(
    host: &TestHost,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Result<Reply> {
    let mut req = host.client.request(method, format!("{}{path}", host.admin));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    host.send(req).await
}

/// A `sluice serve` process with the test keys, on a loopback port.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `sluice serve` with its data in `data_dir` (and its database
    /// from [`database_url`]), loading the functions in `functions_dirs`.
    pub fn start(data_dir: &Path, functions_dirs: &[PathBuf]) -> Result<Self> {
        Self::start_with(data_dir, functions_dirs, "")
    }

    /// Like [`Process::start`], with `extra` appended to the configuration.
    pub fn start_with(data_dir: &Path, functions_dirs: &[PathBuf], extra: &str) -> Result<Self> {
        Self::start_with_env(data_dir, functions_dirs, extra, &[])
    }

    /// Like [`Process::start_with`], with `env` added to the process's
    /// environment (e.g. `SLUICE_FAULT` for a debug build's fault points,
    /// or `SLUICE_DATABASE_URL` for another database than the test one).
    pub fn start_with_env(
        data_dir: &Path,
        functions_dirs: &[PathBuf],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dirs: Vec<String> = functions_dirs
            .iter()
            .map(|d| format!("{:?}", d.display().to_string()))
            .collect();
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nfunctions_dirs = [{}]\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [[auth.keys]]\nalgorithm = \"HS256\"\nsecret = {HS_SECRET:?}\n\
             [runtime]\ncache_dir = {:?}\n",
            data_dir.display().to_string(),
            dirs.join(", "),
            root()
                .join("target/sluice-test-cache")
                .display()
                .to_string(),
        );
        std::fs::create_dir_all(data_dir)?;
        // A top-level key: before the first table.
        let database = match database_url_sync(data_dir)? {
            Some(url) => format!("database_url = {url:?}\n"),
            None => String::new(),
        };
        let mut config = format!("{database}{config}{extra}");
        if s3::blobs() == s3::Blobs::Bucket && !extra.contains("[blobs]") {
            config.push_str(&s3::config_toml(data_dir)?);
        }
        let config_path = data_dir.join("sluice-test.toml");
        std::fs::write(&config_path, config)?;
        let mut child = Command::new(sluice_binary()?)
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .env_remove("SLUICE_DATABASE_URL")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        // Reads the log for the address, then keeps draining it so the
        // server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("address=").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                if let Ok(mut log) = kept.lock() {
                    log.push(line);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let said = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                bail!("sluice did not start serving; it logged:\n{said}");
            }
        };
        Ok(Self {
            child,
            base: format!("http://{addr}"),
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// The lines of its log (stderr) so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The admin API, `http://127.0.0.1:PORT`, as the host logged it.
    pub fn admin_url(&self) -> Result<String> {
        self.log()
            .iter()
            .filter(|l| l.contains("admin API listening"))
            .find_map(|l| l.split("admin=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|addr| format!("http://{addr}"))
            .context("the host logged no admin address")
    }

    /// Resident memory, in bytes (`VmRSS` in `/proc/<pid>/status`).
    pub fn resident_bytes(&self) -> Result<u64> {
        resident_bytes(self.pid())
    }

    /// Waits for the process to exit on its own and returns how it ended;
    /// fails after [`HANG_GUARD`].
    pub async fn exited(&mut self) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("sluice (pid {}) did not exit", self.pid());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Resident memory of process `pid`, in bytes (`VmRSS` in `/proc/<pid>/status`).
pub fn resident_bytes(pid: u32) -> Result<u64> {
    proc_status_bytes(pid, "VmRSS:")
}

/// Peak resident memory of process `pid` since it started or since
/// [`reset_peak_resident`], in bytes (`VmHWM`).
pub fn peak_resident_bytes(pid: u32) -> Result<u64> {
    proc_status_bytes(pid, "VmHWM:")
}

/// Resets the peak that [`peak_resident_bytes`] reports to the current
/// resident memory (writing `5` to `/proc/<pid>/clear_refs`). Fails where the
/// kernel or the permissions do not allow it.
pub fn reset_peak_resident(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    Ok(())
}

fn proc_status_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?
        .parse()?;
    Ok(kib * 1024)
}

/// Every entry under `dir` (files, directories, symlinks), recursively and
/// sorted, without following symlinks; empty if `dir` does not exist.
pub fn entries_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let entries = match std::fs::read_dir(&next) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", next.display())),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The entries under `dir` that are not directories (files and symlinks).
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(entries_under(dir)?
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
        .collect())
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
