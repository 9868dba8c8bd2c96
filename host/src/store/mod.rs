//! The data layer: the only code that talks to the database, and what a
//! function's invocation stages for it.
//!
//! Reads go through a pool of read-only connections; every write of an
//! invocation goes through the [`Committer`], one task owning one
//! connection, which commits many invocations' staged changes in one
//! transaction (group commit). An invocation stages its writes in a
//! [`Staging`] area first; the per-tenant [`cache`] is the one store that is
//! not transactional.

mod blobs;
pub mod cache;
mod commit;
mod documents;
mod files;
mod functions;
mod invocations;
mod lite_reads;
mod locks;
mod notices;
mod operator_keys;
mod queue;
mod sealing;
pub mod staging;
mod tenant_config;
mod tenants;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, QueryBuilder};
use tokio::sync::Notify;

pub use blobs::StoredBlob;
pub use commit::{CommitError, CommitOutcome, CommitRequest, CommitTrace, Committer};
pub use documents::StoredDocument;
pub use files::{BlobSource, BucketError, ByteStream, Files, Repair, StagedFile, StagedWriter};
pub use functions::{DeployedFunction, NewVersion, StoredVersion, VersionInfo};
pub use invocations::{InvocationFilter, InvocationRecord, InvocationRow, Outcome, StageTimes};
pub use notices::{DocumentLock, Notice, Notices};
pub use operator_keys::OperatorKey;
pub use queue::{
    Claim, DeadLetter, DeadLetterFilter, DeliveryEnd, Depth, Due, Lease, ScheduleRow,
    Subscriptions, Tick,
};
pub use sealing::{SealError, SecretKeys};
pub use staging::Staging;
pub use tenant_config::{
    ConfigEntry, ConfigError, ConfigValue, Configs, NewConfig, Resealed, TenantConfig,
};
pub use tenants::{StorageQuotas, Tenant, TenantQuota};

use crate::config::{DatabaseConfig, QueueConfig, Synchronous};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file: the embedded default, one host per file.
    Sqlite,
    /// A PostgreSQL database, which several hosts can share.
    Postgres,
}

impl Backend {
    /// The backend `url` names, if this build has it.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    fn of_connection(conn: &AnyConnection) -> Self {
        if conn.backend_name() == "PostgreSQL" {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

/// A usage row for this process's committer, one of 1,024.
fn usage_shard() -> i64 {
    let mut bytes = [0; 2];
    // Without randomness every node shares row 0: correct, only slower.
    let _ = getrandom::fill(&mut bytes);
    i64::from(u16::from_ne_bytes(bytes) % 1024)
}

/// Builds `q` for `backend`: with `$N` placeholders for PostgreSQL, which
/// refuses the `?` the `Any` driver's builder writes; SQLite keeps the `?`.
/// (sqlx's SQLite driver looks every named parameter up by a linear scan
/// when it binds, so `$N` makes a multi-row statement quadratic in its
/// rows: a batch of 1,000 records took most of a core.)
fn build(
    q: &mut QueryBuilder<Any>,
    backend: Backend,
) -> Result<Query<'static, Any, AnyArguments>, sqlx::Error> {
    use sqlx::Execute;
    let built = q.sql();
    if backend == Backend::Sqlite {
        let sql = built.as_str().to_owned();
        let arguments = q.build().take_arguments().map_err(sqlx::Error::Encode)?;
        return Ok(sqlx::query_with(
            sqlx::AssertSqlSafe(sql),
            arguments.unwrap_or_default(),
        ));
    }
    let mut sql = String::with_capacity(built.as_str().len() + 16);
    // Our SQL has no `?` in literals or identifiers: every one is a bind.
    for (n, part) in built.as_str().split('?').enumerate() {
        if n > 0 {
            sql.push('$');
            sql.push_str(&n.to_string());
        }
        sql.push_str(part);
    }
    let arguments = q.build().take_arguments().map_err(sqlx::Error::Encode)?;
    Ok(sqlx::query_with(
        sqlx::AssertSqlSafe(sql),
        arguments.unwrap_or_default(),
    ))
}

/// How the committer connects.
#[derive(Clone)]
pub(crate) struct Writer {
    options: AnyConnectOptions,
    synchronous: Synchronous,
}

/// Opens and prepares the committer's connection.
async fn connect_writer(writer: &Writer) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = AnyConnection::connect_with(&writer.options).await?;
    prepare(&mut conn, writer.synchronous).await?;
    Ok(conn)
}

/// Connection settings the URL cannot carry, run on every new connection.
async fn prepare(conn: &mut AnyConnection, synchronous: Synchronous) -> Result<(), sqlx::Error> {
    if Backend::of_connection(conn) == Backend::Sqlite {
        conn.execute(sqlx::AssertSqlSafe(sqlite_pragmas(synchronous)))
            .await?;
    }
    Ok(())
}

