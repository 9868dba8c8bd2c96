//! Per-invocation limits: what one run of a function may use.
//!
//! The operator sets defaults (`[limits.default]`) and ceilings
//! (`[limits.max]`); a function's manifest may pick its own values under
//! `[limits]`, up to the ceilings. A deploy asking for more is refused,
//! naming the limit.

use serde::{Deserialize, Serialize};

/// The limits one invocation runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Bytes of blobs the function puts (uploads it keeps are bounded by
    /// the route's `max_body_bytes` instead).
    pub blob_bytes: u64,
    /// Queue sends.
    pub messages: usize,
    /// Largest message payload.
    pub payload_bytes: usize,
    /// Bytes of stdout and of stderr kept for the logs; writing more stops the function.
    pub log_bytes: usize,
    /// Requests of this function running at once on this host: 429 past it.
    pub concurrency: usize,
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
            blob_bytes: 64 * 1024 * 1024,
            document_bytes: 1024 * 1024,
            messages: 1_000,
            payload_bytes: 256 * 1024,
            log_bytes: 64 * 1024,
            concurrency: 64,
        }
    }
}

/// One per-invocation limit, named as configuration and manifests name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::timeout_ms`].
    Timeout,
    /// [`Limits::memory_bytes`].
    Memory,
    /// [`Limits::table_elements`].
    Table,
    /// [`LimitsConfig::max_wasm_stack_bytes`].
    Stack,
    /// [`Limits::fuel`].
    Fuel,
    /// [`Limits::response_bytes`].
    Response,
    /// [`Limits::writes`].
    Writes,
    /// [`Limits::staged_bytes`].
    StagedBytes,
    /// [`Limits::blob_bytes`].
    BlobBytes,
    /// [`Limits::document_bytes`].
    Document,
    /// [`Limits::messages`].
    Messages,
    /// [`Limits::payload_bytes`].
    Payload,
    /// [`Limits::log_bytes`].
    Log,
}

impl Limit {
    /// The limit's name in `[limits]`, in manifests, problems and records.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Timeout => "timeout_ms",
            Limit::Memory => "memory_bytes",
            Limit::Table => "table_elements",
            Limit::Stack => "max_wasm_stack_bytes",
            Limit::Fuel => "fuel",
            Limit::Response => "response_bytes",
            Limit::Writes => "writes",
            Limit::StagedBytes => "staged_bytes",
            Limit::BlobBytes => "blob_bytes",
            Limit::Document => "document_bytes",
            Limit::Messages => "messages",
            Limit::Payload => "payload_bytes",
            Limit::Log => "log_bytes",
        }
    }
}

/// A limit one invocation went over: it is stopped and nothing it staged commits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} (limit {} = {value})", limit.name())]
pub struct Exceeded {
    /// Which limit.
    pub limit: Limit,
    /// The limit's value for this function.
    pub value: u64,
    /// What the function tried.
    pub detail: String,
}

impl Exceeded {
    /// `limit` (whose value is `value`) was passed doing `detail`.
    pub fn new(limit: Limit, value: impl TryInto<u64>, detail: impl Into<String>) -> Self {
        Self {
            limit,
            value: value.try_into().unwrap_or(u64::MAX),
            detail: detail.into(),
        }
    }
}

/// `[limits]` in the host's configuration. A table names only the limits
/// it changes: `[limits.max] fuel = …` keeps every other ceiling.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "LimitsToml")]
pub struct LimitsConfig {
    /// What a function gets when its manifest says nothing.
    pub default: Limits,
    /// The most a manifest may ask for. `max.fuel` set turns fuel metering on.
    pub max: Limits,
    /// Wasm stack per invocation (engine-wide): deeper recursion traps.
    pub max_wasm_stack_bytes: usize,
    /// Requests of one tenant running at once on this host, all its
    /// functions together: 429 past it.
    pub tenant_concurrency: usize,
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
                blob_bytes: 1024 * 1024 * 1024,
                document_bytes: 8 * 1024 * 1024,
                messages: 10_000,
                payload_bytes: 1024 * 1024,
                log_bytes: 1024 * 1024,
                concurrency: 1024,
            },
            tenant_concurrency: 128,
            max_wasm_stack_bytes: 512 * 1024,
        }
    }
}

/// `[limits]` as written: only what differs from the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LimitsToml {
    default: LimitsManifest,
    max: LimitsManifest,
    max_wasm_stack_bytes: Option<usize>,
    tenant_concurrency: Option<usize>,
}

impl From<LimitsToml> for LimitsConfig {
    fn from(toml: LimitsToml) -> Self {
        let base = LimitsConfig::default();
        LimitsConfig {
            default: base.default.overlay(&toml.default),
            max: base.max.overlay(&toml.max),
            max_wasm_stack_bytes: toml
                .max_wasm_stack_bytes
                .unwrap_or(base.max_wasm_stack_bytes),
            tenant_concurrency: toml.tenant_concurrency.unwrap_or(base.tenant_concurrency),
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
    /// See [`Limits::blob_bytes`].
    pub blob_bytes: Option<u64>,
    /// See [`Limits::document_bytes`].
    pub document_bytes: Option<usize>,
    /// See [`Limits::messages`].
    pub messages: Option<usize>,
    /// See [`Limits::payload_bytes`].
    pub payload_bytes: Option<usize>,
    /// See [`Limits::log_bytes`].
    pub log_bytes: Option<usize>,
    /// See [`Limits::concurrency`].
    pub concurrency: Option<usize>,
}

impl Limits {
    /// These limits with those `changes` sets replaced.
    fn overlay(&self, changes: &LimitsManifest) -> Limits {
        macro_rules! or {
            ($($field:ident),*) => {
                Limits { fuel: changes.fuel.or(self.fuel), $($field: changes.$field.unwrap_or(self.$field)),* }
            };
        }
        or!(
            timeout_ms,
            memory_bytes,
            table_elements,
            response_bytes,
            writes,
            staged_bytes,
            blob_bytes,
            document_bytes,
            messages,
            payload_bytes,
            log_bytes,
            concurrency
        )
    }
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
            blob_bytes: pick!(blob_bytes),
            document_bytes: pick!(document_bytes),
            messages: pick!(messages),
            payload_bytes: pick!(payload_bytes),
            log_bytes: pick!(log_bytes),
            concurrency: pick!(concurrency),
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

    #[test]
    fn a_config_table_changes_only_what_it_names() {
        let config: LimitsConfig =
            toml::from_str("[max]\nfuel = 5\n[default]\ntimeout_ms = 7\n").expect("parses");
        let base = LimitsConfig::default();
        assert_eq!(config.max.fuel, Some(5));
        assert_eq!(config.max.memory_bytes, base.max.memory_bytes);
        assert_eq!(config.default.timeout_ms, 7);
        assert_eq!(config.default.writes, base.default.writes);
        assert!(toml::from_str::<LimitsConfig>("[max]\nmemory = 1\n").is_err());
    }
}
