//! Test guest: counts each tick of its once-a-second schedule at
//! `ticks/<tick_ms>`, read then write, so a tick fired twice shows count 2.

use serde::{Deserialize, Serialize};
use sluice_sdk::documents::Collection;
use sluice_sdk::{Message, MessageError};

#[derive(Serialize, Deserialize)]
struct Tick {
    count: u64,
    tick: String,
    missed: u64,
}

#[sluice_sdk::on_message]
fn consume(msg: Message) -> Result<(), MessageError> {
    let tick = msg
        .schedule()
        .ok_or_else(|| MessageError::give_up(format!("not a schedule tick: {}", msg.topic())))?;
    let ticks = Collection::<Tick>::open("ticks");
    let key = tick.tick_ms.to_string();
    let count = ticks.get(&key)?.map_or(0, |doc| doc.value.count) + 1;
    ticks.put(
        &key,
        &Tick {
            count,
            tick: tick.tick,
            missed: tick.missed,
        },
    )?;
    Ok(())
}
