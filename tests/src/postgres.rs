//! The PostgreSQL backend for the tests: one throw-away server per run and a
//! fresh database per host.
//!
//! `scripts/test.sh` starts the server once and passes its URL in
//! `SLUICE_TEST_POSTGRES`. A test process started some other way (`cargo
//! test` directly) starts its own with `scripts/postgres.sh` and stops it
//! when the process exits.

use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use sqlx::Connection;

use crate::root;

/// The database the tests run the hosts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the host's data directory (the default).
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// The backend chosen by `SLUICE_TEST_BACKEND` (`sqlite`, the default, or
/// `postgres`).
///
/// # Panics
///
/// On any other value: a typo must not quietly run the suite on SQLite.
pub fn backend() -> Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    *BACKEND.get_or_init(|| {
        match std::env::var("SLUICE_TEST_BACKEND")
            .as_deref()
            .unwrap_or("")
        {
            "" | "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            other => panic!("SLUICE_TEST_BACKEND={other:?}: expected `sqlite` or `postgres`"),
        }
    })
}

/// Tests of what only a host that owns its database does: the PostgreSQL
/// pass leaves them out by name (`scripts/test.sh`'s `--skip`, which the
/// runner counts as filtered out). Run there anyway, such a test fails
/// saying so, rather than passing without having checked anything.
pub fn sqlite_only(why: &str) -> Result<(), String> {
    match backend() {
        Backend::Sqlite => Ok(()),
        Backend::Postgres => Err(format!(
            "this test applies to SQLite only ({why}); the PostgreSQL pass skips it"
        )),
    }
}

/// A server this process started, stopped when the process exits.
struct OwnServer {
    url: String,
    /// The write end of the stdin of a watcher that stops the server at EOF,
    /// i.e. when this process exits, however it exits. Never written.
    _stop_on_exit: ChildStdin,
}

/// The URL of the test PostgreSQL server, `postgres://postgres@127.0.0.1:PORT`,
/// without a database: `SLUICE_TEST_POSTGRES` if set, otherwise a server this
/// process starts on first use. Blocks while it starts (and, on a new
/// machine, while `scripts/postgres.sh` installs PostgreSQL).
pub fn server_url() -> Result<String> {
    if let Ok(url) = std::env::var("SLUICE_TEST_POSTGRES")
        && !url.is_empty()
    {
        return Ok(url);
    }
    // anyhow::Error is not Clone: keep the message, so every test that
    // needs the server fails with the same reason.
    static OWN: OnceLock<Result<OwnServer, String>> = OnceLock::new();
    OWN.get_or_init(|| start_own_server().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map(|server| server.url.clone())
        .map_err(|e| anyhow::anyhow!("starting the test PostgreSQL server: {e}"))
}

/// Starts a server in a temporary directory, and a watcher process that
/// stops it and removes the directory once this process has exited.
fn start_own_server() -> Result<OwnServer> {
    let script = root().join("scripts/postgres.sh");
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "sluice-test-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    // Started first, so that a failed start is cleaned up too. It waits for
    // EOF on its stdin, which comes when this process exits (the pipe is
    // close-on-exec: hosts do not inherit it), and ignores the terminal's
    // signals so that Ctrl-C on the test run still stops the server.
    let mut watcher = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' INT TERM HUP; cat >/dev/null; exec bash "$0" stop "$1""#)
        .arg(&script)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the PostgreSQL watcher")?;
    let stdin = watcher.stdin.take().context("watcher has no stdin")?;
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} start failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = String::from_utf8(out.stdout)?.trim().to_owned();
    if !url.starts_with("postgres://") {
        bail!("{} start printed {url:?}, not a URL", script.display());
    }
    Ok(OwnServer {
        url,
        _stop_on_exit: stdin,
    })
}

/// `server` (a URL without a database) with database `name`; query
/// parameters in `server` are kept.
pub fn database_url(server: &str, name: &str) -> Result<String> {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let (scheme, rest) = base
        .split_once("://")
        .with_context(|| format!("{server:?} is not a URL"))?;
    // Drop a database already named in the URL.
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut url = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        url = format!("{url}?{query}");
    }
    Ok(url)
}

/// Creates a new, empty database `sluice_<uuid>` on the test server and
/// returns its URL. Databases are never dropped: the server is thrown away
/// after the run.
pub async fn fresh_database() -> Result<String> {
    let server = tokio::task::spawn_blocking(server_url).await??;
    sqlx::any::install_default_drivers();
    let name = format!("sluice_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::AnyConnection::connect(&database_url(&server, "postgres")?)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    // CREATE DATABASE cannot run in a transaction: the simple protocol. The
    // name is ours (hex digits), so formatting it in is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await?;
    database_url(&server, &name)
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_the_path_and_keeps_the_query() -> anyhow::Result<()> {
        let server = "postgres://postgres@127.0.0.1:5432";
        assert_eq!(database_url(server, "x")?, format!("{server}/x"));
        assert_eq!(
            database_url("postgres://u:p@h:1/postgres?sslmode=disable", "x")?,
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        Ok(())
    }
}
