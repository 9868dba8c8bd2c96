//! The error of every [`documents`](crate::documents), [`blobs`](crate::blobs),
//! [`queue`](crate::queue) and [`cache`](crate::cache) call, so that `?` can pick the right answer for the kind of function it
//! is in: an HTTP [`Error`] in a handler, a [`MessageError`] in a consumer.

use std::fmt;

use crate::{Error, MessageError};

/// Why a [`documents`](crate::documents), [`blobs`](crate::blobs),
/// [`queue`](crate::queue) or [`cache`](crate::cache) call failed.
///
/// `?` converts it. In a handler every such failure is [`Error::Internal`]
/// (500): none of them is the caller's fault. In a consumer a store that
/// could not be read (documents or blobs unavailable) is
/// [`MessageError::Retry`], since it may work next time. Everything else would fail the same way on every attempt, so it is
/// [`MessageError::GiveUp`].
///
/// ```no_run
/// use sluice_sdk::{documents::Collection, CallError};
///
/// fn exists(key: &str) -> Result<bool, CallError> {
///     Ok(Collection::<String>::open("names").get(key)?.is_some())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    message: String,
    transient: bool,
}

impl CallError {
    /// A failure that would recur on every attempt.
    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }

    /// A failure that may not recur: the host could not reach its store.
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }

    /// What failed, e.g. `documents: invalid argument: key too long`: the
    /// capability, then the kind of failure, then the host's message.
    ///
    /// ```no_run
    /// # fn f(err: sluice_sdk::CallError) {
    /// eprintln!("{}", err.message());
    /// # }
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the same call may succeed later (the store was unavailable).
    ///
    /// ```no_run
    /// # fn f(err: sluice_sdk::CallError) {
    /// let worth_retrying = err.is_transient();
    /// # }
    /// ```
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CallError {}

/// A value that does not serialize is the function's own doing, and does
/// the same on every attempt.
impl From<serde_json::Error> for CallError {
    fn from(err: serde_json::Error) -> Self {
        Self::permanent(format!("JSON serialization failed: {err}"))
    }
}

/// Every call failure is a 500 in a handler; the message (which the host
/// logs) says which it was.
impl From<CallError> for Error {
    fn from(err: CallError) -> Self {
        Error::internal(err.message)
    }
}

/// In a consumer, only a failure that may pass is worth another attempt.
impl From<CallError> for MessageError {
    fn from(err: CallError) -> Self {
        if err.transient {
            MessageError::retry(err.message)
        } else {
            MessageError::give_up(err.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handler_sees_every_call_failure_as_internal() {
        for err in [CallError::permanent("p"), CallError::transient("t")] {
            let message = err.message().to_owned();
            assert_eq!(Error::from(err), Error::Internal(message));
        }
    }

    #[test]
    fn a_consumer_retries_only_transient_failures() {
        assert_eq!(
            MessageError::from(CallError::transient("store down")),
            MessageError::Retry("store down".to_owned())
        );
        assert_eq!(
            MessageError::from(CallError::permanent("key too long")),
            MessageError::GiveUp("key too long".to_owned())
        );
    }
}
