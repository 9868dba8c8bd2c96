//! The tenant's configuration: values and secrets an operator set with
//! `sluice tenant config set`, so that API keys and per-deployment settings
//! stay out of the function's code.
//!
//! A value set for this function wins over one set for every function of
//! the tenant. Secrets read like any other value; the host keeps them
//! encrypted, shows them to nobody after they are set, and blanks them out
//! of what the function prints.
//!
//! ```no_run
//! use sluice_sdk::{config, Error};
//!
//! fn stripe_key() -> Result<String, Error> {
//!     config::require("STRIPE_API_KEY")
//! }
//!
//! fn page_size() -> usize {
//!     config::get("PAGE_SIZE").and_then(|v| v.parse().ok()).unwrap_or(20)
//! }
//! ```

use crate::Error;
use crate::wit::sluice::function::config as wit;

/// The value named `name`, or `None` when none is set.
pub fn get(name: &str) -> Option<String> {
    wit::get(name)
}

/// The value named `name`; a 500 naming what is missing when none is set,
/// which is the operator's to fix, not the caller's.
pub fn require(name: &str) -> Result<String, Error> {
    get(name).ok_or_else(|| {
        Error::internal(format!(
            "the configuration value {name} is not set (sluice tenant config set)"
        ))
    })
}
