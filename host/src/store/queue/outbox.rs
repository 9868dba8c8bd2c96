//! The outbox: one row per message sent, and one delivery per subscriber,
//! written in the committer's transaction. The SQL here is PostgreSQL's;
//! SQLite's is `commit/lite.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use super::Subscriptions;
use crate::store::{Backend, CHUNK};

/// A message about to enter the outbox.
#[derive(Debug, Clone)]
pub(in crate::store) struct NewMessage {
    pub tenant: Arc<str>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    pub available_at: i64,
    pub request_id: String,
    /// Deliver to this function only (schedule ticks), not to the topic's subscribers.
    pub to: Option<Arc<str>>,
    /// Consumer runs that led to it (see `CommitRequest::hops`).
    pub hops: u32,
    /// The `traceparent` of the invocation that sent it, when traces are on.
    pub trace: Option<String>,
}

/// Inserts `messages` and one delivery per subscriber. A message whose
/// idempotency key was used on its topic within `window_ms` is dropped.
/// Adds the deliveries created to `deltas`, per tenant.
pub(in crate::store) async fn enqueue(
    conn: &mut AnyConnection,
    messages: Vec<NewMessage>,
    subscriptions: &Subscriptions,
    deltas: &mut HashMap<Arc<str>, i64>,
    window_ms: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    // Keys older than the window no longer count: forget them first.
    for m in messages.iter().filter(|m| m.idempotency_key.is_some()) {
        sqlx::query(
            "UPDATE outbox SET idempotency_key = NULL \
             WHERE tenant = $1 AND topic = $2 AND idempotency_key = $3 AND created_at < $4",
        )
        .bind(&*m.tenant)
        .bind(&m.topic)
        .bind(&m.idempotency_key)
        .bind(now.saturating_sub(window_ms))
        .execute(&mut *conn)
        .await?;
    }
    let mut rows: Vec<(String, NewMessage)> = messages
        .into_iter()
        .map(|m| (uuid::Uuid::now_v7().to_string(), m))
        .collect();
    let mut inserted = std::collections::HashSet::new();
    for chunk in rows.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new(
            "INSERT INTO outbox (id, tenant, topic, payload, idempotency_key, available_at, created_at, request_id, hops, trace) ",
        );
        q.push_values(chunk, |mut b, (id, m)| {
            b.push_bind(id.clone())
                .push_bind(m.tenant.to_string())
                .push_bind(m.topic.clone())
                .push_bind(m.payload.clone())
                .push_bind(m.idempotency_key.clone())
                .push_bind(m.available_at)
                .push_bind(now)
                .push_bind(m.request_id.clone())
                .push_bind(i64::from(m.hops))
                .push_bind(m.trace.clone());
        });
        q.push(" ON CONFLICT DO NOTHING RETURNING id");
        for row in crate::store::build(&mut q, Backend::Postgres)?
            .fetch_all(&mut *conn)
            .await?
        {
            inserted.insert(row.get::<String, _>(0));
        }
    }
    rows.retain(|(id, _)| inserted.contains(id));
    let mut deliveries = Vec::new();
    for (id, m) in &rows {
        let targets = targets(m, subscriptions);
        *deltas.entry(m.tenant.clone()).or_default() += targets.len() as i64;
        for function in targets {
            deliveries.push((id, m, function));
        }
    }
    for chunk in deliveries.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new(
            "INSERT INTO deliveries (id, message_id, tenant, function, available_at) ",
        );
        q.push_values(chunk, |mut b, (id, m, function)| {
            b.push_bind(uuid::Uuid::now_v7().to_string())
                .push_bind((*id).clone())
                .push_bind(m.tenant.to_string())
                .push_bind(function.to_string())
                .push_bind(m.available_at);
        });
        crate::store::build(&mut q, Backend::Postgres)?
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The functions a message goes to: its own one (a schedule tick), or its
/// topic's subscribers in its tenant.
pub(in crate::store) fn targets(m: &NewMessage, subscriptions: &Subscriptions) -> Vec<Arc<str>> {
    match &m.to {
        Some(function) => vec![function.clone()],
        None => subscriptions.subscribers(&m.tenant, &m.topic),
    }
}

/// Drops what no one needs any more: idempotency keys and delivered
/// messages older than the window.
pub(in crate::store) async fn collect_garbage(
    conn: &mut AnyConnection,
    window_ms: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let cutoff = now.saturating_sub(window_ms);
    let deleted = sqlx::query(
        "DELETE FROM outbox WHERE created_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = outbox.id) \
         AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.message_id = outbox.id)",
    )
    .bind(cutoff)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(deleted)
}
