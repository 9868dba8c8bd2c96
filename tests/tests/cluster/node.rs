//! Two `sluice serve` processes on one fresh PostgreSQL database, and what
//! the tests ask of them: requests, admin calls and metrics.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sluice_tests::postgres::fresh_database;
use sluice_tests::{HANG_GUARD, Process, Reply, root, sluice_binary};
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

/// One cluster at a time: two nodes and PostgreSQL already fill two cores,
/// and the deploy and schedule tests measure time.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Holds the machine for one test's nodes, as [`Cluster::start`] does.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The test guests: `consumer`, `counter`, `echo`, `probe`, ….
pub fn guests() -> PathBuf {
    root().join("tests/guests")
}

/// One `sluice serve` process.
pub struct Node {
    /// `A` or `B`, for messages.
    pub name: &'static str,
    /// Its public listener, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its admin API, `http://127.0.0.1:PORT`.
    pub admin: String,
    client: reqwest::Client,
    // Dropped before `data`: the process stops before its directory goes.
    process: Process,
    data: TempDir,
}

impl Node {
    /// Starts node `name` on `database`, loading `dirs`, with `extra`
    /// appended to its configuration and `env` added to its environment.
    pub fn start(
        name: &'static str,
        database: &str,
        dirs: &[PathBuf],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let data = TempDir::new()?;
        // The environment, because a top-level key cannot follow the
        // sections of the harness's configuration.
        let mut env = env.to_vec();
        env.push(("SLUICE_DATABASE_URL", database));
        let process = Process::start_with_env(data.path(), dirs, extra, &env)
            .with_context(|| format!("starting node {name}"))?;
        // Logged before the address `start_with_env` waits for.
        let admin = process
            .log()
            .iter()
            .filter(|line| line.contains("admin API listening"))
            .find_map(|line| {
                let rest = line.split("admin=").nth(1)?;
                rest.split_whitespace().next().map(str::to_owned)
            })
            .with_context(|| format!("node {name} logged no admin address"))?;
        Ok(Self {
            name,
            base: process.base.clone(),
            admin: format!("http://{admin}"),
            // Idle connections go before the host's header timeout closes them.
            client: reqwest::Client::builder()
                .timeout(HANG_GUARD)
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            process,
            data,
        })
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    pub fn kill(self) -> Result<()> {
        self.process.kill()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Every line it has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.process.log()
    }

    /// Waits for the process to exit on its own (a fault point aborted it).
    pub async fn exited(&mut self) -> Result<std::process::ExitStatus> {
        self.process.exited().await
    }

    /// Its data directory.
    pub fn data(&self) -> &std::path::Path {
        self.data.path()
    }

    /// A request to the public listener at `path`.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// GET `path` with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply> {
        let mut req = self.request(reqwest::Method::GET, path);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        sluice_tests::send(req).await
    }

    /// POST `body` as JSON to `path` with a bearer token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Result<Reply> {
        let req = self
            .request(reqwest::Method::POST, path)
            .bearer_auth(token)
            .json(body);
        sluice_tests::send(req).await
    }

    /// A request to the admin API at `path`, with operator key `key`.
    pub fn admin(&self, method: reqwest::Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.admin))
            .bearer_auth(key)
    }

    /// The node's `/metrics`, as text.
    pub async fn metrics(&self, key: &str) -> Result<String> {
        let reply = sluice_tests::send(self.admin(reqwest::Method::GET, "/metrics", key)).await?;
        if reply.status != 200 {
            bail!("node {}: /metrics answered {}", self.name, reply.status);
        }
        Ok(String::from_utf8(reply.raw)?)
    }

    /// The node's log so far, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.process.log();
        let from = log.len().saturating_sub(40);
        log[from..].join("\n")
    }
}

/// Two nodes, A then B, on one fresh database.
pub struct Cluster {
    pub a: Node,
    pub b: Node,
    /// The database both use.
    pub database: String,
    // Last: held until both nodes are gone.
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts node A, then node B, each loading `dirs`, with `extra`
    /// appended to both configurations.
    pub async fn start(dirs: &[PathBuf], extra: &str) -> Result<Self> {
        let serial = SERIAL.lock().await;
        let database = fresh_database().await?;
        let a = Node::start("A", &database, dirs, extra, &[])?;
        let b = Node::start("B", &database, dirs, extra, &[])?;
        Ok(Self {
            a,
            b,
            database,
            _serial: serial,
        })
    }

    /// Starts one more node on the cluster's database (C, D, …).
    pub fn another(&self, name: &'static str, dirs: &[PathBuf], extra: &str) -> Result<Node> {
        Node::start(name, &self.database, dirs, extra, &[])
    }

    /// [`Cluster::another`] with `env` added to the process's environment.
    pub fn another_with_env(
        &self,
        name: &'static str,
        dirs: &[PathBuf],
        extra: &str,
        env: &[(&str, &str)],
    ) -> Result<Node> {
        Node::start(name, &self.database, dirs, extra, env)
    }

    /// Runs `sluice ARGS` against node A's admin API with operator key `key`.
    pub fn cli(&self, key: &str, args: &[&str]) -> Result<()> {
        let output = Command::new(sluice_binary()?)
            .arg("--data-dir")
            .arg(self.a.data.path())
            .args(["--admin-url", &self.a.admin, "--key", key])
            .args(args)
            .output()?;
        if !output.status.success() {
            bail!(
                "sluice {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// A new operator key, made with `sluice key create` on the database.
    pub fn operator_key(&self) -> Result<String> {
        let output = Command::new(sluice_binary()?)
            .arg("--data-dir")
            .arg(self.a.data.path())
            .args(["--database-url", &self.database])
            .args(["key", "create", "--name", "cluster-tests"])
            .output()?;
        if !output.status.success() {
            bail!(
                "sluice key create failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_owned())
    }
}

/// The value of series `series` (name and labels, as rendered) in the
/// Prometheus text `metrics`; 0 when absent, as a gauge without rows is.
pub fn sample(metrics: &str, series: &str) -> Result<f64> {
    for line in metrics.lines() {
        if let Some(value) = line.strip_prefix(series).and_then(|v| v.strip_prefix(' ')) {
            return value
                .trim()
                .parse()
                .with_context(|| format!("metric line {line:?}"));
        }
    }
    Ok(0.0)
}
