//! Persist: commit what the function staged — document writes, outbox
//! messages and the invocation record — in one transaction, or nothing.

use std::sync::Arc;
use std::time::Instant;

use crate::staging::Staging;
use crate::store::{CommitError, CommitOutcome, CommitRequest, InvocationRecord, Store};

use super::receive::RouteTarget;

/// Builds the invocation record of a request to `target`.
pub fn record(
    target: &RouteTarget,
    request_id: &str,
    status: u16,
    outcome: &'static str,
    attempts: u32,
    started: Instant,
) -> InvocationRecord {
    InvocationRecord {
        request_id: request_id.to_owned(),
        tenant: target.function.tenant.clone(),
        function: target.function.name.clone(),
        route: target.name.clone(),
        status,
        outcome,
        attempts,
        duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    }
}

/// Commits `staging` with `record` and waits until it is durable.
///
/// An invocation that staged nothing has nothing to lose: its record is
/// queued for the next batch and the response does not wait for the fsync.
pub async fn commit(
    store: &Store,
    tenant: Arc<str>,
    staging: Staging,
    record: InvocationRecord,
) -> Result<CommitOutcome, CommitError> {
    if staging.is_empty() {
        record_only(store, record).await;
        return Ok(CommitOutcome::Committed);
    }
    store
        .committer()
        .commit(CommitRequest {
            tenant,
            staging,
            record,
        })
        .await
}

/// Queues the record of an invocation whose effects are dropped (an error,
/// a trap) or that had none.
pub async fn record_only(store: &Store, record: InvocationRecord) {
    store
        .committer()
        .submit(CommitRequest {
            tenant: record.tenant.clone(),
            staging: Staging::default(),
            record,
        })
        .await;
}
