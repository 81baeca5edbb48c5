//! Replays a load against ScaledObject variants with the same [`Scaler`] KEDA's and the
//! HPA's decisions are modelled by, in 100 ms steps: KEDA polls every `pollingInterval` (and
//! at once on a push), the HPA syncs every 15 s, jobs queue, replicas start after a delay, take
//! up to their concurrency, and drain before they go. A run may start from a given state
//! (replicas running, jobs queued and in flight). Deterministic for a given trace and seed; no
//! clock, no threads. Writes nothing: reports are values and renderings are strings.
//!
//! [`Scaler`]: crate::decision::Scaler

/// The step loop: polls, syncs, arrivals and dispatch per tick.
mod engine;
/// The replicas: start delay, concurrency, drain.
mod pods;
/// The table and the SVG chart.
mod render;
#[cfg(test)]
mod tests;
/// Arrival patterns, CSV traces and service-time draws.
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
    /// Jobs in arrival order, all before `duration`; those of `start` first, at t = 0.
    pub jobs: Vec<Job>,
    /// How long the simulation runs.
    pub duration: Duration,
    /// The state at t = 0.
    pub start: Start,
}

/// The state a run starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Start {
    /// Replicas running and ready at t = 0; `None`: the ScaledObject's resting count
    /// (`idleReplicaCount`, else `minReplicaCount`).
    pub replicas: Option<u32>,
    /// Jobs waiting in the queue at t = 0.
    pub ready: u32,
    /// Jobs the replicas run at t = 0, each just started (a full service time ahead).
    pub in_flight: u32,
}

impl Start {
    /// Parses `READY` or `READY:IN_FLIGHT` (the `--initial-depth` of `surge simulate`).
    pub fn parse_depth(spec: &str) -> Result<(u32, u32), TraceError> {
        let bad = || TraceError::Spec {
            spec: spec.to_owned(),
            problem: "expected READY or READY:IN_FLIGHT, whole numbers of jobs".to_owned(),
        };
        let (ready, in_flight) = spec.split_once(':').unwrap_or((spec, "0"));
        let count = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
        Ok((count(ready)?, count(in_flight)?))
    }
}

/// Why a run cannot start from the state it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// More jobs in flight than the starting replicas can hold.
    #[error(
        "{variant}: {in_flight} jobs in flight at the start need room on running replicas, \
         and {replicas} replicas × concurrency {concurrency} hold {capacity} \
         (raise --initial-replicas)"
    )]
    InFlightOverCapacity {
        variant: String,
        in_flight: u32,
        replicas: u32,
        concurrency: u32,
        capacity: u64,
    },
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
        Self {
            jobs,
            duration,
            start: Start::default(),
        }
    }

    /// The same load from `start`: its queued and running jobs come first, at t = 0, with
    /// service times from a stream of their own (so the other jobs keep theirs).
    pub fn from_start(mut self, start: Start, service: &ServiceTime, seed: u64) -> Self {
        let count = usize::try_from(start.ready + start.in_flight).unwrap_or(usize::MAX);
        let initial = service
            .draw(count, seed ^ START_STREAM)
            .into_iter()
            .map(|service| Job {
                arrival: 0.0,
                service,
            });
        self.jobs = initial.chain(self.jobs).collect();
        self.start = start;
        self
    }
}

/// Seeds the service times of the jobs a run starts with apart from the others'.
const START_STREAM: u64 = 0x5747_4152_5400_0001;

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

/// Percentiles of the time from a job's arrival to its first start. Jobs that never started
/// count too, as having waited at least until the end of the run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Waits {
    /// Median.
    pub p50: Wait,
    /// 95th percentile.
    pub p95: Wait,
    /// 99th percentile.
    pub p99: Wait,
}

/// One percentile of the waits.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Wait {
    /// Seconds.
    pub seconds: f64,
    /// Whether jobs that never started reach down to this percentile: the true value is at
    /// least `seconds`, and more the longer they would wait.
    pub at_least: bool,
}

/// What one variant did with a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The variant's name.
    pub variant: String,
    /// One sample per second, from 0 to the duration.
    pub series: Vec<Sample>,
    /// Waits of the jobs that arrived (nearest-rank percentiles; 0 when none did).
    pub waits: Waits,
    /// Jobs that arrived, with those queued or in flight at the start.
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

/// Runs `variant` against `scenario`; fails only when its start does not fit the variant.
pub fn run(variant: &Variant, scenario: &Scenario) -> Result<Report, StartError> {
    Ok(engine::Engine::new(variant, scenario)?.run())
}
