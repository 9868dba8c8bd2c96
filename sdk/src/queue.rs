//! Messages to topics, delivered after the invocation commits.
//!
//! A send is staged like a document write and lands in the host's outbox in
//! the same transaction, so a message exists if and only if the handler
//! returned `Ok` and its writes committed. Topics belong to the function's
//! tenant.
//!
//! ```no_run
//! use sluice_sdk::{queue, Error};
//!
//! fn announce(channel: &str, post_id: &str) -> Result<(), Error> {
//!     queue::send("channel-notifications", &serde_json::json!({
//!         "channel": channel,
//!         "post_id": post_id,
//!     }))?;
//!     Ok(())
//! }
//! ```
//!
//! A function whose manifest subscribes to a topic receives what is sent to
//! it in its [`on_message`](crate::on_message) consumer; see
//! [`Message`](crate::Message).
//!
//! Every call returns a [`CallError`], which `?` turns
//! into the right error for a handler or a consumer.
//!
//! ```no_run
//! # use sluice_sdk::{queue, MessageError};
//! fn forward(payload: &serde_json::Value) -> Result<(), MessageError> {
//!     queue::send("audit", payload)?;
//!     Ok(())
//! }
//! ```

use std::time::Duration;

use serde::Serialize;

use crate::CallError;
use crate::wit::sluice::function::queue as wit;

/// How a message is sent: see [`send_with`].
///
/// ```no_run
/// use std::time::Duration;
/// use sluice_sdk::queue::SendOptions;
///
/// let options = SendOptions {
///     delay: Some(Duration::from_secs(60)),
///     ..SendOptions::default()
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Deliver no sooner than this long after the commit, to the millisecond.
    pub delay: Option<Duration>,
    /// A second send with the same key to the same topic is dropped.
    pub idempotency_key: Option<String>,
}

/// Stages `payload`, serialized as JSON, for delivery to `topic`.
///
/// ```no_run
/// # use sluice_sdk::{queue, Error};
/// # fn f() -> Result<(), Error> {
/// queue::send("todo-created", "alice/42")?;
/// # Ok(()) }
/// ```
pub fn send<T: Serialize + ?Sized>(topic: impl AsRef<str>, payload: &T) -> Result<(), CallError> {
    send_with(topic, payload, SendOptions::default())
}

/// Stages `payload` as it is, bytes and all, for delivery to `topic`.
///
/// ```no_run
/// # use sluice_sdk::{queue, Error};
/// # fn f() -> Result<(), Error> {
/// queue::send_bytes("thumbnails", b"\x89PNG...")?;
/// # Ok(()) }
/// ```
pub fn send_bytes(topic: impl AsRef<str>, payload: impl AsRef<[u8]>) -> Result<(), CallError> {
    stage(topic.as_ref(), payload.as_ref(), SendOptions::default())
}

/// Stages `payload`, serialized as JSON, for delivery to `topic`, delayed or
/// deduplicated as `options` says.
///
/// ```no_run
/// # use std::time::Duration;
/// # use sluice_sdk::{queue::{self, SendOptions}, Error};
/// # fn f(order_id: &str) -> Result<(), Error> {
/// queue::send_with(
///     "reminders",
///     &serde_json::json!({ "order": order_id }),
///     SendOptions {
///         delay: Some(Duration::from_secs(24 * 60 * 60)),
///         idempotency_key: Some(format!("reminder-{order_id}")),
///     },
/// )?;
/// # Ok(()) }
/// ```
pub fn send_with<T: Serialize + ?Sized>(
    topic: impl AsRef<str>,
    payload: &T,
    options: SendOptions,
) -> Result<(), CallError> {
    let payload = serde_json::to_vec(payload)?;
    stage(topic.as_ref(), &payload, options)
}

fn stage(topic: &str, payload: &[u8], options: SendOptions) -> Result<(), CallError> {
    wit::send(topic, payload, &options.into_wit())?;
    Ok(())
}

impl SendOptions {
    fn into_wit(self) -> wit::SendOptions {
        wit::SendOptions {
            // Saturates: a delay beyond u64 milliseconds (584 million years)
            // is as good as never.
            delay_ms: self
                .delay
                .map(|delay| u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            idempotency_key: self.idempotency_key,
        }
    }
}

/// Neither may pass: the host refused a topic, payload or option the
/// function chose, or a per-invocation limit was reached.
impl From<wit::Error> for CallError {
    fn from(err: wit::Error) -> Self {
        match err {
            wit::Error::Invalid(message) => {
                CallError::permanent(format!("queue: invalid argument: {message}"))
            }
            wit::Error::LimitExceeded(message) => {
                CallError::permanent(format!("queue: limit exceeded: {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageError;

    #[test]
    fn options_convert_to_milliseconds() {
        let options = SendOptions {
            delay: Some(Duration::from_micros(1_500_900)),
            idempotency_key: Some("k".to_owned()),
        }
        .into_wit();
        assert_eq!(options.delay_ms, Some(1500));
        assert_eq!(options.idempotency_key.as_deref(), Some("k"));
        assert_eq!(SendOptions::default().into_wit().delay_ms, None);
        assert_eq!(
            SendOptions {
                delay: Some(Duration::MAX),
                ..SendOptions::default()
            }
            .into_wit()
            .delay_ms,
            Some(u64::MAX)
        );
    }

    /// A 500 in a handler (see `call`), given up in a consumer.
    #[test]
    fn no_queue_error_is_transient() {
        for err in [
            wit::Error::Invalid("topic".to_owned()),
            wit::Error::LimitExceeded("sends".to_owned()),
        ] {
            let err = CallError::from(err);
            assert!(!err.is_transient(), "{err:?}");
            assert!(matches!(MessageError::from(err), MessageError::GiveUp(_)));
        }
    }
}
