//! The PostgreSQL backend for the tests: one throw-away server per run and a
//! fresh database per host.
//!
//! `scripts/test.sh` starts the server once and passes its URL in
//! `SLUICE_TEST_POSTGRES`. A test process started some other way (`cargo
//! test` directly) starts its own with `scripts/postgres.sh` and stops it
//! when the process exits.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use sqlx::Connection;

use crate::own_server::OwnServer;

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
    static OWN: OnceLock<Result<OwnServer, String>> = OnceLock::new();
    let server = OwnServer::get(&OWN, "postgres.sh", "postgres://")
        .map_err(|e| anyhow::anyhow!("starting the test PostgreSQL server: {e}"))?;
    Ok(server.url.clone())
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

/// A PostgreSQL server of one test's own, which it takes down and brings
/// back on the same port (`scripts/postgres.sh down|up`) to see what an
/// outage does; stopped and removed when dropped.
pub struct OutageServer {
    /// `postgres://postgres@127.0.0.1:PORT`.
    pub url: String,
    dir: std::path::PathBuf,
}

impl OutageServer {
    /// Starts one in a fresh temporary directory.
    pub fn start() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "sluice-outage-pg-{}",
            uuid::Uuid::now_v7().simple()
        ));
        let url = Self::script("start", &dir)?;
        Ok(Self { url, dir })
    }

    /// Stops it (`pg_ctl -m fast`): every connection breaks, commits stay.
    pub fn down(&self) -> Result<()> {
        Self::script("down", &self.dir).map(drop)
    }

    /// Starts it again on the same port and waits until it answers.
    pub fn up(&self) -> Result<()> {
        Self::script("up", &self.dir).map(drop)
    }

    fn script(verb: &str, dir: &std::path::Path) -> Result<String> {
        let out = std::process::Command::new("bash")
            .arg(crate::root().join("scripts/postgres.sh"))
            .arg(verb)
            .arg(dir)
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "postgres.sh {verb}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

impl Drop for OutageServer {
    fn drop(&mut self) {
        let _ = Self::script("stop", &self.dir);
    }
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
