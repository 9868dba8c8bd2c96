//! What a batch and the queue operations beside it ask of the database,
//! inside the committer's one write transaction. Two implementations:
//! [`super::pg`] (PostgreSQL, through sqlx) and [`super::lite`] (SQLite,
//! through rusqlite on the committer's own thread).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use crate::store::files::StagedFile;
use crate::store::invocations::InvocationRecord;
use crate::store::locks::Plan;
use crate::store::queue::{
    Claim, DeadLetterFilter, DeliveryEnd, Lease, NewMessage, ScheduleRow, Subscriptions, Tick,
};

/// A document's address across tenants: (tenant, collection, key).
pub(super) type FullKey = (Arc<str>, String, String);

/// A document row to write: `None` is a tombstone.
pub(super) struct DocRow {
    pub value: Option<String>,
    pub version: i64,
}

/// A document's committed state: its version, whether it is live (not a
/// tombstone) and the bytes it counts against its tenant's storage.
#[derive(Clone, Copy)]
pub(super) struct Current {
    pub version: i64,
    pub live: bool,
    pub size: i64,
}

/// A blob's committed file and size.
#[derive(Clone)]
pub(super) struct BlobCurrent {
    pub file: String,
    pub size: i64,
}

/// A blob row to write: `None` deletes it.
pub(super) type BlobRow = Option<(BlobCurrent, Arc<StagedFile>)>;

/// A blob's address across tenants: (tenant, name).
pub(super) type BlobKey = (Arc<str>, String);

/// Why a statement (or the transaction) failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum TxError {
    /// PostgreSQL, through sqlx.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// SQLite, through rusqlite.
    #[error(transparent)]
    Lite(#[from] rusqlite::Error),
    /// The blob files around the commit.
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
}

/// The committer's open write transaction.
pub(super) trait Tx: Send {
    /// Whether other writers share the database, so a batch must lock what
    /// it touches (PostgreSQL); SQLite's one writer needs no locks.
    const SHARED: bool;

    /// Takes the locks of `plan`, held until the transaction ends.
    fn lock(&mut self, plan: &Plan) -> impl Future<Output = Result<(), TxError>> + Send;

    /// The committed state of each document at `keys` that has a row.
    fn current_versions(
        &mut self,
        keys: &[FullKey],
    ) -> impl Future<Output = Result<HashMap<FullKey, Current>, TxError>> + Send;

    /// The committed file and size of each blob at `keys` that exists.
    fn current_blobs(
        &mut self,
        keys: &[BlobKey],
    ) -> impl Future<Output = Result<HashMap<BlobKey, BlobCurrent>, TxError>> + Send;

    /// The leases held right now among deliveries `ids`: delivery id → token.
    fn current_leases(
        &mut self,
        ids: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, String>, TxError>> + Send;

    /// Bytes stored now by each of `tenants`.
    fn stored_bytes(
        &mut self,
        tenants: &[Arc<str>],
    ) -> impl Future<Output = Result<HashMap<Arc<str>, i64>, TxError>> + Send;

    /// Writes document rows at their new versions.
    fn upsert_documents(
        &mut self,
        docs: &[(FullKey, DocRow)],
        now: i64,
    ) -> impl Future<Output = Result<(), TxError>> + Send;

    /// Inserts `messages` and one delivery per subscriber; a message whose
    /// idempotency key was used on its topic within `window_ms` is dropped.
    /// Adds the deliveries made to `deltas`, per tenant.
    fn enqueue(
        &mut self,
        messages: Vec<NewMessage>,
        subscriptions: &Subscriptions,
        deltas: &mut HashMap<Arc<str>, i64>,
        window_ms: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), TxError>> + Send;

    /// Applies `ends`, whose leases were checked in the same transaction.
    fn end_deliveries(
        &mut self,
        ends: &[DeliveryEnd],
        now: i64,
    ) -> impl Future<Output = Result<(), TxError>> + Send;

    /// Adds what each tenant's stored bytes grew (or shrank) by, to usage
    /// row `shard` where a tenant has several.
    fn add_usage(
        &mut self,
        grown: &HashMap<Arc<str>, i64>,
        shard: i64,
    ) -> impl Future<Output = Result<(), TxError>> + Send;

    /// Inserts invocation records.
    fn insert_records(
        &mut self,
        records: &[InvocationRecord],
        now: i64,
    ) -> impl Future<Output = Result<(), TxError>> + Send;

    /// Writes (or, for `None`, deletes) blob rows.
    fn write_blob_rows(
        &mut self,
        rows: &BTreeMap<BlobKey, BlobRow>,
        now: i64,
    ) -> impl Future<Output = Result<(), TxError>> + Send;

    /// Makes staged blob files visible under their committed names.
    fn publish(
        &mut self,
        files: &[Arc<StagedFile>],
    ) -> impl Future<Output = Result<(), TxError>> + Send;

    /// Leases those of `claim.ids` still free: (delivery id, lease, attempt).
    fn claim(
        &mut self,
        claim: &Claim,
        now: i64,
    ) -> impl Future<Output = Result<Vec<(String, Lease, u32)>, TxError>> + Send;

    /// Fires or skips a schedule tick; false if another runner already did.
    fn tick(
        &mut self,
        tick: &Tick,
        subscriptions: &Subscriptions,
        deltas: &mut HashMap<Arc<str>, i64>,
        now: i64,
    ) -> impl Future<Output = Result<bool, TxError>> + Send;

    /// Records schedules; returns every schedule's next tick.
    fn register_schedules(
        &mut self,
        rows: &[ScheduleRow],
    ) -> impl Future<Output = Result<Vec<i64>, TxError>> + Send;

    /// Moves matching dead letters back to the deliveries; returns how many.
    fn replay(
        &mut self,
        filter: &DeadLetterFilter,
        now: i64,
    ) -> impl Future<Output = Result<u64, TxError>> + Send;

    /// Drops the stored answers to `Idempotency-Key` requests committed
    /// before `before`; the bytes each tenant stores no more (negative).
    fn forget_answers(
        &mut self,
        before: i64,
    ) -> impl Future<Output = Result<HashMap<Arc<str>, i64>, TxError>> + Send;

    /// Drops delivered messages and idempotency keys older than the window.
    fn collect_garbage(
        &mut self,
        window_ms: i64,
        now: i64,
    ) -> impl Future<Output = Result<u64, TxError>> + Send;

    /// Gives back leases of deliveries that never started.
    fn release(&mut self, leases: &[Lease]) -> impl Future<Output = Result<u64, TxError>> + Send;

    /// Frees every lease.
    fn release_leases(&mut self) -> impl Future<Output = Result<u64, TxError>> + Send;

    /// Commits the transaction.
    fn commit(self) -> impl Future<Output = Result<(), TxError>> + Send;
}
