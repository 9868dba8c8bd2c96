//! Test a Sluice function from `cargo test`, on the real host.
//!
//! [`TestHost::start`] builds the crate the test belongs to for
//! `wasm32-wasip2` (cargo rebuilds it only when its sources changed), and
//! starts the same host `sluice serve` runs, in the test's process, on a
//! temporary data directory with its own SQLite database and a loopback
//! port, with the crate's `sluice.toml`. Requests go through the whole
//! pipeline over HTTP: authentication, the schema, limits, the commit.
//!
//! ```no_run
//! use serde_json::json;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn creates_a_todo() -> Result<(), sluice_test::KitError> {
//!     let host = sluice_test::TestHost::start().await?;
//!     let alice = host.token("alice", &[]);
//!     let created = host.post("/todos").token(&alice).json(&json!({ "title": "milk" })).send().await?;
//!     assert_eq!(created.status, 201);
//!     let id = created.json["id"].as_str().unwrap_or_default();
//!     let stored = host.document("todos", &format!("alice/{id}")).await?;
//!     assert_eq!(stored.map(|todo| todo["title"].clone()), Some(json!("milk")));
//!     Ok(())
//! }
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;
use sluice_host::config::{Config, KeyConfig, Limits};
use sluice_host::runtime::Runtime;
use sluice_host::store::staging::{DocKey, StagedBlob, StagedWrite};
use sluice_host::store::{
    CommitOutcome, CommitRequest, InvocationFilter, InvocationRecord, NewConfig, Outcome, Staging,
    Store, Tick,
};
use sluice_host::{App, Server};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One invocation's record: see [`TestHost::invocations`].
pub use sluice_host::store::InvocationRow as Invocation;

/// How long a request or a wait may take before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(60);

