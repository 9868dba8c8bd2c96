//! Schedules: each one's next tick, advanced with the tick's message in
//! one transaction, so a tick fires once across restarts and runners.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::AnyConnection;

use super::Subscriptions;
use super::outbox::{NewMessage, enqueue};
use crate::config::names::schedule_topic;

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
pub(in crate::store) async fn tick(
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
    if moved && let Some(message) = tick_message(tick, now) {
        enqueue(conn, vec![message], subscriptions, deltas, i64::MAX, now).await?;
    }
    Ok(moved)
}

/// The message a fired tick sends to its function, deduped by the tick's
/// time; `None` for a tick that is skipped.
pub(in crate::store) fn tick_message(tick: &Tick, now: i64) -> Option<NewMessage> {
    let (at, payload) = tick.fired.as_ref()?;
    Some(NewMessage {
        tenant: tick.tenant.clone(),
        topic: schedule_topic(&tick.name),
        payload: payload.clone(),
        idempotency_key: Some(format!("{}:{}:{at}", tick.function, tick.name)),
        available_at: now,
        request_id: uuid::Uuid::now_v7().to_string(),
        to: Some(tick.function.clone()),
        hops: 0,
        trace: None,
    })
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
/// Registers one schedule, keeping its next tick unless its cron or time
/// zone changed. `$N` parameters appear in order, so SQLite binds them by
/// position too.
pub(in crate::store) const REGISTER: &str = "INSERT INTO schedules (tenant, function, name, cron, timezone, next_tick) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (tenant, function, name) DO UPDATE SET \
       next_tick = CASE WHEN schedules.cron = excluded.cron \
                         AND schedules.timezone = excluded.timezone \
                   THEN schedules.next_tick ELSE excluded.next_tick END, \
       cron = excluded.cron, timezone = excluded.timezone \
     RETURNING next_tick";

pub(in crate::store) async fn register_schedules(
    conn: &mut AnyConnection,
    rows: &[ScheduleRow],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut next = Vec::with_capacity(rows.len());
    for row in rows {
        let tick: i64 = sqlx::query_scalar(REGISTER)
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
