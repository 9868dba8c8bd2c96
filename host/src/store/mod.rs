//! The data layer: the only code that talks to the database.
//!
//! Reads go through a pool of read-only connections; every write goes through
//! the [`Committer`], one task owning one connection, which commits many
//! invocations' staged changes in one transaction (group commit).

mod admin;
mod blobs;
mod committer;
mod documents;
mod files;
mod functions;
mod queue;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::Notify;

pub use admin::{Invocation, OperatorKey, Tenant, TenantQuota};
pub use blobs::StoredBlob;
pub use committer::{
    CommitError, CommitOutcome, CommitRequest, Committer, InvocationRecord, StorageQuotas,
};
pub use documents::StoredDocument;
pub use files::{Files, Repair, StagedFile, StagedWriter, TenantDir};
pub use functions::{DeployedFunction, NewVersion, StoredVersion, VersionInfo};
pub use queue::{
    Claim, DeadLetter, DeadLetterFilter, DeliveryEnd, Depth, Due, Lease, ScheduleRow,
    Subscriptions, Tick,
};

use crate::config::{DatabaseConfig, QueueConfig, Synchronous};
use committer::Op;

/// Starts a write transaction that takes the write lock at once. A deferred
/// one that reads first fails without waiting (`SQLITE_BUSY_SNAPSHOT`) when
/// another connection commits before its first write: the committer and the
/// admin connections write the same file.
async fn begin_write(
    conn: &mut SqliteConnection,
) -> Result<sqlx::Transaction<'_, Sqlite>, sqlx::Error> {
    use sqlx::Connection;
    conn.begin_with("BEGIN IMMEDIATE").await
}

/// Rows per multi-row statement; keeps well under SQLite's 32766 bound variables.
const CHUNK: usize = 1_000;

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
    /// The blob directory could not be read or written.
    #[error("blob storage: {0}")]
    Files(String),
}

/// The database: a read pool and the committer.
#[derive(Clone)]
pub struct Store {
    reads: SqlitePool,
    point_reads: documents::PointReads,
    committer: Committer,
    subscriptions: Arc<Subscriptions>,
    ready: Arc<Notify>,
    depth: Arc<Depth>,
    max_pending: i64,
    storage_quotas: Arc<StorageQuotas>,
    files: Arc<Files>,
    /// For the rare writes made outside the committer (operator keys, tenants).
    write_options: SqliteConnectOptions,
}

impl Store {
    /// Opens (creating if needed) the database at `url`, runs the migrations
    /// and starts the committer; blob files live under `blobs`.
    pub async fn open(
        url: &str,
        blobs: &Path,
        config: &DatabaseConfig,
        queue: &QueueConfig,
    ) -> Result<Self, StoreError> {
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
            .connect_with(base.clone().read_only(true))
            .await?;
        let subscriptions = Arc::new(Subscriptions::default());
        let ready = Arc::new(Notify::new());
        let window_ms =
            i64::try_from(queue.idempotency_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let depth = Arc::new(Depth::default());
        depth.replace(queue::count_pending(&mut writer).await?);
        let storage_quotas = Arc::new(StorageQuotas::default());
        let files = Arc::new(Files::new(blobs));
        let context = committer::Context {
            files: files.clone(),
            subscriptions: subscriptions.clone(),
            ready: ready.clone(),
            window_ms,
            depth: depth.clone(),
            storage_quotas: storage_quotas.clone(),
        };
        Ok(Self {
            point_reads: documents::PointReads::start(reads.clone(), config.read_connections),
            reads,
            committer: Committer::start(writer, config.max_batch.max(1), context),
            subscriptions,
            ready,
            depth,
            max_pending: i64::try_from(queue.max_pending_per_tenant).unwrap_or(i64::MAX),
            storage_quotas,
            files,
            write_options: base,
        })
    }

    /// The deliveries `tenant` has waiting, when they have reached
    /// `queue.max_pending_per_tenant`: its sends are refused until its
    /// consumers catch up.
    pub fn queue_full(&self, tenant: &str) -> Option<i64> {
        let pending = self.depth.get(tenant);
        (pending >= self.max_pending).then_some(pending)
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
    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    /// Notified after a commit that added deliveries or gave one a new due time.
    pub fn deliveries_ready(&self) -> &Notify {
        &self.ready
    }

    /// Leases those of `claim.ids` still free: (delivery id, lease, attempt).
    pub async fn claim(&self, claim: Claim) -> Result<Vec<(String, Lease, u32)>, CommitError> {
        self.committer.op(|r| Op::Claim(claim, r)).await
    }

    /// Fires or skips a schedule tick; false if another runner already did.
    pub async fn tick(&self, tick: Tick) -> Result<bool, CommitError> {
        self.committer.op(|r| Op::Tick(tick, r)).await
    }

    /// Records the schedules of the loaded manifests; returns their next ticks.
    pub async fn register_schedules(
        &self,
        rows: Vec<ScheduleRow>,
    ) -> Result<Vec<i64>, CommitError> {
        self.committer.op(|r| Op::Register(rows, r)).await
    }

    /// Moves matching dead letters back to the queue; returns how many.
    pub async fn replay_dead_letters(&self, filter: DeadLetterFilter) -> Result<u64, CommitError> {
        self.committer.op(|r| Op::Replay(filter, r)).await
    }

    /// Forgets expired idempotency keys and delivered messages; returns how many messages went.
    pub async fn collect_garbage(&self) -> Result<u64, CommitError> {
        self.committer.op(Op::Collect).await
    }

    /// Gives back the leases of deliveries that never started.
    pub async fn release(&self, leases: Vec<Lease>) -> Result<u64, CommitError> {
        self.committer.op(|r| Op::Release(leases, r)).await
    }

    /// Frees every lease. Only for a host that owns the database alone, at start-up.
    pub async fn release_leases(&self) -> Result<u64, CommitError> {
        self.committer.op(Op::ReleaseLeases).await
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
