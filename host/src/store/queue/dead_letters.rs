//! Dead letters: deliveries whose consumer failed for good, listed and
//! replayed by operators.

use sqlx::{Any, AnyConnection, QueryBuilder, Row};

use crate::store::{Backend, Store, StoreError};

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
/// their attempts reset; returns how many. PostgreSQL's (SQLite's is
/// `commit/lite.rs`).
pub(in crate::store) async fn replay(
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
    let moved = crate::store::build(&mut q, Backend::Postgres)?
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let mut q = QueryBuilder::<Any>::new(
        "DELETE FROM dead_letters WHERE id IN (SELECT d.id FROM dead_letters d",
    );
    filter.push_where(&mut q);
    q.push(")");
    crate::store::build(&mut q, Backend::Postgres)?
        .execute(&mut *conn)
        .await?;
    Ok(moved)
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
    /// Dead letters per (tenant, function).
    pub async fn dead_letter_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.per_function(
            "SELECT tenant, function, count(*) FROM dead_letters GROUP BY tenant, function",
        )
        .await
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
        let rows = crate::store::build(&mut q, self.backend)?
            .fetch_all(&self.reads)
            .await?;
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
