//! The data layer: the only code that talks to the database.
//!
//! Reads go through a pool of read-only connections; every write goes through
//! the [`Committer`], one task owning one connection, which commits many
//! invocations' staged changes in one transaction (group commit).

mod committer;
mod documents;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Sqlite, SqliteConnection};

pub use committer::{CommitError, CommitOutcome, CommitRequest, Committer, InvocationRecord};
pub use documents::StoredDocument;

use crate::config::{DatabaseConfig, Synchronous};

/// A database failure, with the driver's message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names a database this build cannot use.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH")]
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
}

/// The database: a read pool and the committer.
#[derive(Clone)]
pub struct Store {
    reads: SqlitePool,
    point_reads: documents::PointReads,
    committer: Committer,
}

impl Store {
    /// Opens (creating if needed) the database at `url`, runs the migrations
    /// and starts the committer.
    pub async fn open(url: &str, config: &DatabaseConfig) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let synchronous = match config.synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        };
        let base = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(10))
            .log_statements(tracing::log::LevelFilter::Trace);
        let mut writer: SqliteConnection = base.clone().create_if_missing(true).connect().await?;
        sqlx::migrate!("./migrations").run(&mut writer).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(config.read_connections.max(1))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self {
            point_reads: documents::PointReads::start(reads.clone(), config.read_connections),
            reads,
            committer: Committer::start(writer, config.max_batch.max(1)),
        })
    }

    /// The committer, through which every write goes.
    pub fn committer(&self) -> &Committer {
        &self.committer
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
) -> QueryBuilder<Sqlite> {
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

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
