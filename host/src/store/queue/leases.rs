//! Leases: a runner's hold on a delivery while it runs, claimed with a
//! token that its end must still match. The SQL here is PostgreSQL's (the
//! committer's and the claims' there); SQLite's is `commit/lite.rs`.

use std::collections::HashMap;

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use crate::store::{Backend, CHUNK};

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
pub(in crate::store) async fn current_leases(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<HashMap<String, String>, sqlx::Error> {
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
        // Held until commit: a claim on another node skips these rows
        // rather than re-leasing one while its end is being written.
        q.push(" FOR UPDATE");
        for row in crate::store::build(&mut q, Backend::Postgres)?
            .fetch_all(&mut *conn)
            .await?
        {
            leases.insert(row.get(0), row.get(1));
        }
    }
    Ok(leases)
}

/// Applies `ends`, whose leases were checked in the same transaction. The
/// common end, done, is one statement for the whole batch.
pub(in crate::store) async fn end_deliveries(
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
        crate::store::build(&mut q, Backend::Postgres)?
            .execute(&mut *conn)
            .await?;
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
pub(in crate::store) async fn claim(
    conn: &mut AnyConnection,
    claim: &Claim,
    now: i64,
) -> Result<Vec<(String, Lease, u32)>, sqlx::Error> {
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
        // Another node claiming, or a commit settling, one of these
        // holds its row: skip it rather than wait; it is not free.
        q.push(" FOR UPDATE SKIP LOCKED");
        q.push(") RETURNING id, attempts");
        for row in crate::store::build(&mut q, Backend::Postgres)?
            .fetch_all(&mut *conn)
            .await?
        {
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

/// Gives back `leases` of deliveries that never started, and the attempt
/// their claim counted.
pub(in crate::store) async fn release(
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
pub(in crate::store) async fn release_leases(conn: &mut AnyConnection) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, lease_token = NULL WHERE lease_token IS NOT NULL",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
