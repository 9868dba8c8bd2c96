//! Persist: commit what the function staged — document writes, outbox
//! messages and the invocation record — in one transaction, or nothing.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::staging::{DocKey, Staging};
use crate::store::{
    CommitError, CommitOutcome, CommitRequest, DocumentLock, InvocationRecord, Store,
};

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
        exceeded: None,
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
            staging,
            record,
            delivery: None,
        })
        .await
}

/// Queues the record of an invocation whose effects are dropped (an error,
/// a trap) or that had none.
pub async fn record_only(store: &Store, record: InvocationRecord) {
    store
        .committer()
        .submit(CommitRequest {
            staging: Staging::default(),
            record,
            delivery: None,
        })
        .await;
}

/// Serialises the re-runs of invocations that conflicted on the same
/// document. Optimistic concurrency alone lets N clients of one hot document
/// waste O(N²) runs (each round only one wins); re-runs that hold the
/// document's lock read fresh data and commit one after another, so every
/// re-run makes progress. First attempts stay lock-free.
pub struct Contention {
    stripes: Vec<Arc<Mutex<()>>>,
}

impl Default for Contention {
    fn default() -> Self {
        Self {
            stripes: (0..256).map(|_| Arc::new(Mutex::new(()))).collect(),
        }
    }
}

/// Held while an invocation re-runs after a conflict on one document.
pub struct ContentionGuard {
    _local: OwnedMutexGuard<()>,
    _cluster: Option<DocumentLock>,
}

impl Contention {
    /// Waits for the lock that covers `key` of `tenant`: this node's, then,
    /// on a database other nodes share, the cluster's, so re-runs on one
    /// document from every node take turns.
    pub async fn lock(&self, store: &Store, tenant: &str, key: &DocKey) -> ContentionGuard {
        // The same on every node, so all of them lock the same document.
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((
            tenant,
            &key.collection,
            &key.key,
        ));
        let stripe = &self.stripes[(hash % self.stripes.len() as u64) as usize];
        let local = stripe.clone().lock_owned().await;
        // Without it re-runs still commit correctly, only less fairly.
        let cluster = store.lock_document(hash).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no cluster-wide re-run lock; re-running without it");
            None
        });
        ContentionGuard {
            _local: local,
            _cluster: cluster,
        }
    }
}
