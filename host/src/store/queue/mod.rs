//! The queue's tables: the outbox (one row per message), deliveries (one row
//! per message and subscribed function, leased while it runs), dead letters
//! and schedules. Writes run in the committer's transaction; reads on the
//! read pool.

mod dead_letters;
mod leases;
mod outbox;
pub(in crate::store) mod schedules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use sqlx::{Any, Row};

pub use dead_letters::{DeadLetter, DeadLetterFilter};
pub use leases::{Claim, DeliveryEnd, Lease};
pub use schedules::{ScheduleRow, Tick};

pub(super) use dead_letters::replay;
pub(super) use leases::{claim, current_leases, end_deliveries, release, release_leases};
pub(super) use outbox::{NewMessage, collect_garbage, enqueue, targets};
pub(super) use schedules::{register_schedules, tick, tick_message};

use super::{HotReads, Store, StoreError, now_ms};
use crate::config::names::{EVENT_KINDS, event_topic};

/// (tenant, topic) → the tenant's functions subscribed to it.
type TopicMap = HashMap<(Arc<str>, String), Vec<Arc<str>>>;

/// Which functions of a tenant receive a topic's messages. Shared by the
/// committer (fan-out at commit) and the app (filled from the manifests).
#[derive(Debug, Default)]
pub struct Subscriptions {
    topics: RwLock<TopicMap>,
}

impl Subscriptions {
    /// Replaces every subscription with those of `subscribers`
    /// (`(tenant, function, topics)`): what a new catalog subscribes to.
    pub fn replace_all<'a>(
        &self,
        subscribers: impl IntoIterator<Item = (&'a Arc<str>, &'a Arc<str>, &'a [String])>,
    ) {
        let mut map = TopicMap::new();
        for (tenant, function, topics) in subscribers {
            for topic in topics {
                let functions = map.entry((tenant.clone(), topic.clone())).or_default();
                if !functions.contains(function) {
                    functions.push(function.clone());
                }
            }
        }
        *self.topics.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// The functions of `tenant` subscribed to `topic`; never another tenant's.
    pub fn subscribers(&self, tenant: &Arc<str>, topic: &str) -> Vec<Arc<str>> {
        let map = self.topics.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.clone(), topic.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// True when anything subscribes to events of `collection` in `tenant`.
    pub fn wants_events(&self, tenant: &Arc<str>, collection: &str) -> bool {
        let map = self.topics.read().unwrap_or_else(|e| e.into_inner());
        EVENT_KINDS
            .iter()
            .any(|kind| map.contains_key(&(tenant.clone(), event_topic(collection, kind))))
    }
}

/// Deliveries waiting or running per tenant, kept by the committer: the
/// `queue` import refuses sends of a tenant whose queue is full.
#[derive(Debug, Default)]
pub struct Depth {
    tenants: Mutex<HashMap<String, i64>>,
}

impl Depth {
    /// Deliveries of `tenant` not yet done.
    pub fn get(&self, tenant: &str) -> i64 {
        let map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        map.get(tenant).copied().unwrap_or(0)
    }

    pub(super) fn apply(&self, deltas: &HashMap<Arc<str>, i64>) {
        let mut map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, delta) in deltas {
            let n = map.entry(tenant.to_string()).or_default();
            *n = (*n + delta).max(0);
        }
    }

    pub(super) fn replace(&self, counts: HashMap<String, i64>) {
        *self.tenants.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }
}

/// Pending deliveries per tenant.
pub(in crate::store) const COUNT_PENDING: &str =
    "SELECT tenant, count(*) FROM deliveries GROUP BY tenant";

/// Deliveries per tenant, counted.
pub(super) async fn count_pending<'e>(
    conn: impl sqlx::Executor<'e, Database = Any>,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows = sqlx::query(COUNT_PENDING).fetch_all(conn).await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A delivery that was due, with its message.
#[derive(Debug, Clone)]
pub struct Due {
    /// The delivery's id.
    pub id: String,
    /// The consumer's tenant.
    pub tenant: String,
    /// The consumer.
    pub function: String,
    /// The message's id.
    pub message_id: String,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The sender's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it was committed (Unix ms).
    pub enqueued_at: i64,
    /// Consumer runs that led to it.
    pub hops: u32,
    /// Its sender's `traceparent`, when traces were on.
    pub trace: Option<String>,
}

/// Deliveries of one function due at `$3` (Unix ms), oldest first, up to `$4`.
const DUE_DELIVERIES: &str = "SELECT d.id, d.tenant, d.function, o.id, o.topic, o.payload, \
     o.idempotency_key, o.created_at, o.hops, o.trace \
     FROM deliveries d JOIN outbox o ON o.id = d.message_id \
     WHERE d.tenant = $1 AND d.function = $2 AND d.available_at <= $3 \
       AND (d.lease_until IS NULL OR d.lease_until <= $3) \
     ORDER BY d.available_at LIMIT $4";

/// The first time after `$1` when a delivery becomes due or a lease runs out.
const NEXT_DUE: &str = "SELECT min(t) FROM ( \
     SELECT min(available_at) AS t FROM deliveries WHERE available_at > $1 \
     UNION ALL \
     SELECT min(lease_until) FROM deliveries WHERE lease_until > $1) AS due";

impl Store {
    /// Deliveries due now, of the functions in `eligible` (tenant, function,
    /// how many), oldest first.
    pub async fn due_deliveries(
        &self,
        eligible: &[(Arc<str>, Arc<str>, usize)],
    ) -> Result<Vec<Due>, StoreError> {
        let now = now_ms();
        let mut due = Vec::new();
        // One query per function: each gets its own share, so a function
        // with a long backlog cannot crowd the others out.
        for (tenant, function, limit) in eligible {
            let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
            match &self.hot {
                HotReads::Lite(lite) => lite.with(|conn| {
                    let mut statement = conn.prepare_cached(DUE_DELIVERIES)?;
                    let rows = statement.query_map(
                        rusqlite::params![&**tenant, &**function, now, limit],
                        |row| {
                            Ok(Due {
                                id: row.get(0)?,
                                tenant: row.get(1)?,
                                function: row.get(2)?,
                                message_id: row.get(3)?,
                                topic: row.get(4)?,
                                payload: row.get(5)?,
                                idempotency_key: row.get(6)?,
                                enqueued_at: row.get(7)?,
                                hops: row.get(8)?,
                                trace: row.get(9)?,
                            })
                        },
                    )?;
                    for row in rows {
                        due.push(row?);
                    }
                    Ok(())
                })?,
                HotReads::Pool(_) => {
                    let rows = sqlx::query(DUE_DELIVERIES)
                        .bind(&**tenant)
                        .bind(&**function)
                        .bind(now)
                        .bind(limit)
                        .fetch_all(&self.reads)
                        .await?;
                    due.extend(rows.into_iter().map(|row| Due {
                        id: row.get(0),
                        tenant: row.get(1),
                        function: row.get(2),
                        message_id: row.get(3),
                        topic: row.get(4),
                        payload: row.get(5),
                        idempotency_key: row.get(6),
                        enqueued_at: row.get(7),
                        hops: u32::try_from(row.get::<i32, _>(8)).unwrap_or(u32::MAX),
                        trace: row.get(9),
                    }));
                }
            }
        }
        Ok(due)
    }

