//! `sluice:function/queue`: sends are staged, never delivered from here.

use super::super::bindings::sluice::function::queue::{Error, Host, SendOptions};
use crate::config::names::{is_reserved_topic, is_valid_topic};
use crate::runtime::state::Capabilities;
use crate::store::staging::StagedMessage;

impl Host for Capabilities {
    fn send(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        options: SendOptions,
    ) -> wasmtime::Result<Result<(), Error>> {
        let staged = self.stage_send(topic, payload, options);
        self.stop_at_limit(staged)
    }
}

impl Capabilities {
    fn stage_send(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        options: SendOptions,
    ) -> Result<(), Error> {
        if !is_valid_topic(&topic) {
            return Err(Error::Invalid(format!(
                "topic {topic:?} must be 1-128 characters of A-Z, a-z, 0-9, _, . and -"
            )));
        }
        if is_reserved_topic(&topic) {
            return Err(Error::Invalid(format!(
                "topic {topic:?} belongs to the host: documents.* and schedule.* are sent by Sluice"
            )));
        }
        if let Some(key) = &options.idempotency_key
            && (key.is_empty() || key.len() > 256)
        {
            return Err(Error::Invalid(
                "idempotency key must be 1-256 bytes".to_owned(),
            ));
        }
        if let Some(pending) = self.store.queue_full(&self.tenant) {
            return Err(Error::LimitExceeded(format!(
                "the tenant's queue is full ({pending} deliveries waiting); try again once its consumers catch up"
            )));
        }
        self.staging
            .send(StagedMessage {
                topic,
                payload,
                delay_ms: options.delay_ms.unwrap_or(0),
                idempotency_key: options.idempotency_key,
            })
            .map_err(|e| Error::LimitExceeded(e.to_string()))
    }
}
