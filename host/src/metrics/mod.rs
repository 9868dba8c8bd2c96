//! Prometheus metrics, served at `/metrics` on the admin listener: requests
//! and messages by tenant, function and outcome, latency per pipeline stage,
//! queue depth and dead letters, instance-pool use.

mod minutes;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use minutes::{MinuteFigures, Minutes, TenantMinute};

/// Labels of a request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tenant: String,
    function: String,
    status: u16,
}

/// Labels of a message count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    tenant: String,
    function: String,
    outcome: String,
}

/// Labels of a stage latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// Labels of a per-function gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    tenant: String,
    function: String,
}

type StageHistograms = Family<StageLabels, Histogram, fn() -> Histogram>;

/// Every metric of the host.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    stages: StageHistograms,
    queue_depth: Family<FunctionLabels, Gauge>,
    dead_letters: Family<FunctionLabels, Gauge>,
    instances_in_use: Gauge,
    instances_max: Gauge,
    components_loaded: Gauge,
    /// The last hour, per minute and tenant.
    pub minutes: Minutes,
}

fn stage_histogram() -> Histogram {
    // 20 µs to about 5 s.
    Histogram::new(exponential_buckets(0.000_02, 2.5, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by tenant, function and status",
            requests.clone(),
        );
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "messages",
            "Message deliveries run, by tenant, function and outcome",
            messages.clone(),
        );
        let stages: StageHistograms = Family::new_with_constructor(stage_histogram);
        registry.register(
            "stage_duration_seconds",
            "Time spent in each pipeline stage",
            stages.clone(),
        );
        let queue_depth = Family::<FunctionLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Deliveries waiting or running, by consumer",
            queue_depth.clone(),
        );
        let dead_letters = Family::<FunctionLabels, Gauge>::default();
        registry.register(
            "dead_letters",
            "Dead letters, by consumer",
            dead_letters.clone(),
        );
        let instances_in_use = Gauge::default();
        registry.register(
            "instances_in_use",
            "Component instances alive in the pool",
            instances_in_use.clone(),
        );
        let instances_max = Gauge::default();
        registry.register(
            "instances_max",
            "Size of the instance pool",
            instances_max.clone(),
        );
        let components_loaded = Gauge::default();
        registry.register(
            "components_loaded",
            "Compiled components in memory; functions that deploy the same bytes share one",
            components_loaded.clone(),
        );
        Self {
            registry,
            requests,
            messages,
            stages,
            queue_depth,
            dead_letters,
            instances_in_use,
            instances_max,
            components_loaded,
            minutes: Minutes::default(),
        }
    }
}

impl Metrics {
    /// Counts a request answered with `status`; tenant and function are
    /// empty for a request that matched no route.
    pub fn request(&self, tenant: &str, function: &str, status: u16, took: Duration) {
        self.minutes.request(tenant, status, took);
        self.requests
            .get_or_create(&RequestLabels {
                tenant: tenant.to_owned(),
                function: function.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts a delivery run that ended with `outcome`.
    pub fn message(&self, tenant: &str, function: &str, outcome: &str) {
        self.minutes.message(tenant, outcome != "ok");
        self.messages
            .get_or_create(&MessageLabels {
                tenant: tenant.to_owned(),
                function: function.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records the time a request spent in `stage`.
    pub fn stage(&self, stage: &'static str, elapsed: Duration) {
        self.stages
            .get_or_create(&StageLabels { stage })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time since `since` for `stage`; returns now, where the next stage starts.
    pub fn stage_done(&self, stage: &'static str, since: std::time::Instant) -> std::time::Instant {
        let now = std::time::Instant::now();
        self.stage(stage, now - since);
        now
    }

    /// The text exposition, with the gauges set from these readings.
    pub fn render(
        &self,
        depth: &[(String, String, i64)],
        dead: &[(String, String, i64)],
        instances: (usize, usize),
        components: usize,
    ) -> String {
        for (family, rows) in [(&self.queue_depth, depth), (&self.dead_letters, dead)] {
            family.clear();
            for (tenant, function, n) in rows {
                let labels = FunctionLabels {
                    tenant: tenant.clone(),
                    function: function.clone(),
                };
                family.get_or_create(&labels).set(*n);
            }
        }
        self.instances_in_use
            .set(i64::try_from(instances.0).unwrap_or(i64::MAX));
        self.instances_max
            .set(i64::try_from(instances.1).unwrap_or(i64::MAX));
        self.components_loaded
            .set(i64::try_from(components).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
