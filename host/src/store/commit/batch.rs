//! One batch, in phases: open the write transaction and read what the
//! batch's requests depend on; then, request by request, **check** their
//! reads and leases, **charge** their storage quota, and stage their
//! **rows**, **events** and **blob** changes; then write the rows, run the
//! queue operations, make the blob files visible and commit.
//!
//! Requests are applied in order against the state as the requests before
//! them left it: two requests of one batch that read and wrote the same
//! document conflict exactly as they would in two transactions.
//!
//! On PostgreSQL, where other nodes' committers write at the same time, the
//! batch first takes the locks of everything it reads and writes
//! ([`crate::store::locks`]), so what it reads stays as read until it commits.
//! Nothing here consumes the requests or operations: a transaction that
//! PostgreSQL aborts (a deadlock it broke) runs again from the start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::ops::Answer;
use super::tx::{BlobCurrent, BlobKey, BlobRow, Current, DocRow, FullKey, Tx, TxError};
use super::{CommitOutcome, CommitRequest, Context, Effects, Op};
use crate::config::faults;
use crate::config::names::event_topic;
use crate::store::files::StagedFile;
use crate::store::invocations::InvocationRecord;
use crate::store::locks::{self, Mode, Plan};
use crate::store::now_ms;
use crate::store::queue::{DeliveryEnd, NewMessage};
use crate::store::staging::{DocKey, Parts, StagedBlob, StagedMessage, StagedWrite};

/// One request and its staging's parts.
struct Staged<'a> {
    request: &'a CommitRequest,
    reads: &'a HashMap<DocKey, u64>,
    writes: &'a BTreeMap<DocKey, StagedWrite>,
    messages: &'a [StagedMessage],
    blobs: &'a BTreeMap<String, StagedBlob>,
}

/// Commits `requests` and runs `ops` in `tx`, then commits it; the
/// outcomes are in request order, the operations' answers in `answers`.
/// Nothing is written if it fails.
pub(super) async fn write<'a, T: Tx>(
    mut tx: T,
    requests: impl Iterator<Item = &'a CommitRequest>,
    ops: &[Op],
    answers: &mut Vec<Answer>,
    ctx: &Context,
    effects: &mut Effects,
) -> Result<Vec<CommitOutcome>, TxError> {
    let staged: Vec<Staged<'a>> = requests.map(parts).collect();
    let mut batch = Batch::read(&mut tx, &staged, ctx, now_ms()).await?;
    let outcomes = staged
        .into_iter()
        .map(|s| batch.apply(s, ctx, effects))
        .collect();
    batch.write_rows(&mut tx, ctx, effects).await?;
    for op in ops {
        answers.push(op.run(&mut tx, ctx, effects, batch.now).await?);
    }
    // Staged blob files become visible under the names the rows above
    // give them; until the commit below, no row refers to them, so nothing
    // serves them, and start-up repair deletes them after a crash.
    tx.publish(&batch.publish).await?;
    if !batch.publish.is_empty() && faults::active("blob-commit") {
        tracing::error!(fault = "blob-commit", "SLUICE_FAULT: aborting");
        std::process::abort();
    }
    if let Err(e) = tx.commit().await {
        for file in &batch.publish {
            file.commit_failed(&ctx.files);
        }
        return Err(e);
    }
    for file in &batch.publish {
        file.keep();
    }
    ctx.files.remove_later(batch.replaced);
    Ok(outcomes)
}

fn parts(request: &CommitRequest) -> Staged<'_> {
    let Parts {
        reads,
        writes,
        messages,
        blobs,
    } = request.staging.parts();
    Staged {
        request,
        reads,
        writes,
        messages,
        blobs,
    }
}

