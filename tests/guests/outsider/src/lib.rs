//! Test guest: a consumer in tenant `other` with the same subscriptions as
//! `consumer` in `acme`. It records every message it gets, so a test can
//! show that no `acme` message or event ever reaches it.

use serde_json::{Value, json};
use sluice_sdk::documents::Collection;
use sluice_sdk::{Message, MessageError};

#[sluice_sdk::on_message]
fn consume(msg: Message) -> Result<(), MessageError> {
    Collection::<Value>::open("effects").put(msg.id(), &json!({ "topic": msg.topic() }))?;
    Ok(())
}