    /// The next time after now when a delivery becomes due or a lease runs
    /// out, if any. Two index lookups: cheap enough for every dispatcher round.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        match &self.hot {
            HotReads::Lite(lite) => lite.with(|conn| {
                conn.prepare_cached(NEXT_DUE)?
                    .query_row([now], |r| r.get(0))
            }),
            HotReads::Pool(_) => Ok(sqlx::query_scalar(NEXT_DUE)
                .bind(now)
                .fetch_one(&self.reads)
                .await?),
        }
    }

    /// Deliveries waiting or running, per (tenant, function).
    pub async fn queue_depth(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.per_function(
            "SELECT tenant, function, count(*) FROM deliveries GROUP BY tenant, function",
        )
        .await
    }

    /// Runs a `SELECT tenant, function, count(*) …` on the read pool.
    async fn per_function(
        &self,
        sql: &'static str,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(sql).fetch_all(&self.reads).await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_are_looked_up_inside_the_tenant() {
        let subs = Subscriptions::default();
        let (acme, other): (Arc<str>, Arc<str>) = ("acme".into(), "other".into());
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        let a_topics = ["jobs".to_owned(), "documents.notes.created".to_owned()];
        let jobs = ["jobs".to_owned()];
        subs.replace_all([
            (&acme, &a, &a_topics[..]),
            (&acme, &b, &jobs[..]),
            (&other, &c, &jobs[..]),
        ]);
        let names = |t: &Arc<str>, topic: &str| -> Vec<String> {
            subs.subscribers(t, topic)
                .iter()
                .map(|f| f.to_string())
                .collect()
        };
        assert_eq!(names(&acme, "jobs"), ["a", "b"]);
        assert_eq!(names(&other, "jobs"), ["c"]);
        assert!(names(&other, "documents.notes.created").is_empty());
        assert!(subs.wants_events(&acme, "notes"));
        assert!(!subs.wants_events(&other, "notes"));
    }
}
