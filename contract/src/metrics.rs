//! Prometheus metrics. Each process builds one registry at start, hands cheap metric handles
//! to the code that counts, and renders the registry at `/metrics` (OpenMetrics text). Names
//! follow Prometheus conventions (`surge_` prefix, base units, `_total` counters: the client
//! library adds the suffix to counters); labels are bounded sets (function, route, state,
//! reason…), never job, entity or key ids. `docs/metrics.md` lists them.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use prometheus_client::metrics::counter::Counter;

/// The media type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: 1 ms to 2 min (jobs' end-to-end times reach minutes).
pub const SECONDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram family with `SECONDS` buckets.
pub type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

pub fn timings<L: Clone + std::hash::Hash + Eq>() -> Timings<L> {
    Family::new_with_constructor(|| Histogram::new(SECONDS))
}

pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabel {
    pub function: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionState {
    pub function: String,
    pub state: String,
}

/// Where a confirmed publish went: `jobs` (a request), `events` (a completion), `dead`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: &'static str,
}

/// Which group writer (`contract::group`): `jobs`, `claims`, `results`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriterLabel {
    pub writer: &'static str,
}

/// Group sizes: 1 to 256 items.
pub const GROUP_SIZES: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// What every process exports: publish-confirm latency, group-commit sizes and readiness.
#[derive(Debug, Clone)]
pub struct ProcessMetrics {
    pub publish_confirm: Timings<TargetLabel>,
    /// Items per statement of each group writer.
    pub group_sizes: Family<WriterLabel, Histogram, fn() -> Histogram>,
    /// 1 while ready (broker link up, database answering, not draining), else 0.
    pub ready: Gauge,
}

impl ProcessMetrics {
    /// The size histogram of one group writer.
    pub fn group_sizes(&self, writer: &'static str) -> Histogram {
        self.group_sizes
            .get_or_create(&WriterLabel { writer })
            .clone()
    }

    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            publish_confirm: timings(),
            group_sizes: Family::new_with_constructor(|| Histogram::new(GROUP_SIZES)),
            ready: Gauge::default(),
        };
        registry.register(
            "surge_group_commit_size",
            "Items written by one statement of a group writer (jobs, claims, results)",
            metrics.group_sizes.clone(),
        );
        registry.register(
            "surge_publish_confirm_seconds",
            "Time from publishing a message to the broker's confirm",
            metrics.publish_confirm.clone(),
        );
        registry.register(
            "surge_ready",
            "1 while the process is ready (broker link up, database answering, not draining)",
            metrics.ready.clone(),
        );
        metrics
    }

    pub fn confirmed(&self, target: &'static str, took: Duration) {
        self.publish_confirm
            .get_or_create(&TargetLabel { target })
            .observe(seconds(took));
    }
}

/// Renders a registry as `/metrics` answers it.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(error = %e, "metrics could not be rendered");
    }
    text
}

/// A registry shared by the `/metrics` route.
pub type SharedRegistry = Arc<Registry>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_suffix_and_labels_stay_bounded() {
        let mut registry = Registry::default();
        let process = ProcessMetrics::register(&mut registry);
        let dead: Family<FunctionLabel, Counter> = Family::default();
        registry.register(
            "surge_jobs_dead",
            "Jobs that ran out of attempts",
            dead.clone(),
        );
        dead.get_or_create(&FunctionLabel {
            function: "echo".into(),
        })
        .inc();
        process.confirmed("jobs", Duration::from_millis(3));
        process.ready.set(1);
        let text = render(&registry);
        assert!(
            text.contains("surge_jobs_dead_total{function=\"echo\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("surge_publish_confirm_seconds_bucket{le=\"0.005\",target=\"jobs\"} 1"),
            "{text}"
        );
        assert!(text.contains("surge_ready 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