/// The settings every SQLite connection of the host runs with.
fn sqlite_pragmas(synchronous: Synchronous) -> String {
    let synchronous = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    format!(
        "PRAGMA busy_timeout = 10000; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON"
    )
}

/// Rows per multi-row statement; keeps well under SQLite's 32766 bound variables.
const CHUNK: usize = 1_000;

/// A database failure, with the driver's message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names a database this build cannot use.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The driver failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A batched read failed.
    #[error("read failed: {0}")]
    Read(String),
    /// The database file could not be opened for writing.
    #[error("cannot open the database for writing: {0}")]
    Open(String),
    /// The blob storage could not be read or written.
    #[error("blob storage: {0}")]
    Files(String),
    /// The blob storage's settings are wrong.
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// Where the reads on the request and delivery paths run.
#[derive(Clone)]
enum HotReads {
    /// SQLite: on the calling thread, no handoff.
    Lite(Arc<lite_reads::LiteReads>),
    /// PostgreSQL: concurrent point reads share one statement on the pool.
    Pool(documents::PointReads),
}

/// The database: a read pool and the committer.
#[derive(Clone)]
pub struct Store {
    reads: AnyPool,
    /// For the rare writes made outside the committer (operator keys, tenants, deploys).
    writes: AnyPool,
    /// Sessions holding cluster-wide document locks (PostgreSQL only),
    /// opened when contention first needs them.
    locks: Option<AnyPool>,
    backend: Backend,
    url: String,
    hot: HotReads,
    committer: Committer,
    subscriptions: Arc<Subscriptions>,
    ready: Arc<Notify>,
    depth: Arc<Depth>,
    max_pending: i64,
    storage_quotas: Arc<StorageQuotas>,
    files: Arc<Files>,
    configs: Arc<Configs>,
}

impl Store {
    /// Opens (creating if needed) the database at `url`, runs the migrations
    /// and starts the committer; blob bytes live in `files`, and tenants'
    /// secrets are sealed with `secrets`.
    pub async fn open(
        url: &str,
        files: Files,
        config: &DatabaseConfig,
        queue: &QueueConfig,
        secrets: SecretKeys,
    ) -> Result<Self, StoreError> {
        let backend = Backend::of(url)
            .ok_or_else(|| StoreError::UnsupportedUrl(crate::config::redact_url(url)))?;
        sqlx::any::install_default_drivers();
        let synchronous = config.synchronous;
        let options = |url: &str| -> Result<AnyConnectOptions, sqlx::Error> {
            Ok(AnyConnectOptions::from_str(url)?.log_statements(tracing::log::LevelFilter::Trace))
        };
        // A database that is down fails a caller within this, instead of
        // sqlx's default 30 s of retried connects.
        let acquire = std::time::Duration::from_millis(config.acquire_timeout_ms.max(1));
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max.max(1))
                .acquire_timeout(acquire)
                .after_connect(move |conn, _| {
                    Box::pin(async move { prepare(conn, synchronous).await })
                })
        };
        let (writer_url, reads_url) = match backend {
            // The file is created if missing; readers open it read-only.
            Backend::Sqlite => (with_param(url, "mode=rwc"), with_param(url, "mode=ro")),
            Backend::Postgres => {
                let named = with_param(
                    url,
                    &format!("application_name={}", application_name(config)),
                );
                (named.clone(), named)
            }
        };
        let writer_options = Writer {
            options: options(&writer_url)?,
            synchronous,
        };
        let mut writer = connect_writer(&writer_options).await?;
        match backend {
            Backend::Sqlite => {
                writer.execute("PRAGMA journal_mode = WAL").await?;
                sqlx::migrate!("./migrations/sqlite")
                    .run(&mut writer)
                    .await?;
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&mut writer)
                    .await?;
            }
        }
        let reads = pool(config.read_connections)
            .connect_with(options(&reads_url)?)
            .await?;
        let writes = pool(4).connect_with(options(&writer_url)?).await?;
        let locks = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(pool(16).connect_lazy_with(options(&writer_url)?)),
        };
        let subscriptions = Arc::new(Subscriptions::default());
        let ready = Arc::new(Notify::new());
        let window_ms =
            i64::try_from(queue.idempotency_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let depth = Arc::new(Depth::default());
        depth.replace(queue::count_pending(&mut writer).await?);
        let storage_quotas = Arc::new(StorageQuotas::default());
        let files = Arc::new(files);
        let context = Arc::new(commit::Context {
            files: files.clone(),
            subscriptions: subscriptions.clone(),
            ready: ready.clone(),
            window_ms,
            depth: depth.clone(),
            storage_quotas: storage_quotas.clone(),
            writer: writer_options,
            usage_shard: usage_shard(),
        });
        let (db, hot) = match backend {
            Backend::Postgres => (
                commit::Db::Pg(writer),
                HotReads::Pool(documents::PointReads::start(
                    reads.clone(),
                    backend,
                    config.read_connections,
                )),
            ),
            // sqlx's connection made the file and ran the migrations; the
            // committer writes on a connection of its own thread, and the
            // hot reads run on read-only connections of the same file.
            Backend::Sqlite => {
                writer.close().await?;
                let path = sqlite_path(url)?;
                let keep = usize::try_from(config.read_connections).unwrap_or(1);
                let hot = HotReads::Lite(Arc::new(lite_reads::LiteReads::open(&path, keep)?));
                let db =
                    commit::Db::sqlite(path, synchronous, &context).map_err(StoreError::Open)?;
                (db, hot)
            }
        };
        Ok(Self {
            hot,
            reads,
            writes,
            locks,
            backend,
            url: writer_url.clone(),
            committer: Committer::start(db, config.max_batch.max(1), context),
            subscriptions,
            ready,
            depth,
            max_pending: i64::try_from(queue.max_pending_per_tenant).unwrap_or(i64::MAX),
            storage_quotas,
            files,
            configs: Arc::new(Configs::new(secrets)),
        })
    }

    /// The deliveries `tenant` has waiting, when they have reached
    /// `queue.max_pending_per_tenant`: its sends are refused until its
    /// consumers catch up.
    pub fn queue_full(&self, tenant: &str) -> Option<i64> {
        let pending = self.depth.get(tenant);
        (pending >= self.max_pending).then_some(pending)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Counts every tenant's waiting deliveries again: on a shared database
    /// other nodes add and remove them too.
    pub async fn recount_pending(&self) -> Result<(), StoreError> {
        self.depth.replace(queue::count_pending(&self.reads).await?);
        Ok(())
    }

    /// The committer, through which every write goes.
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Tenants' `max_stored_bytes`; the committer refuses writes past them.
    pub fn storage_quotas(&self) -> &StorageQuotas {
        &self.storage_quotas
    }

    /// The tenants' blob directories.
    pub fn files(&self) -> &Arc<Files> {
        &self.files
    }

    /// Who receives which topic; the committer fans messages out by it.
    pub fn subscriptions(&self) -> &Arc<Subscriptions> {
        &self.subscriptions
    }

    /// Notified after a commit that added deliveries or gave one a new due time.
    pub fn deliveries_ready(&self) -> &Notify {
        &self.ready
    }

    /// A connection for the rare writes made outside the committer
    /// (operator keys, tenants, deploys).
    async fn admin_connection(&self) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        Ok(self.writes.acquire().await?)
    }

    /// Waits until everything handed to the committer so far is committed,
    /// and closes the read pool.
    pub async fn close(self) {
        self.committer.flush().await;
        self.reads.close().await;
    }
}

