//! Debug-build fault points for the crash tests: `SLUICE_FAULT=<name>` in
//! the environment of a debug build makes the point of that name fail, as a
//! power cut or a bug would there. Release builds have none.

use std::sync::OnceLock;

/// True when this is a debug build started with `SLUICE_FAULT=<name>`.
pub fn active(name: &str) -> bool {
    static FAULT: OnceLock<Option<String>> = OnceLock::new();
    cfg!(debug_assertions)
        && FAULT
            .get_or_init(|| std::env::var("SLUICE_FAULT").ok())
            .as_deref()
            == Some(name)
}
