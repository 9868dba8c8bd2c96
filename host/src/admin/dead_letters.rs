//! Admin routes for messages whose consumer failed for good: list, show,
//! replay one or all (of a tenant or function).

use http::StatusCode;
use serde_json::json;

use super::Admin;
use super::http::{Answer, invalid, page_limit, param, store_down, unavailable};
use crate::problem::Problem;
use crate::store::DeadLetterFilter;

/// The newest dead letters (`limit`, 1 to 1000, default 50) of the
/// query's `tenant` and `function`.
pub(super) async fn list(admin: &Admin, query: &[(String, String)]) -> Result<Answer, Problem> {
    let limit = page_limit(query).map_err(invalid)?;
    let letters =
        (admin.store.dead_letters(&filter(query, None), limit).await).map_err(unavailable)?;
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "dead_letters": letters }),
    ))
}

/// One dead letter, with its payload and last error.
pub(super) async fn show(admin: &Admin, id: &str) -> Result<Answer, Problem> {
    let mut letters =
        (admin.store.dead_letters(&filter(&[], Some(id)), 1).await).map_err(unavailable)?;
    let letter = letters.pop().ok_or_else(|| no_letter(id))?;
    Ok(Answer::Json(StatusCode::OK, json!(letter)))
}

/// Queues the dead letter `id` (or, without one, every dead letter of the
/// query's `tenant` and `function`) for delivery again, attempts reset.
pub(super) async fn replay(
    admin: &Admin,
    id: Option<&str>,
    query: &[(String, String)],
    operator: &str,
) -> Result<Answer, Problem> {
    let replayed = (admin.store.replay_dead_letters(filter(query, id)).await).map_err(|e| {
        tracing::error!(error = %e, "replaying dead letters failed");
        store_down()
    })?;
    if let Some(id) = id
        && replayed == 0
    {
        return Err(no_letter(id));
    }
    tracing::info!(replayed, operator = %operator, "dead letters replayed");
    Ok(Answer::Json(
        StatusCode::OK,
        json!({ "replayed": replayed }),
    ))
}

fn filter(query: &[(String, String)], id: Option<&str>) -> DeadLetterFilter {
    DeadLetterFilter {
        id: id.map(str::to_owned),
        tenant: param(query, "tenant").map(str::to_owned),
        function: param(query, "function").map(str::to_owned),
    }
}

fn no_letter(id: &str) -> Problem {
    Problem::new(
        404,
        "not-found",
        "Not found",
        format!("no dead letter {id:?}"),
    )
}
