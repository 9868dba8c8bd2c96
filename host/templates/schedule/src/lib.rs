//! {{name}}: a Sluice function that runs on a schedule.
//!
//! The schedule `hourly` (sluice.toml) ticks at the top of every hour; each
//! tick is a message to this function's consumer, which records the run in
//! the document `runs/last`. `GET /runs/last` reads it. A tick is handled
//! exactly once, and after downtime one catch-up tick stands for the
//! missed ones.

use serde::{Deserialize, Serialize};
use sluice_sdk::documents::Collection;
use sluice_sdk::{Error, Json, Message, MessageError, Request};

/// What the last run did.
#[derive(Serialize, Deserialize)]
struct Run {
    /// The tick's time (RFC 3339), not the clock's: a tick delivered again
    /// does exactly what its first delivery did.
    tick: String,
    tick_ms: u64,
    /// How many ticks this one stands for after downtime.
    missed: u64,
}

// Each route of sluice.toml, by name, and the function that serves it.
sluice_sdk::routes! {
    "last-run" => last_run,
}

// Each schedule's ticks arrive on the topic `schedule.<name>`.
sluice_sdk::topics! {
    "schedule.hourly" => hourly,
}

fn runs() -> Collection<Run> {
    Collection::open("runs")
}

/// `GET /runs/last`: the last run, or 404 before the first.
fn last_run(_req: Request) -> Result<Json<Run>, Error> {
    let last = runs().get("last")?;
    let last = last.ok_or_else(|| Error::not_found("the schedule has not run yet"))?;
    Ok(Json(last.value))
}

/// A tick of `hourly`: the hourly job. It records the run; put the work here.
fn hourly(msg: Message) -> Result<(), MessageError> {
    let tick = msg
        .schedule()
        .ok_or_else(|| MessageError::give_up("a message that is not a tick"))?;
    println!("hourly tick at {}", tick.tick);
    let run = Run {
        tick: tick.tick,
        tick_ms: tick.tick_ms,
        missed: tick.missed,
    };
    runs().put("last", &run)?;
    Ok(())
}