/// The committed state the batch's requests depend on, as each applied
/// request changes it, and the rows the batch will write.
struct Batch {
    now: i64,
    /// Documents read or written: version, liveness and size.
    current: HashMap<FullKey, Current>,
    /// Blobs written: their committed file and size.
    blobs_now: HashMap<BlobKey, BlobCurrent>,
    /// Delivery id → lease token, for the deliveries the batch ends.
    leases: HashMap<String, String>,
    /// Bytes stored by each tenant that has a storage quota.
    usage: HashMap<Arc<str>, i64>,
    /// Bytes each tenant's storage grows (or shrinks) by in this batch.
    grown: HashMap<Arc<str>, i64>,
    docs: BTreeMap<FullKey, DocRow>,
    outbox: Vec<NewMessage>,
    records: Vec<InvocationRecord>,
    ends: Vec<DeliveryEnd>,
    blob_rows: BTreeMap<BlobKey, BlobRow>,
    /// Staged blobs to make readable under their ids.
    publish: Vec<Arc<StagedFile>>,
    /// Committed files replaced or deleted: removed once the batch commits.
    replaced: Vec<(Arc<str>, String)>,
}

impl Batch {
    /// Reads, in the write transaction, what `staged` depends on.
    async fn read<T: Tx>(
        tx: &mut T,
        staged: &[Staged<'_>],
        ctx: &Context,
        now: i64,
    ) -> Result<Self, TxError> {
        let mut keys: Vec<FullKey> = Vec::new();
        let mut blob_keys: Vec<BlobKey> = Vec::new();
        for s in staged {
            let tenant = &s.request.record.tenant;
            for DocKey { collection, key } in s.reads.keys().chain(s.writes.keys()) {
                keys.push((tenant.clone(), collection.clone(), key.clone()));
            }
            blob_keys.extend(s.blobs.keys().map(|name| (tenant.clone(), name.clone())));
        }
        keys.sort();
        keys.dedup();
        let lease_ids: Vec<&str> = staged
            .iter()
            .filter_map(|s| s.request.delivery.as_ref())
            .map(|d| d.lease().delivery_id.as_str())
            .collect();
        let mut tenants: Vec<Arc<str>> = staged
            .iter()
            .map(|s| s.request.record.tenant.clone())
            .filter(|t| ctx.storage_quotas.get(t).is_some())
            .collect();
        tenants.sort();
        tenants.dedup();
        if T::SHARED {
            tx.lock(&plan(staged, ctx)).await?;
        }
        Ok(Self {
            now,
            current: tx.current_versions(&keys).await?,
            blobs_now: tx.current_blobs(&blob_keys).await?,
            leases: tx.current_leases(&lease_ids).await?,
            usage: tx.stored_bytes(&tenants).await?,
            grown: HashMap::new(),
            docs: BTreeMap::new(),
            outbox: Vec::new(),
            records: Vec::new(),
            ends: Vec::new(),
            blob_rows: BTreeMap::new(),
            publish: Vec::new(),
            replaced: Vec::new(),
        })
    }

    /// Applies one request: checked, charged, then its rows, events and
    /// blob changes staged for the batch's writes.
    fn apply(&mut self, s: Staged<'_>, ctx: &Context, effects: &mut Effects) -> CommitOutcome {
        let tenant = s.request.record.tenant.clone();
        if let Some(key) = self.stale_read(&tenant, s.reads) {
            return CommitOutcome::Conflict(key);
        }
        if let Some(end) = &s.request.delivery
            && !self.holds_lease(end)
        {
            return CommitOutcome::LeaseLost;
        }
        if let Err(over) = self.charge(&tenant, &s, ctx) {
            return over;
        }
        if let Some(end) = &s.request.delivery {
            self.end_delivery(&tenant, end, effects);
        }
        let from = From {
            request_id: &s.request.record.request_id,
            hops: s.request.hops,
            trace: s.request.trace.as_ref().map(|t| t.traceparent.as_str()),
        };
        self.write_documents(&tenant, s.writes, &from, ctx);
        self.write_blobs(&tenant, s.blobs);
        self.send(&tenant, s.messages, &from);
        self.records.push(s.request.record.clone());
        CommitOutcome::Committed
    }

    /// The first document read whose version changed since it was read.
    fn stale_read(&self, tenant: &Arc<str>, reads: &HashMap<DocKey, u64>) -> Option<DocKey> {
        reads
            .iter()
            .find(|(k, read)| self.version(&full(tenant, k)) != **read as i64)
            .map(|(key, _)| key.clone())
    }

    /// Whether the delivery's runner still holds its lease.
    fn holds_lease(&self, end: &DeliveryEnd) -> bool {
        let lease = end.lease();
        self.leases.get(&lease.delivery_id) == Some(&lease.token)
    }

    /// Counts what the request adds to its tenant's storage, refusing it
    /// past the tenant's quota.
    fn charge(
        &mut self,
        tenant: &Arc<str>,
        s: &Staged<'_>,
        ctx: &Context,
    ) -> Result<(), CommitOutcome> {
        let documents: i64 = s
            .writes
            .iter()
            .map(|(k, write)| {
                let before = self.current.get(&full(tenant, k)).map_or(0, |c| c.size);
                let after = match write {
                    StagedWrite::Put(v) => stored_size(&k.key, v),
                    StagedWrite::Delete => 0,
                };
                after - before
            })
            .sum();
        let blobs: i64 = s
            .blobs
            .iter()
            .map(|(name, blob)| {
                let key = (tenant.clone(), name.clone());
                let before = self.blobs_now.get(&key).map_or(0, |b| b.size);
                let after = match blob {
                    StagedBlob::Put(file) => i64::try_from(file.size).unwrap_or(i64::MAX),
                    StagedBlob::Delete => 0,
                };
                after - before
            })
            .sum();
        let adding = documents + blobs;
        if adding > 0
            && let Some(quota) = ctx.storage_quotas.get(tenant)
        {
            let used = self.usage.get(tenant).copied().unwrap_or(0);
            if used.saturating_add(adding) > i64::try_from(quota).unwrap_or(i64::MAX) {
                return Err(CommitOutcome::OverQuota {
                    used: u64::try_from(used).unwrap_or(0),
                    adding: u64::try_from(adding).unwrap_or(0),
                    quota,
                });
            }
        }
        *self.usage.entry(tenant.clone()).or_default() += adding;
        *self.grown.entry(tenant.clone()).or_default() += adding;
        Ok(())
    }

    /// Ends a delivery whose lease held. The lease is used up: a second
    /// end for it in the same batch loses.
    fn end_delivery(&mut self, tenant: &Arc<str>, end: &DeliveryEnd, effects: &mut Effects) {
        self.leases.remove(&end.lease().delivery_id);
        if matches!(end, DeliveryEnd::Retry { .. }) {
            effects.rescheduled = true;
        } else {
            *effects.deltas.entry(tenant.clone()).or_default() -= 1;
        }
        self.ends.push(end.clone());
    }

    /// Stages document rows at their next versions, and an event for each
    /// change that a subscriber of the collection's events wants.
    fn write_documents(
        &mut self,
        tenant: &Arc<str>,
        writes: &BTreeMap<DocKey, StagedWrite>,
        from: &From<'_>,
        ctx: &Context,
    ) {
        for (k, write) in writes {
            let key = full(tenant, k);
            let before = self.current.get(&key).copied();
            let was_live = before.is_some_and(|c| c.live);
            let version = before.map_or(0, |c| c.version) + 1;
            let (value, kind) = match write {
                StagedWrite::Put(v) => (
                    Some(v.clone()),
                    Some(if was_live { "updated" } else { "created" }),
                ),
                StagedWrite::Delete => (None, was_live.then_some("deleted")),
            };
            self.current.insert(
                key.clone(),
                Current {
                    version,
                    live: value.is_some(),
                    size: value.as_deref().map_or(0, |v| stored_size(&k.key, v)),
                },
            );
            if let Some(kind) = kind
                && ctx.subscriptions.wants_events(tenant, &k.collection)
            {
                self.outbox.push(NewMessage {
                    tenant: tenant.clone(),
                    topic: event_topic(&k.collection, kind),
                    payload: serde_json::json!({
                        "event": kind,
                        "collection": k.collection,
                        "key": k.key,
                        "version": version,
                    })
                    .to_string()
                    .into_bytes(),
                    idempotency_key: None,
                    available_at: self.now,
                    request_id: from.request_id.to_owned(),
                    to: None,
                    hops: from.hops,
                    trace: from.trace.map(str::to_owned),
                });
            }
            self.docs.insert(key, DocRow { value, version });
        }
    }

    /// Stages blob rows; the bytes a put replaces are removed after the
    /// commit.
    fn write_blobs(&mut self, tenant: &Arc<str>, blobs: &BTreeMap<String, StagedBlob>) {
        for (name, blob) in blobs {
            let key = (tenant.clone(), name.clone());
            let before = self.blobs_now.remove(&key);
            if let Some(before) = &before {
                self.replaced.push((tenant.clone(), before.file.clone()));
            }
            match blob {
                StagedBlob::Put(file) => {
                    let now = BlobCurrent {
                        file: file.id().to_owned(),
                        size: i64::try_from(file.size).unwrap_or(i64::MAX),
                    };
                    self.publish.push(file.clone());
                    self.blobs_now.insert(key.clone(), now.clone());
                    self.blob_rows.insert(key, Some((now, file.clone())));
                }
                StagedBlob::Delete if before.is_some() => {
                    self.blob_rows.insert(key, None);
                }
                StagedBlob::Delete => {}
            }
        }
    }

    fn send(&mut self, tenant: &Arc<str>, messages: &[StagedMessage], from: &From<'_>) {
        let now = self.now;
        self.outbox
            .extend(messages.iter().map(|message| NewMessage {
                tenant: tenant.clone(),
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                idempotency_key: message.idempotency_key.clone(),
                available_at:
                    now.saturating_add(i64::try_from(message.delay_ms).unwrap_or(i64::MAX)),
                request_id: from.request_id.to_owned(),
                to: None,
                hops: from.hops,
                trace: from.trace.map(str::to_owned),
            }));
    }

    /// Writes every row the applied requests staged.
    async fn write_rows<T: Tx>(
        &mut self,
        tx: &mut T,
        ctx: &Context,
        effects: &mut Effects,
    ) -> Result<(), TxError> {
        let docs: Vec<_> = std::mem::take(&mut self.docs).into_iter().collect();
        tx.upsert_documents(&docs, self.now).await?;
        let outbox = std::mem::take(&mut self.outbox);
        if !outbox.is_empty() {
            let (subscriptions, deltas) = (&*ctx.subscriptions, &mut effects.deltas);
            tx.enqueue(outbox, subscriptions, deltas, ctx.window_ms, self.now)
                .await?;
        }
        tx.end_deliveries(&self.ends, self.now).await?;
        tx.add_usage(&self.grown, ctx.usage_shard).await?;
        tx.insert_records(&self.records, self.now).await?;
        tx.write_blob_rows(&self.blob_rows, self.now).await
    }

    fn version(&self, key: &FullKey) -> i64 {
        self.current.get(key).map_or(0, |c| c.version)
    }
}

fn full(tenant: &Arc<str>, k: &DocKey) -> FullKey {
    (tenant.clone(), k.collection.clone(), k.key.clone())
}

/// The bytes a live document counts: its key and its value.
fn stored_size(key: &str, value: &str) -> i64 {
    i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX)
}

/// The locks a batch of `staged` takes on a database other nodes write to.
fn plan(staged: &[Staged<'_>], ctx: &Context) -> Plan {
    let mut tenants = Vec::new();
    let mut keys = Vec::new();
    for s in staged {
        let tenant = &*s.request.record.tenant;
        // A tenant with a quota: its usage is read, checked and added to.
        let quota = ctx.storage_quotas.get(tenant).is_some();
        tenants.push((locks::tenant_key(tenant), Mode::exclusive_if(quota)));
        for DocKey { collection, key } in s.reads.keys() {
            keys.push((locks::document_key(tenant, collection, key), Mode::Shared));
        }
        for DocKey { collection, key } in s.writes.keys() {
            keys.push((
                locks::document_key(tenant, collection, key),
                Mode::Exclusive,
            ));
        }
        for name in s.blobs.keys() {
            keys.push((locks::blob_key(tenant, name), Mode::Exclusive));
        }
    }
    Plan::new(tenants, keys)
}

/// What the messages and events of one request carry from it.
struct From<'a> {
    request_id: &'a str,
    hops: u32,
    /// Its `traceparent`, when traces are on.
    trace: Option<&'a str>,
}
