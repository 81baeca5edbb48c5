//! Replays a load against ScaledObject variants with the same [`Scaler`] KEDA's decisions are
//! modelled by, in 100 ms steps: jobs queue, replicas start after a delay, take up to their
//! concurrency, and drain before they go. Deterministic for a given trace and seed; no clock,
//! no threads. Writes nothing: reports are values and renderings are strings.
//!
//! [`Scaler`]: crate::decision::Scaler

mod engine;
mod render;
#[cfg(test)]
mod tests;
mod trace;

use std::time::Duration;

use crate::manifest::FunctionScaling;

pub use self::render::{render_svg, render_table};
pub use self::trace::{Pattern, ServiceTime, TraceError, parse_csv};

/// How long a new replica takes before it takes work, unless a variant says otherwise.
pub const DEFAULT_START_DELAY: Duration = Duration::from_secs(2);

/// One job of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    /// Seconds from the start when the gateway publishes it.
    pub arrival: f64,
    /// Seconds a replica works on it.
    pub service: f64,
}

/// The load every variant is run against: the same jobs with the same service times.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Jobs in arrival order, all before `duration`.
    pub jobs: Vec<Job>,
    /// How long the simulation runs.
    pub duration: Duration,
}

impl Scenario {
    /// Jobs arriving at `arrivals` (those before `duration`), each with a service time drawn
    /// from `service` with `seed`.
    pub fn new(arrivals: &[f64], service: &ServiceTime, seed: u64, duration: Duration) -> Self {
        let end = duration.as_secs_f64();
        let mut arrivals: Vec<f64> = arrivals
            .iter()
            .copied()
            .filter(|t| (0.0..end).contains(t))
            .collect();
        arrivals.sort_by(f64::total_cmp);
        let services = service.draw(arrivals.len(), seed);
        let jobs = arrivals
            .into_iter()
            .zip(services)
            .map(|(arrival, service)| Job { arrival, service })
            .collect();
        Self { jobs, duration }
    }
}

/// One configuration to compare.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Shown in tables and legends.
    pub name: String,
    /// The ScaledObject and Deployment under test.
    pub scaling: FunctionScaling,
    /// Jobs one replica runs at once (its AMQP prefetch).
    pub concurrency: u32,
    /// From a replica's creation until it takes work.
    pub start_delay: Duration,
    /// Whether the gateway's push activation (and its metric) is on.
    pub push: bool,
}

impl Variant {
    /// A variant with the defaults: the Deployment's concurrency (else the runtime's), a
    /// 2 s start delay, push on when the ScaledObject has an external-push trigger.
    pub fn new(name: impl Into<String>, scaling: FunctionScaling) -> Self {
        let concurrency = scaling.concurrency();
        Self {
            name: name.into(),
            push: scaling.external_push.is_some(),
            scaling,
            concurrency,
            start_delay: DEFAULT_START_DELAY,
        }
    }
}

/// The state at one whole second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Seconds since the start.
    pub t: u64,
    /// Replicas that exist: starting, working or draining.
    pub replicas: u32,
    /// Jobs waiting in the queue (ready messages).
    pub queue_depth: u32,
    /// Jobs a replica is running (unacknowledged messages).
    pub in_flight: u32,
}

/// Percentiles of the time from a job's arrival to its first start, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Waits {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// What one variant did with a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The variant's name.
    pub variant: String,
    /// One sample per second, from 0 to the duration.
    pub series: Vec<Sample>,
    /// Waits of the jobs that started (nearest-rank percentiles; 0 when none did).
    pub waits: Waits,
    /// Jobs that arrived.
    pub jobs_arrived: u64,
    /// Jobs that finished.
    pub jobs_done: u64,
    /// Jobs handed back because a draining replica ran out of its termination grace.
    pub jobs_requeued: u64,
    /// Replicas × seconds they existed: what the variant costs.
    pub replica_seconds: f64,
    /// The most replicas that existed at once.
    pub max_replicas: u32,
}

/// Runs `variant` against `scenario`.
pub fn run(variant: &Variant, scenario: &Scenario) -> Report {
    engine::Engine::new(variant, scenario).run()
}
