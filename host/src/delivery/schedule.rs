//! Cron schedules: each tick becomes a message to its function.
//!
//! The next tick of every schedule is stored in the database and advanced in
//! the same transaction that enqueues the tick's message, only if it still
//! holds the value this runner saw. So a tick fires once, across restarts
//! and across runners.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::watch;

use crate::catalog::{Live, Scheduled};
use crate::config::manifest::{Missed, Schedule};
use crate::store::{ScheduleRow, Store, Tick, now_ms};

/// A tick this late (or later) counts as missed under `missed = "skip"`.
const ON_TIME_MS: i64 = 1_000;

/// Most missed ticks counted one by one; beyond that the count is a floor.
const MAX_COUNTED: u64 = 100_000;

/// What to do about a schedule whose next tick is due.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The tick to fire (Unix ms), if any.
    fire: Option<i64>,
    /// Ticks passed over (not fired) before it.
    missed: u64,
    /// The next tick after now.
    next: i64,
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The first tick strictly after `ms`, or `None` if the expression never fires again.
fn tick_after(schedule: &Schedule, ms: i64) -> Option<i64> {
    let from = at(ms).with_timezone(&schedule.timezone);
    schedule
        .cron
        .after(&from)
        .next()
        .map(|t| t.timestamp_millis())
}

/// Decides what the due tick `due` turns into at `now`.
fn plan(schedule: &Schedule, due: i64, now: i64) -> Option<Plan> {
    let next = tick_after(schedule, now)?;
    // The last tick at or before now, and how many came between `due` and it.
    let tz = schedule.timezone;
    let mut last = due;
    let mut passed = 0u64;
    for t in schedule.cron.after(&at(due).with_timezone(&tz)) {
        let t = t.timestamp_millis();
        if t > now {
            break;
        }
        passed += 1;
        last = t;
        if passed >= MAX_COUNTED {
            break;
        }
    }
    let fire = match schedule.manifest.missed {
        Missed::Once => Some(last),
        Missed::Skip => (now - last < ON_TIME_MS).then_some(last),
    };
    Some(Plan {
        fire,
        missed: if fire.is_some() { passed } else { passed + 1 },
        next,
    })
}

/// The payload of a tick's message.
fn payload(schedule: &Schedule, tick: i64, missed: u64) -> Vec<u8> {
    let local = at(tick).with_timezone(&schedule.timezone);
    serde_json::json!({
        "schedule": schedule.manifest.name,
        "tick": local.to_rfc3339(),
        "tick_ms": tick,
        "missed": missed,
    })
    .to_string()
    .into_bytes()
}

/// Fires the live schedules until `stop` turns true, following the
/// catalog as deploys change it.
pub async fn run(live: Arc<Live>, store: Store, mut stop: watch::Receiver<bool>) {
    let mut changes = live.changes();
    while !*stop.borrow() {
        changes.borrow_and_update();
        let schedules = live.load().schedules.clone();
        tokio::select! {
            () = fire(&store, &schedules, &mut stop) => {}
            _ = changes.changed() => {}
        }
    }
}

