//! The queue's tables: the outbox (one row per message), deliveries (one row
//! per message and subscribed function, leased while it runs), dead letters
//! and schedules. Writes run on the committer's transaction; reads here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use super::{CHUNK, Store, StoreError, now_ms};

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
        crate::manifest::EVENT_KINDS.iter().any(|kind| {
            map.contains_key(&(tenant.clone(), format!("documents.{collection}.{kind}")))
        })
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

/// Deliveries per tenant, counted.
pub(super) async fn count_pending<'e>(
    conn: impl sqlx::Executor<'e, Database = Any>,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows = sqlx::query("SELECT tenant, count(*) FROM deliveries GROUP BY tenant")
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A message about to enter the outbox.
#[derive(Debug, Clone)]
pub(super) struct NewMessage {
    pub tenant: Arc<str>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    pub available_at: i64,
    pub request_id: String,
    /// Deliver to this function only (schedule ticks), not to the topic's subscribers.
    pub to: Option<Arc<str>>,
}

/// Inserts `messages` and one delivery per subscriber. A message whose
/// idempotency key was used on its topic within `window_ms` is dropped.
/// Adds the deliveries created to `deltas`, per tenant.
pub(super) async fn enqueue(
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
            "INSERT INTO outbox (id, tenant, topic, payload, idempotency_key, available_at, created_at, request_id) ",
        );
        q.push_values(chunk, |mut b, (id, m)| {
            b.push_bind(id.clone())
                .push_bind(m.tenant.to_string())
                .push_bind(m.topic.clone())
                .push_bind(m.payload.clone())
                .push_bind(m.idempotency_key.clone())
                .push_bind(m.available_at)
                .push_bind(now)
                .push_bind(m.request_id.clone());
        });
        q.push(" ON CONFLICT DO NOTHING RETURNING id");
        for row in super::build(&mut q)?.fetch_all(&mut *conn).await? {
            inserted.insert(row.get::<String, _>(0));
        }
    }
    rows.retain(|(id, _)| inserted.contains(id));
    let mut deliveries = Vec::new();
    for (id, m) in &rows {
        let targets = match &m.to {
            Some(function) => vec![function.clone()],
            None => subscriptions.subscribers(&m.tenant, &m.topic),
        };
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
        super::build(&mut q)?.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A runner's hold on one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The delivery's id.
    pub delivery_id: String,
    /// Proves the runner still holds it; a new claim changes it.
    pub token: String,
}

/// How a delivery ends, committed with the consumer's writes.
#[derive(Debug, Clone)]
pub enum DeliveryEnd {
    /// Handled: the delivery is removed.
    Done(Lease),
    /// Failed: try again at `at` (Unix ms).
    Retry {
        /// The lease being given back.
        lease: Lease,
        /// When to try again.
        at: i64,
        /// Why it failed.
        error: String,
    },
    /// Failed for good: move it to the dead letters.
    Dead {
        /// The lease being given back.
        lease: Lease,
        /// Why it failed.
        error: String,
    },
}

impl DeliveryEnd {
    /// The lease this end needs.
    pub fn lease(&self) -> &Lease {
        match self {
            DeliveryEnd::Done(lease)
            | DeliveryEnd::Retry { lease, .. }
            | DeliveryEnd::Dead { lease, .. } => lease,
        }
    }
}

/// The leases held right now, among `ids`: delivery id → token.
pub(super) async fn current_leases(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let postgres = super::Backend::of_connection(conn) == super::Backend::Postgres;
    let mut leases = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new(
            "SELECT id, lease_token FROM deliveries WHERE lease_token IS NOT NULL AND id IN (",
        );
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.to_string());
        }
        q.push(")");
        if postgres {
            // Held until commit: a claim on another node skips these rows
            // rather than re-leasing one while its end is being written.
            q.push(" FOR UPDATE");
        }
        for row in super::build(&mut q)?.fetch_all(&mut *conn).await? {
            leases.insert(row.get(0), row.get(1));
        }
    }
    Ok(leases)
}

