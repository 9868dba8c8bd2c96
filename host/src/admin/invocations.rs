//! Admin routes for what ran: invocation records, and the Prometheus metrics.

use http::StatusCode;
use serde_json::json;

use super::Admin;
use super::http::{Answer, invalid, page_limit, param, unavailable};
use crate::problem::Problem;
use crate::store::InvocationFilter;

/// The newest invocation records (`limit`, 1 to 1000, default 50) that
/// match the query's `tenant`, `function`, `outcome`, `status` and `limit_hit`,
/// older than `before` (`<created_at>.<request_id>`, the `next` of the page before).
pub(super) async fn list(admin: &Admin, query: &[(String, String)]) -> Result<Answer, Problem> {
    let limit = page_limit(query).map_err(invalid)?;
    let text = |name: &str| param(query, name).map(str::to_owned);
    let status = match param(query, "status") {
        None => None,
        Some(s) => Some(
            (s.parse::<i64>().ok())
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| invalid(format!("status {s:?} must be an HTTP status")))?,
        ),
    };
    let before = match param(query, "before") {
        None => None,
        Some(cursor) => Some(
            (cursor.split_once('.'))
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                .ok_or_else(|| {
                    invalid(format!("before {cursor:?} is not a cursor this API gave"))
                })?,
        ),
    };
    let filter = InvocationFilter {
        request_id: None,
        tenant: text("tenant"),
        function: text("function"),
        outcome: text("outcome"),
        status,
        limit: text("limit_hit"),
        before,
    };
    let rows = (admin.store.invocations(&filter, limit).await).map_err(unavailable)?;
    let next = (rows.len() == limit as usize)
        .then(|| {
            rows.last()
                .map(|r| format!("{}.{}", r.created_at, r.request_id))
        })
        .flatten();
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "invocations": rows, "next": next }),
    ))
}

/// One invocation record by its request id.
pub(super) async fn show(admin: &Admin, request_id: &str) -> Result<Answer, Problem> {
    let filter = InvocationFilter {
        request_id: Some(request_id.to_owned()),
        ..InvocationFilter::default()
    };
    let mut rows = (admin.store.invocations(&filter, 1).await).map_err(unavailable)?;
    let row = rows.pop().ok_or_else(|| {
        Problem::new(
            404,
            "not-found",
            "Not found",
            format!("no invocation record {request_id:?}"),
        )
    })?;
    Ok(Answer::Json(StatusCode::OK, json!(row)))
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

/// The last hour, minute by minute, per tenant (of the query's `tenant`
/// only, if it names one), with each function's queue depth and dead
/// letters now: what the console's overview charts.
pub(super) async fn stats(admin: &Admin, query: &[(String, String)]) -> Result<Answer, Problem> {
    let tenant = param(query, "tenant");
    let minutes = admin.metrics.minutes.last_hour(tenant);
    let depth = admin.store.queue_depth().await.map_err(unavailable)?;
    let dead = (admin.store.dead_letter_counts().await).map_err(unavailable)?;
    let mut queues: std::collections::BTreeMap<(String, String), (i64, i64)> = Default::default();
    for (t, f, n) in depth {
        queues.entry((t, f)).or_default().0 = n;
    }
    for (t, f, n) in dead {
        queues.entry((t, f)).or_default().1 = n;
    }
    let queues: Vec<_> = queues
        .into_iter()
        .filter(|((t, _), _)| tenant.is_none_or(|want| want == t))
        .map(|((tenant, function), (depth, dead_letters))| {
            json!({ "tenant": tenant, "function": function, "depth": depth, "dead_letters": dead_letters })
        })
        .collect();
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "minutes": minutes, "queues": queues }),
    ))
}