/// `SELECT {columns} FROM documents` for the documents at `keys`, given as
/// (tenant, collection, key): one statement for many documents, the way both
/// the committer's version check and the batched point reads look rows up.
fn select_documents<'a>(
    columns: &str,
    keys: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> QueryBuilder<Any> {
    let mut q = QueryBuilder::new(format!(
        "SELECT {columns} FROM documents WHERE (tenant, collection, key) IN ("
    ));
    let mut list = q.separated(", ");
    for (tenant, collection, key) in keys {
        list.push("(")
            .push_bind_unseparated(tenant)
            .push_unseparated(", ")
            .push_bind_unseparated(collection)
            .push_unseparated(", ")
            .push_bind_unseparated(key)
            .push_unseparated(")");
    }
    q.push(")");
    q
}

/// `url` with `param` added to its query string (unless it has one already).
fn with_param(url: &str, param: &str) -> String {
    let key = param.split('=').next().unwrap_or(param);
    if url.contains(&format!("{key}=")) {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

/// What the host's PostgreSQL connections call themselves: the configured
/// name, else `sluice/<hostname>`, made safe for a URL's query.
fn application_name(config: &DatabaseConfig) -> String {
    let name = config.application_name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        format!("sluice/{host}")
    });
    percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The path of an SQLite database URL (`sqlite://PATH`, `sqlite:PATH`),
/// without its query string.
fn sqlite_path(url: &str) -> Result<std::path::PathBuf, StoreError> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    Ok(options.get_filename().to_path_buf())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn sqlite_urls_give_their_paths() {
        let path = |url| sqlite_path(url).expect("url");
        assert_eq!(
            path("sqlite:///tmp/a.db?mode=rwc"),
            PathBuf::from("/tmp/a.db")
        );
        assert_eq!(path("sqlite://rel/b.db"), PathBuf::from("rel/b.db"));
        assert_eq!(path("sqlite:c.db"), PathBuf::from("c.db"));
    }
}