/// Applies `ends`, whose leases were checked in the same transaction. The
/// common end, done, is one statement for the whole batch.
pub(super) async fn end_deliveries(
    conn: &mut AnyConnection,
    ends: &[DeliveryEnd],
    now: i64,
) -> Result<(), sqlx::Error> {
    let done: Vec<&str> = ends
        .iter()
        .filter_map(|end| match end {
            DeliveryEnd::Done(lease) => Some(lease.delivery_id.as_str()),
            _ => None,
        })
        .collect();
    for chunk in done.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new("DELETE FROM deliveries WHERE id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.to_string());
        }
        q.push(")");
        super::build(&mut q)?.execute(&mut *conn).await?;
    }
    for end in ends {
        match end {
            DeliveryEnd::Done(_) => {}
            DeliveryEnd::Retry { lease, at, error } => {
                sqlx::query(
                    "UPDATE deliveries SET available_at = $1, lease_until = NULL, lease_token = NULL, \
                     last_error = $2 WHERE id = $3",
                )
                .bind(at)
                .bind(error)
                .bind(&lease.delivery_id)
                .execute(&mut *conn)
                .await?;
            }
            DeliveryEnd::Dead { lease, error } => {
                sqlx::query(
                    "INSERT INTO dead_letters (id, message_id, tenant, function, attempts, last_error, failed_at) \
                     SELECT id, message_id, tenant, function, attempts, $1, $2 FROM deliveries WHERE id = $3",
                )
                .bind(error)
                .bind(now)
                .bind(&lease.delivery_id)
                .execute(&mut *conn)
                .await?;
                sqlx::query("DELETE FROM deliveries WHERE id = $1")
                    .bind(&lease.delivery_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// A request to lease deliveries that were due when the dispatcher looked.
#[derive(Debug)]
pub struct Claim {
    /// The deliveries wanted.
    pub ids: Vec<String>,
    /// How long the lease lasts, in milliseconds.
    pub lease_ms: i64,
}

/// Leases those of `claim.ids` that are still free; returns (id, token,
/// attempt number) for each one won. The attempt is counted now, so a
/// delivery that crashes its host still uses up an attempt.
pub(super) async fn claim(
    conn: &mut AnyConnection,
    claim: &Claim,
    now: i64,
) -> Result<Vec<(String, Lease, u32)>, sqlx::Error> {
    let postgres = super::Backend::of_connection(conn) == super::Backend::Postgres;
    let token = uuid::Uuid::now_v7().to_string();
    let mut won = Vec::new();
    for chunk in claim.ids.chunks(CHUNK) {
        let mut q = QueryBuilder::<Any>::new("UPDATE deliveries SET lease_until = ");
        q.push_bind(now.saturating_add(claim.lease_ms))
            .push(", lease_token = ")
            .push_bind(token.clone())
            .push(", attempts = attempts + 1 WHERE id IN (SELECT id FROM deliveries WHERE (lease_until IS NULL OR lease_until <= ")
            .push_bind(now)
            .push(") AND id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.clone());
        }
        q.push(")");
        if postgres {
            // Another node claiming, or a commit settling, one of these
            // holds its row: skip it rather than wait; it is not free.
            q.push(" FOR UPDATE SKIP LOCKED");
        }
        q.push(") RETURNING id, attempts");
        for row in super::build(&mut q)?.fetch_all(&mut *conn).await? {
            let id: String = row.get(0);
            let attempts: i64 = row.get(1);
            let lease = Lease {
                delivery_id: id.clone(),
                token: token.clone(),
            };
            won.push((id, lease, u32::try_from(attempts).unwrap_or(u32::MAX)));
        }
    }
    Ok(won)
}

/// A schedule tick to fire: advances the schedule from `expect_next` to
/// `next` and enqueues `message`, or does nothing if another runner already
/// moved it.
#[derive(Debug)]
pub struct Tick {
    /// The schedule's tenant.
    pub tenant: Arc<str>,
    /// The function the tick is for.
    pub function: Arc<str>,
    /// The schedule's name.
    pub name: String,
    /// The `next_tick` this runner saw.
    pub expect_next: i64,
    /// The `next_tick` after this one.
    pub next: i64,
    /// The tick fired, or `None` when it is skipped.
    pub fired: Option<(i64, Vec<u8>)>,
}

/// Applies `tick`; true when this runner advanced the schedule.
pub(super) async fn tick(
    conn: &mut AnyConnection,
    tick: &Tick,
    subscriptions: &Subscriptions,
    deltas: &mut HashMap<Arc<str>, i64>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE schedules SET next_tick = $1, last_tick = coalesce($2, last_tick) \
         WHERE tenant = $3 AND function = $4 AND name = $5 AND next_tick = $6",
    )
    .bind(tick.next)
    .bind(tick.fired.as_ref().map(|(at, _)| *at))
    .bind(&*tick.tenant)
    .bind(&*tick.function)
    .bind(&tick.name)
    .bind(tick.expect_next)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if let (true, Some((at, payload))) = (moved, &tick.fired) {
        let message = NewMessage {
            tenant: tick.tenant.clone(),
            topic: format!("schedule.{}", tick.name),
            payload: payload.clone(),
            idempotency_key: Some(format!("{}:{}:{at}", tick.function, tick.name)),
            available_at: now,
            request_id: uuid::Uuid::now_v7().to_string(),
            to: Some(tick.function.clone()),
        };
        enqueue(conn, vec![message], subscriptions, deltas, i64::MAX, now).await?;
    }
    Ok(moved)
}

/// A schedule as declared in a manifest, with its first tick from now.
#[derive(Debug, Clone)]
pub struct ScheduleRow {
    /// The tenant.
    pub tenant: Arc<str>,
    /// The function.
    pub function: Arc<str>,
    /// The schedule's name.
    pub name: String,
    /// The expression, as written.
    pub cron: String,
    /// The time zone name.
    pub timezone: String,
    /// The first tick after now, used when the schedule is new or changed.
    pub first_tick: i64,
}

/// Records `rows`, keeping the stored next tick of schedules that did not
/// change, and returns every schedule's next tick.
pub(super) async fn register_schedules(
    conn: &mut AnyConnection,
    rows: &[ScheduleRow],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut next = Vec::with_capacity(rows.len());
    for row in rows {
        let tick: i64 = sqlx::query_scalar(
            "INSERT INTO schedules (tenant, function, name, cron, timezone, next_tick) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, function, name) DO UPDATE SET \
               next_tick = CASE WHEN schedules.cron = excluded.cron \
                                 AND schedules.timezone = excluded.timezone \
                           THEN schedules.next_tick ELSE excluded.next_tick END, \
               cron = excluded.cron, timezone = excluded.timezone \
             RETURNING next_tick",
        )
        .bind(&*row.tenant)
        .bind(&*row.function)
        .bind(&row.name)
        .bind(&row.cron)
        .bind(&row.timezone)
        .bind(row.first_tick)
        .fetch_one(&mut *conn)
        .await?;
        next.push(tick);
    }
    Ok(next)
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterFilter {
    /// One dead letter by id.
    pub id: Option<String>,
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only this function's.
    pub function: Option<String>,
}

impl DeadLetterFilter {
    fn push_where(&self, q: &mut QueryBuilder<Any>) {
        q.push(" WHERE 1 = 1");
        if let Some(id) = &self.id {
            q.push(" AND d.id = ").push_bind(id.clone());
        }
        if let Some(tenant) = &self.tenant {
            q.push(" AND d.tenant = ").push_bind(tenant.clone());
        }
        if let Some(function) = &self.function {
            q.push(" AND d.function = ").push_bind(function.clone());
        }
    }
}

/// Moves the dead letters matching `filter` back to the deliveries, with
/// their attempts reset; returns how many.
pub(super) async fn replay(
    conn: &mut AnyConnection,
    filter: &DeadLetterFilter,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let mut q = QueryBuilder::<Any>::new(
        "INSERT INTO deliveries (id, message_id, tenant, function, available_at) \
         SELECT d.id, d.message_id, d.tenant, d.function, ",
    );
    q.push_bind(now).push(" FROM dead_letters d");
    filter.push_where(&mut q);
    q.push(" ON CONFLICT DO NOTHING");
    let moved = super::build(&mut q)?
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let mut q = QueryBuilder::<Any>::new(
        "DELETE FROM dead_letters WHERE id IN (SELECT d.id FROM dead_letters d",
    );
    filter.push_where(&mut q);
    q.push(")");
    super::build(&mut q)?.execute(&mut *conn).await?;
    Ok(moved)
}

/// Gives back `leases` of deliveries that never started, and the attempt
/// their claim counted.
pub(super) async fn release(
    conn: &mut AnyConnection,
    leases: &[Lease],
) -> Result<u64, sqlx::Error> {
    let mut released = 0;
    for lease in leases {
        released += sqlx::query(
            "UPDATE deliveries SET lease_until = NULL, lease_token = NULL, \
             attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE id = $1 AND lease_token = $2",
        )
        .bind(&lease.delivery_id)
        .bind(&lease.token)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(released)
}

/// Frees every lease: for a database only this process uses, at start-up,
/// when every lease belongs to a process that is gone.
pub(super) async fn release_leases(conn: &mut AnyConnection) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, lease_token = NULL WHERE lease_token IS NOT NULL",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Drops what no one needs any more: idempotency keys and delivered
/// messages older than the window.
pub(super) async fn collect_garbage(
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
}

/// A dead letter with its message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    /// The delivery's id; pass it to replay.
    pub id: String,
    /// The message's id.
    pub message_id: String,
    /// The tenant.
    pub tenant: String,
    /// The consumer.
    pub function: String,
    /// The message's topic.
    pub topic: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error.
    pub last_error: String,
    /// When it was moved here (Unix ms).
    pub failed_at: i64,
    /// When the message was committed (Unix ms).
    pub enqueued_at: i64,
    /// The payload, as text when it is UTF-8.
    pub payload: String,
}

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
            let rows = sqlx::query(
                "SELECT d.id, d.tenant, d.function, o.id, o.topic, o.payload, o.idempotency_key, o.created_at \
                 FROM deliveries d JOIN outbox o ON o.id = d.message_id \
                 WHERE d.tenant = $1 AND d.function = $2 AND d.available_at <= $3 \
                   AND (d.lease_until IS NULL OR d.lease_until <= $4) \
                 ORDER BY d.available_at LIMIT $5",
            )
            .bind(&**tenant)
            .bind(&**function)
            .bind(now)
            .bind(now)
            .bind(i64::try_from(*limit).unwrap_or(i64::MAX))
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
            }));
        }
        Ok(due)
    }

    /// The next time after now when a delivery becomes due or a lease runs
    /// out, if any. Two index lookups: cheap enough for every dispatcher round.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(t) FROM ( \
               SELECT min(available_at) AS t FROM deliveries WHERE available_at > $1 \
               UNION ALL \
               SELECT min(lease_until) FROM deliveries WHERE lease_until > $1) AS due",
        )
        .bind(now)
        .fetch_one(&self.reads)
        .await?;
        Ok(next)
    }

    /// Deliveries waiting or running, per (tenant, function).
    pub async fn queue_depth(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.per_function(
            "SELECT tenant, function, count(*) FROM deliveries GROUP BY tenant, function",
        )
        .await
    }

    /// Dead letters per (tenant, function).
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.per_function(
            "SELECT tenant, function, count(*) FROM dead_letters GROUP BY tenant, function",
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

    /// The dead letters matching `filter`, newest first, at most `limit`.
    pub async fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut q = QueryBuilder::<Any>::new(
            "SELECT d.id, d.message_id, d.tenant, d.function, o.topic, d.attempts, d.last_error, \
             d.failed_at, o.created_at, o.payload FROM dead_letters d JOIN outbox o ON o.id = d.message_id",
        );
        filter.push_where(&mut q);
        q.push(" ORDER BY d.failed_at DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = super::build(&mut q)?.fetch_all(&self.reads).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let payload: Vec<u8> = row.get(9);
                DeadLetter {
                    id: row.get(0),
                    message_id: row.get(1),
                    tenant: row.get(2),
                    function: row.get(3),
                    topic: row.get(4),
                    attempts: row.get(5),
                    last_error: row.get(6),
                    failed_at: row.get(7),
                    enqueued_at: row.get(8),
                    payload: String::from_utf8(payload)
                        .unwrap_or_else(|e| format!("<{} bytes, not UTF-8>", e.as_bytes().len())),
                }
            })
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