/// Why the kit could not do what the test asked.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The crate could not be found, read or built.
    #[error("building the function: {0}")]
    Build(String),
    /// The host refused to start (a manifest error, a component that does not link).
    #[error("starting the host: {0}")]
    Start(String),
    /// A request could not be sent or its answer read.
    #[error("request: {0}")]
    Request(#[from] reqwest::Error),
    /// The host's database could not be read.
    #[error("reading the host's database: {0}")]
    Database(#[from] sqlx::Error),
    /// The host's store refused what a test seeded, a tick it fired, or a read.
    #[error("the store: {0}")]
    Seed(String),
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

/// The crate's function, served by a real host for the length of a test.
pub struct TestHost {
    base: String,
    tenant: String,
    store: Store,
    /// For the cache and the clock functions see.
    runtime: Arc<Runtime>,
    /// Read-only, for what the store has no call for (the queue's tables).
    db: sqlx::AnyPool,
    secret: String,
    client: reqwest::Client,
    /// Removed when the host is dropped.
    _data: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestHost {
    /// Builds the crate of the running test (`CARGO_MANIFEST_DIR`) and
    /// serves it.
    pub async fn start() -> Result<Self, KitError> {
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .ok_or_else(|| {
                KitError::Build("CARGO_MANIFEST_DIR is not set: run it with cargo test".into())
            })?;
        Self::start_crate(&dir).await
    }

    /// Builds the function crate in `dir` and serves it.
    pub async fn start_crate(dir: &Path) -> Result<Self, KitError> {
        let building = dir.to_owned();
        let wasm = tokio::task::spawn_blocking(move || build(&building))
            .await
            .map_err(|e| KitError::Build(e.to_string()))??;
        let data = TempDir::new().map_err(|e| KitError::Start(e.to_string()))?;
        let tenant = stage_manifest(dir, &wasm, data.path())?;
        // A fresh key for every host: tokens of one test never pass in another.
        let secret = format!("sluice-test-{}", uuid::Uuid::now_v7().simple());
        let mut config = Config {
            data_dir: data.path().to_owned(),
            functions_dirs: vec![data.path().join("functions")],
            ..Config::default()
        };
        config.listen = ([127, 0, 0, 1], 0).into();
        config.auth.keys = vec![KeyConfig {
            kid: None,
            algorithm: "HS256".into(),
            secret: Some(secret.clone()),
            public_key_file: None,
            public_key_pem: None,
        }];
        // Compiled code outlives the test's data directory: the next run
        // of an unchanged component loads it instead of compiling it.
        config.runtime.cache_dir = wasm.parent().map(|p| p.join("sluice-test-cache"));
        let start = |e: &dyn std::fmt::Display| KitError::Start(e.to_string());
        let app = App::build(&config).await.map_err(|e| start(&e))?;
        let store = app.store.clone();
        let runtime = app.pipeline.runtime.clone();
        sqlx::any::install_default_drivers();
        let url = format!(
            "sqlite://{}?mode=ro",
            data.path().join("sluice.db").display()
        );
        let db = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?;
        let server = Server::bind(app, config.listen, config.http.clone())
            .await
            .map_err(|e| start(&e))?;
        let base = format!("http://{}", server.local_addr().map_err(|e| start(&e))?);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Ok(Self {
            base,
            tenant,
            store,
            runtime,
            db,
            secret,
            client: reqwest::Client::builder()
                .timeout(PATIENCE)
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            _data: data,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The manifest's tenant, under which every route is served.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// A token of the tenant for `subject` with `roles`, valid for ten minutes.
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        #[derive(Serialize)]
        struct Claims<'a> {
            sub: &'a str,
            tenant: &'a str,
            roles: &'a [&'a str],
            exp: u64,
        }
        let claims = Claims {
            sub: subject,
            tenant: &self.tenant,
            roles,
            exp: jsonwebtoken::get_current_timestamp() + 600,
        };
        let key = EncodingKey::from_secret(self.secret.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap_or_default()
    }

    /// A request to `path` as the manifest writes it (`/todos/42`): the
    /// tenant's prefix is added.
    pub fn request(&self, method: reqwest::Method, path: &str) -> Call {
        let url = format!("{}/{}{path}", self.base, self.tenant);
        Call(self.client.request(method, url))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Call {
        self.request(reqwest::Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> Call {
        self.request(reqwest::Method::POST, path)
    }

    /// `PUT path`.
    pub fn put(&self, path: &str) -> Call {
        self.request(reqwest::Method::PUT, path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Call {
        self.request(reqwest::Method::DELETE, path)
    }

    /// The committed document at `key` of the tenant's `collection`, as JSON.
    pub async fn document(&self, collection: &str, key: &str) -> Result<Option<Value>, KitError> {
        let stored =
            (self.store.get_document(&self.tenant, collection, key).await).map_err(seed)?;
        Ok((stored.and_then(|d| d.value)).and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Writes `value` at `key` of the tenant's `collection`, committed as a
    /// function's write is (through the host's committer: versions, storage
    /// usage and the collection's events follow), to set a test up.
    pub async fn put_document(
        &self,
        collection: &str,
        key: &str,
        value: &Value,
    ) -> Result<(), KitError> {
        let mut staging = Staging::new(Limits::default());
        let key = DocKey {
            collection: collection.to_owned(),
            key: key.to_owned(),
        };
        (staging.write(key, StagedWrite::Put(value.to_string()))).map_err(seed)?;
        self.commit(staging).await
    }

    /// The committed blob `name` of the tenant, whole.
    pub async fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, KitError> {
        let Some((blob, source)) =
            (self.store.open_blob(&self.tenant, name).await).map_err(seed)?
        else {
            return Ok(None);
        };
        let bytes = source.read(0, blob.size).await.map_err(seed)?;
        Ok(Some(bytes))
    }

    /// Stores `bytes` as the tenant's blob `name`, committed as a
    /// function's `blobs::put` is, to set a test up.
    pub async fn put_blob(
        &self,
        name: &str,
        content_type: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<(), KitError> {
        let files = self.store.files();
        let staged = (files
            .stage_bytes(&self.tenant, content_type, bytes.into())
            .await)
            .map_err(seed)?;
        let size = staged.size;
        let mut staging = Staging::new(Limits::default());
        (staging.write_blob(name.to_owned(), StagedBlob::Put(Arc::new(staged)), size))
            .map_err(seed)?;
        self.commit(staging).await
    }

    /// The tenant's cache entry `key`, as its functions would read it.
    pub fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, KitError> {
        let cache = self.runtime.cache(&Arc::from(self.tenant.as_str()));
        cache.get(key).map_err(seed)
    }

    /// Sets the tenant's cache entry `key` for `ttl` (or until evicted).
    pub fn cache_set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KitError> {
        let cache = self.runtime.cache(&Arc::from(self.tenant.as_str()));
        (cache.set(key, value, ttl)).map_err(seed)
    }

    /// Sets the tenant's configuration value `name` (a secret when
    /// `secret`), as `sluice tenant config set` would: the functions read
    /// it with `sluice_sdk::config::get`.
    pub async fn set_config(&self, name: &str, value: &str, secret: bool) -> Result<(), KitError> {
        let new = NewConfig {
            tenant: &self.tenant,
            function: None,
            name,
            value,
            secret,
        };
        match self.store.set_config(&new, "sluice-test").await {
            Ok(true) => Ok(()),
            Ok(false) => Err(seed(format!("no tenant {}", self.tenant))),
            Err(e) => Err(seed(e)),
        }
    }

    /// Moves the wall clock the functions see (`SystemTime::now()` in a
    /// guest) forward by `by`, and the time of the ticks [`TestHost::tick`]
    /// fires with it: expiry and schedule logic is tested without sleeping.
    /// The host's own timers (leases, backoff, cache expiry) keep real time.
    pub fn advance_clock(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.runtime.shift_clock(by);
    }

    /// The time the functions see: now, plus what [`TestHost::advance_clock`] added.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::milliseconds(self.runtime.shift_clock(0))
    }

    /// Makes the next `n` commits that read or wrote a document fail as
    /// conflicts, as if another request had changed what they read: the
    /// host runs their function again on a fresh instance, as it does in
    /// production, and the test sees what a re-run does.
    pub fn conflict_next_commits(&self, n: u32) {
        self.store.committer().inject_conflicts(n);
    }

    /// Fires a tick of the schedule `name` now, as the host's schedule
    /// runner does when the cron is due (the schedule's next tick stays as
    /// it was); [`TestHost::deliver_all`] then waits for it to be handled.
    pub async fn tick(&self, name: &str) -> Result<(), KitError> {
        let db = &self.db;
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT function, next_tick FROM schedules WHERE tenant = $1 AND name = $2",
        )
        .bind(&self.tenant)
        .bind(name)
        .fetch_optional(db)
        .await?;
        let (function, next) =
            row.ok_or_else(|| KitError::Seed(format!("the manifest has no schedule {name:?}")))?;
        let now = self.now();
        let payload = serde_json::json!({
            "schedule": name,
            "tick": now.to_rfc3339(),
            "tick_ms": now.timestamp_millis(),
            "missed": 0,
        });
        let tick = Tick {
            tenant: self.tenant.as_str().into(),
            function: function.into(),
            name: name.to_owned(),
            expect_next: next,
            next,
            fired: Some((now.timestamp_millis(), payload.to_string().into_bytes())),
        };
        match self.store.tick(tick).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(KitError::Seed(format!(
                "the schedule {name:?} ticked meanwhile; try again"
            ))),
            Err(e) => Err(KitError::Seed(e.to_string())),
        }
    }

    /// Commits `staging` as a function's invocation would be.
    async fn commit(&self, staging: Staging) -> Result<(), KitError> {
        let request = CommitRequest {
            staging,
            record: InvocationRecord {
                request_id: format!("sluice-test-{}", uuid::Uuid::now_v7()),
                tenant: self.tenant.as_str().into(),
                function: "sluice-test".into(),
                route: "sluice-test".into(),
                status: 200,
                outcome: Outcome::Ok,
                exceeded: None,
                attempts: 1,
                duration_us: 0,
                stages: Default::default(),
            },
            delivery: None,
            hops: 0,
            trace: None,
        };
        match self.store.committer().commit(request).await {
            Ok(CommitOutcome::Committed) => Ok(()),
            Ok(other) => Err(KitError::Seed(format!("{other:?}"))),
            Err(e) => Err(KitError::Seed(e.to_string())),
        }
    }

    /// The tenant's invocation records, newest first: every request and
    /// message run, with its route, status, outcome and how many times
    /// the function ran (more than once after a conflict).
    pub async fn invocations(&self) -> Result<Vec<Invocation>, KitError> {
        // Records of invocations that staged nothing are written in the background.
        self.store.committer().flush().await;
        let filter = InvocationFilter {
            tenant: Some(self.tenant.clone()),
            ..InvocationFilter::default()
        };
        (self.store.invocations(&filter, 1000).await).map_err(seed)
    }

    /// The messages committed to `topic` of the tenant so far, oldest
    /// first: what functions sent (and document events and ticks), whether
    /// delivered yet or not.
    pub async fn messages(&self, topic: &str) -> Result<Vec<SentMessage>, KitError> {
        let db = &self.db;
        let rows: Vec<(Vec<u8>, Option<String>)> = sqlx::query_as(
            "SELECT payload, idempotency_key FROM outbox WHERE tenant = $1 AND topic = $2 ORDER BY id",
        )
        .bind(&self.tenant)
        .bind(topic)
        .fetch_all(db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(payload, idempotency_key)| SentMessage {
                json: serde_json::from_slice(&payload).unwrap_or(Value::Null),
                payload,
                idempotency_key,
            })
            .collect())
    }

    /// Messages and document events waiting for delivery.
    pub async fn pending_messages(&self) -> Result<i64, KitError> {
        let db = &self.db;
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE tenant = $1")
            .bind(&self.tenant)
            .fetch_one(db)
            .await?;
        Ok(pending)
    }

    /// Waits until every message and event sent so far has been delivered
    /// and its consumer's effects committed (or dead-lettered).
    pub async fn deliver_all(&self) -> Result<(), KitError> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.pending_messages().await? > 0 {
            if tokio::time::Instant::now() > deadline {
                return Err(KitError::Timeout("the messages to be delivered"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stops the host: requests in flight finish, commits flush.
    pub async fn stop(mut self) {
        self.db.close().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(PATIENCE, task).await;
        }
    }
}

/// A request being made; [`Call::send`] sends it.
pub struct Call(reqwest::RequestBuilder);

impl Call {
    /// Sends `token` as the bearer token.
    pub fn token(self, token: &str) -> Self {
        Self(self.0.bearer_auth(token))
    }

    /// Sends `value` as the JSON body.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        Self(self.0.json(value))
    }

    /// Sends `bytes` as the body, with `content_type`.
    pub fn body(self, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self(
            self.0
                .header("content-type", content_type)
                .body(bytes.into()),
        )
    }

    /// Adds a header.
    pub fn header(self, name: &str, value: &str) -> Self {
        Self(self.0.header(name, value))
    }

    /// Sends it and reads the whole answer.
    pub async fn send(self) -> Result<Reply, KitError> {
        let response = self.0.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            json,
            body,
        })
    }
}

/// A message committed to a topic.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// Its payload as JSON (`Null` when it is not JSON).
    pub json: Value,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The sender's idempotency key, if it gave one.
    pub idempotency_key: Option<String>,
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The header `name`, or `""`.
    pub fn header(&self, name: &str) -> &str {
        (self.headers.get(name).and_then(|v| v.to_str().ok())).unwrap_or("")
    }
}

/// Builds the crate in `dir` for wasm32-wasip2 in the `guest` profile (as
/// `sluice deploy` does); returns its component.
fn build(dir: &Path) -> Result<PathBuf, KitError> {
    let failed = |e: &dyn std::fmt::Display| KitError::Build(e.to_string());
    let manifest = dir.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "--target", "wasm32-wasip2", "--profile", "guest"]);
    for setting in sluice_host::config::GUEST_PROFILE_CONFIG {
        command.args(["--config", setting]);
    }
    let out = command
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| failed(&e))?;
    if !out.status.success() {
        return Err(KitError::Build(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let manifest = std::fs::canonicalize(&manifest).map_err(|e| failed(&e))?;
    let wasm = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            KitError::Build(format!(
                "{} made no component: is it a cdylib?",
                manifest.display()
            ))
        })?;
    Ok(wasm)
}

/// Writes the crate's `sluice.toml`, its component set to `wasm`, into a
/// functions directory under `data`, with the schemas and examples its
/// routes name; returns its tenant.
fn stage_manifest(dir: &Path, wasm: &Path, data: &Path) -> Result<String, KitError> {
    let failed = |e: &dyn std::fmt::Display| KitError::Start(e.to_string());
    let text = std::fs::read_to_string(dir.join("sluice.toml")).map_err(|e| failed(&e))?;
    let mut manifest: toml::Table = toml::from_str(&text).map_err(|e| failed(&e))?;
    let tenant = (manifest.get("tenant").and_then(|t| t.as_str()))
        .ok_or_else(|| KitError::Start("sluice.toml names no tenant".into()))?
        .to_owned();
    manifest.insert("component".into(), wasm.display().to_string().into());
    let staged = data.join("functions/function");
    std::fs::create_dir_all(&staged).map_err(|e| failed(&e))?;
    let text = toml::to_string(&manifest).map_err(|e| failed(&e))?;
    std::fs::write(staged.join("sluice.toml"), text).map_err(|e| failed(&e))?;
    for file in sluice_host::config::manifest::route_files(&manifest) {
        let to = staged.join(&file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed(&e))?;
        }
        std::fs::copy(dir.join(&file), to).map_err(|e| failed(&e))?;
    }
    Ok(tenant)
}

/// What went wrong setting a test up (or reading its state).
fn seed(e: impl std::fmt::Display) -> KitError {
    KitError::Seed(e.to_string())
}