/// Fires `schedules` until `stop` turns true (or the caller drops it).
async fn fire(store: &Store, schedules: &[Scheduled], stop: &mut watch::Receiver<bool>) {
    if schedules.is_empty() {
        let _ = stop.changed().await;
        return;
    }
    let now = now_ms();
    let rows: Vec<ScheduleRow> = schedules
        .iter()
        .map(|s| ScheduleRow {
            tenant: s.tenant.clone(),
            function: s.function.clone(),
            name: s.schedule.manifest.name.clone(),
            cron: s.schedule.manifest.cron.clone(),
            timezone: s.schedule.timezone.name().to_owned(),
            first_tick: tick_after(&s.schedule, now).unwrap_or(i64::MAX),
        })
        .collect();
    let mut next = loop {
        match store.register_schedules(rows.clone()).await {
            Ok(next) => break next,
            Err(e) => {
                tracing::error!(error = %e, "recording schedules failed; trying again");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let mut failed = false;
    while !*stop.borrow() {
        let now = now_ms();
        for (scheduled, due) in schedules.iter().zip(next.iter_mut()) {
            if *due > now {
                continue;
            }
            let Some(plan) = plan(&scheduled.schedule, *due, now) else {
                *due = i64::MAX;
                continue;
            };
            let tick = Tick {
                tenant: scheduled.tenant.clone(),
                function: scheduled.function.clone(),
                name: scheduled.schedule.manifest.name.clone(),
                expect_next: *due,
                next: plan.next,
                fired: plan
                    .fire
                    .map(|t| (t, payload(&scheduled.schedule, t, plan.missed))),
            };
            match store.tick(tick).await {
                Ok(true) => {
                    tracing::debug!(tenant = %scheduled.tenant, function = %scheduled.function,
                        schedule = %scheduled.schedule.manifest.name, fired = ?plan.fire,
                        missed = plan.missed, "schedule ticked");
                    *due = plan.next;
                }
                // Someone else advanced it: start again from what is stored.
                Ok(false) => match store.register_schedules(rows.clone()).await {
                    Ok(stored) => next = stored,
                    Err(e) => tracing::error!(error = %e, "reloading schedules failed"),
                },
                Err(e) => {
                    tracing::error!(error = %e, "firing a schedule tick failed");
                    // The database may be down: a tick still due waits a
                    // second before the next try, not none.
                    failed = true;
                }
            }
            break;
        }
        let now = now_ms();
        let soonest = next.iter().copied().min().unwrap_or(i64::MAX);
        let wait = if soonest > now {
            Duration::from_millis(u64::try_from(soonest - now).unwrap_or(0))
                .min(Duration::from_secs(60))
        } else if std::mem::take(&mut failed) {
            Duration::from_secs(1)
        } else {
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::manifest::ScheduleManifest;

    fn every_second(missed: Missed) -> Schedule {
        Schedule {
            manifest: ScheduleManifest {
                name: "s".into(),
                cron: "* * * * * *".into(),
                timezone: None,
                missed,
            },
            cron: "* * * * * *".parse().expect("cron"),
            timezone: chrono_tz::Tz::UTC,
        }
    }

    #[test]
    fn an_on_time_tick_fires_alone() {
        let s = every_second(Missed::Skip);
        let plan = plan(&s, 10_000, 10_050).expect("plan");
        assert_eq!(
            plan,
            Plan {
                fire: Some(10_000),
                missed: 0,
                next: 11_000
            }
        );
    }

    #[test]
    fn missed_ticks_fire_once_or_are_skipped() {
        let once = plan(&every_second(Missed::Once), 10_000, 15_500).expect("plan");
        assert_eq!(
            once,
            Plan {
                fire: Some(15_000),
                missed: 5,
                next: 16_000
            }
        );
        let skip = plan(&every_second(Missed::Skip), 10_000, 15_500).expect("plan");
        assert_eq!(
            skip,
            Plan {
                fire: Some(15_000),
                missed: 5,
                next: 16_000
            }
        );
        let mut minutely = every_second(Missed::Skip);
        minutely.cron = "0 * * * * *".parse().expect("cron");
        let late = plan(&minutely, 60_000, 185_000).expect("plan");
        assert_eq!(
            late,
            Plan {
                fire: None,
                missed: 3,
                next: 240_000
            }
        );
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        let mut s = every_second(Missed::Once);
        s.cron = "0 0 9 * * *".parse().expect("cron");
        s.timezone = chrono_tz::Europe::Paris;
        // 2026-11-23T00:00:00Z; 09:00 in Paris (UTC+1 in winter) is 08:00Z.
        let midnight = 1_795_392_000_000;
        let next = tick_after(&s, midnight).expect("next");
        assert_eq!(next - midnight, 8 * 3_600_000);
    }
}
