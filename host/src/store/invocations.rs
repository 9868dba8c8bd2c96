//! Invocation records: one per request or delivery run, committed with
//! its writes (or, when it failed, on its own), and listed for operators.

use std::sync::Arc;

use serde::Serialize;
use sqlx::{Any, QueryBuilder, Row};

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
    /// A request was answered from the stored answer to its `Idempotency-Key`;
    /// the function did not run.
    Replayed,
    /// A request's `Idempotency-Key` was used before for a different request.
    KeyReused,
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
            Outcome::Replayed => "replayed",
            Outcome::KeyReused => "key-reused",
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
    /// Where that time went, stage by stage.
    pub stages: StageTimes,
}

/// Where an invocation's time went, in microseconds: the stages before the
/// function (a request's only) and the function's runs, all attempts
/// together. The commit is not among them: the record commits with it
/// (its trace's `persist` span has it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StageTimes {
    /// Routing and admission.
    #[serde(rename = "receive", skip_serializing_if = "Option::is_none")]
    pub receive_us: Option<u64>,
    /// Checking the caller's token.
    #[serde(rename = "authenticate", skip_serializing_if = "Option::is_none")]
    pub authenticate_us: Option<u64>,
    /// Reading the body and checking it against the route's schema.
    #[serde(rename = "validate", skip_serializing_if = "Option::is_none")]
    pub validate_us: Option<u64>,
    /// The function's runs.
    #[serde(rename = "process")]
    pub process_us: u64,
}

impl StageTimes {
    /// `d` in whole microseconds, as records keep times.
    pub fn micros(d: std::time::Duration) -> u64 {
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
    }

    /// As the `stages` column keeps it: a small JSON object.
    pub fn to_column(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
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
    /// Time per stage (see [`StageTimes`]); none on records from before
    /// stages were kept.
    pub stages: Option<StageTimes>,
}

/// Which invocation records to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct InvocationFilter {
    /// One record, by its request id.
    pub request_id: Option<String>,
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only this function's.
    pub function: Option<String>,
    /// Only these outcomes (`ok`, `guest-error`, `limit`, …).
    pub outcome: Option<String>,
    /// Only this status.
    pub status: Option<i64>,
    /// Only those that went over this limit (`timeout_ms`, `memory_bytes`, …).
    pub limit: Option<String>,
    /// Only those older than this record: `(created_at, request_id)`, the
    /// last of the previous page.
    pub before: Option<(i64, String)>,
}

impl Store {
    /// The most recent invocation records matching `filter`, newest first,
    /// at most `limit`.
    pub async fn invocations(
        &self,
        filter: &InvocationFilter,
        limit: u32,
    ) -> Result<Vec<InvocationRow>, StoreError> {
        let mut q = QueryBuilder::<Any>::new(
            "SELECT request_id, tenant, function, route, status, outcome, attempts, duration_us, created_at, \
             exceeded_limit, stages FROM invocations WHERE 1 = 1",
        );
        let text = [
            ("request_id", &filter.request_id),
            ("tenant", &filter.tenant),
            ("function", &filter.function),
            ("outcome", &filter.outcome),
            ("exceeded_limit", &filter.limit),
        ];
        for (column, value) in text {
            if let Some(value) = value {
                q.push(format!(" AND {column} = ")).push_bind(value.clone());
            }
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status);
        }
        if let Some((at, id)) = &filter.before {
            q.push(" AND (created_at < ")
                .push_bind(*at)
                .push(" OR (created_at = ")
                .push_bind(*at)
                .push(" AND request_id < ")
                .push_bind(id.clone())
                .push("))");
        }
        q.push(" ORDER BY created_at DESC, request_id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = super::build(&mut q, self.backend)?
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
                stages: (r.get::<Option<String>, _>(10))
                    .and_then(|text| serde_json::from_str(&text).ok()),
            })
            .collect())
    }
}
