//! Invocation records: one per request or delivery run, committed with
//! its writes (or, when it failed, on its own), and listed for operators.

use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};

/// How an invocation ended: its record, its metrics and its logs name it
/// the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered; what it staged committed.
    Ok,
    /// The function answered a request with an error.
    GuestError,
    /// The function trapped, or could not be started.
    Trap,
    /// The function ran past its deadline.
    Timeout,
    /// The function went over another of its limits.
    Limit,
    /// The function's response could not be sent.
    InvalidResponse,
    /// What it staged kept conflicting with other writes.
    Conflict,
    /// What it staged would take its tenant past the storage quota.
    OverQuota,
    /// The database could not commit what it staged.
    Unavailable,
    /// A consumer asked for its message to be tried again later.
    Retry,
    /// A consumer gave up on its message.
    GiveUp,
    /// A message was too many consumer runs from its origin; dead-lettered unhandled.
    LoopDetected,
}

impl Outcome {
    /// The outcome's name in records, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::GuestError => "guest-error",
            Outcome::Trap => "trap",
            Outcome::Timeout => "timeout",
            Outcome::Limit => "limit",
            Outcome::InvalidResponse => "invalid-response",
            Outcome::Conflict => "conflict",
            Outcome::OverQuota => "over-quota",
            Outcome::Unavailable => "unavailable",
            Outcome::Retry => "retry",
            Outcome::GiveUp => "give-up",
            Outcome::LoopDetected => "loop-detected",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of one invocation, committed with its writes.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    /// The request id (for a delivery, the delivery run's id).
    pub request_id: String,
    /// The function's tenant.
    pub tenant: Arc<str>,
    /// The function's name.
    pub function: Arc<str>,
    /// `METHOD /pattern`, or `message <topic>`.
    pub route: Arc<str>,
    /// The HTTP status answered (for a delivery: 200, or the failure's).
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The limit it went over (`memory_bytes`, …), if that is how it ended.
    pub exceeded: Option<&'static str>,
    /// How many times the function ran.
    pub attempts: u32,
    /// Wall time from receive to commit, in microseconds.
    pub duration_us: u64,
}

/// One invocation record as listed to operators.
#[derive(Debug, Clone, Serialize)]
pub struct InvocationRow {
    /// The request id (for a message delivery, the delivery run's id).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The function.
    pub function: String,
    /// `METHOD /path` of the route, or `message <topic>`.
    pub route: String,
    /// The HTTP status answered (200/500 for messages).
    pub status: i64,
    /// `ok`, `guest-error`, `trap`, `timeout`, `conflict`, `retry`, …
    pub outcome: String,
    /// The limit it went over, for `limit` and `timeout` outcomes.
    pub limit: Option<String>,
    /// Runs of the function (more than one after write conflicts).
    pub attempts: i64,
    /// Wall time, in microseconds.
    pub duration_us: i64,
    /// Unix ms.
    pub created_at: i64,
}

impl Store {
    /// The most recent invocation records, newest first, optionally of one
    /// tenant and function.
    pub async fn invocations(
        &self,
        tenant: Option<&str>,
        function: Option<&str>,
        limit: u32,
    ) -> Result<Vec<InvocationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT request_id, tenant, function, route, status, outcome, attempts, duration_us, created_at, \
             exceeded_limit \
             FROM invocations WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR function = $2) \
             ORDER BY created_at DESC, request_id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(function)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .iter()
            .map(|r| InvocationRow {
                request_id: r.get(0),
                tenant: r.get(1),
                function: r.get(2),
                route: r.get(3),
                status: r.get(4),
                outcome: r.get(5),
                attempts: r.get(6),
                duration_us: r.get(7),
                created_at: r.get(8),
                limit: r.get(9),
            })
            .collect())
    }
}
