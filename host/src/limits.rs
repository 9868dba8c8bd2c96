//! Per-invocation limits: what one run of a function may use.
//!
//! The operator sets defaults (`[limits.default]`) and ceilings
//! (`[limits.max]`); a function's manifest may pick its own values under
//! `[limits]`, up to the ceilings. A deploy asking for more is refused,
//! naming the limit.

use serde::{Deserialize, Serialize};

/// The limits one invocation runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time, host calls included: 504 past it.
    pub timeout_ms: u64,
    /// Linear memory a component may grow to.
    pub memory_bytes: usize,
    /// Elements a table may grow to.
    pub table_elements: usize,
    /// Wasm instructions, metered as wasmtime fuel; `None`: not metered.
    pub fuel: Option<u64>,
    /// Response body size: 502 past it.
    pub response_bytes: usize,
    /// Distinct documents written.
    pub writes: usize,
    /// Bytes of documents and message payloads staged in total.
    pub staged_bytes: usize,
    /// Largest document, in bytes of JSON text.
    pub document_bytes: usize,
    /// Queue sends.
    pub messages: usize,
    /// Largest message payload.
    pub payload_bytes: usize,
    /// Bytes of stdout and of stderr kept for the logs; the rest is dropped.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            memory_bytes: 64 * 1024 * 1024,
            table_elements: 100_000,
            fuel: None,
            response_bytes: 8 * 1024 * 1024,
            writes: 10_000,
            staged_bytes: 32 * 1024 * 1024,
            document_bytes: 1024 * 1024,
            messages: 1_000,
            payload_bytes: 256 * 1024,
            log_bytes: 64 * 1024,
        }
    }
}

/// `[limits]` in the host's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// What a function gets when its manifest says nothing.
    pub default: Limits,
    /// The most a manifest may ask for. `max.fuel` set turns fuel metering on.
    pub max: Limits,
    /// Wasm stack per invocation (engine-wide): deeper recursion traps.
    pub max_wasm_stack_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            default: Limits::default(),
            max: Limits {
                timeout_ms: 60_000,
                memory_bytes: 256 * 1024 * 1024,
                table_elements: 1_000_000,
                fuel: None,
                response_bytes: 64 * 1024 * 1024,
                writes: 100_000,
                staged_bytes: 128 * 1024 * 1024,
                document_bytes: 8 * 1024 * 1024,
                messages: 10_000,
                payload_bytes: 1024 * 1024,
                log_bytes: 1024 * 1024,
            },
            max_wasm_stack_bytes: 512 * 1024,
        }
    }
}

/// A manifest's `[limits]`: each one optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsManifest {
    /// See [`Limits::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// See [`Limits::memory_bytes`].
    pub memory_bytes: Option<usize>,
    /// See [`Limits::table_elements`].
    pub table_elements: Option<usize>,
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::response_bytes`].
    pub response_bytes: Option<usize>,
    /// See [`Limits::writes`].
    pub writes: Option<usize>,
    /// See [`Limits::staged_bytes`].
    pub staged_bytes: Option<usize>,
    /// See [`Limits::document_bytes`].
    pub document_bytes: Option<usize>,
    /// See [`Limits::messages`].
    pub messages: Option<usize>,
    /// See [`Limits::payload_bytes`].
    pub payload_bytes: Option<usize>,
    /// See [`Limits::log_bytes`].
    pub log_bytes: Option<usize>,
}

impl LimitsConfig {
    /// The limits of a function whose manifest asks for `asked`; an error
    /// names the first limit above its ceiling.
    pub fn resolve(&self, asked: &LimitsManifest) -> Result<Limits, String> {
        fn pick<T: PartialOrd + Copy + std::fmt::Display>(
            name: &str,
            asked: Option<T>,
            default: T,
            max: T,
        ) -> Result<T, String> {
            match asked {
                Some(v) if v > max => Err(format!(
                    "limits.{name} = {v} is above this host's ceiling of {max}"
                )),
                Some(v) => Ok(v),
                // A default above its ceiling is a configuration slip: the ceiling wins.
                None if default > max => Ok(max),
                None => Ok(default),
            }
        }
        let (d, m) = (&self.default, &self.max);
        let fuel = match (asked.fuel, m.fuel) {
            (Some(_), None) => {
                return Err(
                    "limits.fuel: fuel metering is off on this host (no [limits.max] fuel)".into(),
                );
            }
            (asked_fuel, Some(max)) => Some(pick("fuel", asked_fuel, d.fuel.unwrap_or(max), max)?),
            (None, None) => None,
        };
        macro_rules! pick {
            ($field:ident) => {
                pick(stringify!($field), asked.$field, d.$field, m.$field)?
            };
        }
        Ok(Limits {
            timeout_ms: pick!(timeout_ms),
            memory_bytes: pick!(memory_bytes),
            table_elements: pick!(table_elements),
            fuel,
            response_bytes: pick!(response_bytes),
            writes: pick!(writes),
            staged_bytes: pick!(staged_bytes),
            document_bytes: pick!(document_bytes),
            messages: pick!(messages),
            payload_bytes: pick!(payload_bytes),
            log_bytes: pick!(log_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_picks_up_to_the_ceiling_and_no_further() {
        let config = LimitsConfig::default();
        let none = config
            .resolve(&LimitsManifest::default())
            .expect("defaults");
        assert_eq!(none, Limits::default());
        let asked = LimitsManifest {
            timeout_ms: Some(30_000),
            writes: Some(5),
            ..LimitsManifest::default()
        };
        let picked = config.resolve(&asked).expect("under the ceilings");
        assert_eq!((picked.timeout_ms, picked.writes), (30_000, 5));
        let greedy = LimitsManifest {
            memory_bytes: Some(1 << 40),
            ..LimitsManifest::default()
        };
        let refused = config.resolve(&greedy).expect_err("above the ceiling");
        assert!(refused.contains("limits.memory_bytes"), "{refused}");
        let fuel = LimitsManifest {
            fuel: Some(1_000),
            ..LimitsManifest::default()
        };
        assert!(
            config
                .resolve(&fuel)
                .expect_err("metering off")
                .contains("fuel")
        );
    }
}
