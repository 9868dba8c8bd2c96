//! Admin routes for what ran: invocation records, and the Prometheus metrics.

use http::StatusCode;
use serde_json::json;

use super::Admin;
use super::http::{Answer, invalid, param, unavailable};
use crate::problem::Problem;

/// The newest invocation records (`limit`, 1 to 1000, default 50), of one
/// tenant or function if the query names them.
pub(super) async fn list(admin: &Admin, query: &[(String, String)]) -> Result<Answer, Problem> {
    let limit = match param(query, "limit") {
        None => 50,
        Some(n) => n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| invalid(format!("limit {n:?} must be 1 to 1000")))?,
    };
    let rows = admin
        .store
        .invocations(param(query, "tenant"), param(query, "function"), limit)
        .await
        .map_err(unavailable)?;
    Ok(Answer::Json(StatusCode::OK, json!({ "invocations": rows })))
}

/// The host's metrics in Prometheus text, with the queue's depth and dead
/// letters counted now.
pub(super) async fn metrics(admin: &Admin) -> Result<Answer, Problem> {
    let depth = admin.store.queue_depth().await.map_err(unavailable)?;
    let dead = admin
        .store
        .dead_letter_counts()
        .await
        .map_err(unavailable)?;
    let text = admin.metrics.render(
        &depth,
        &dead,
        admin.runtime.instances(),
        admin.runtime.components_loaded(),
    );
    Ok(Answer::Text(text))
}
