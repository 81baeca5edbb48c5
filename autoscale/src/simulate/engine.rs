//! The step loop: 100 ms ticks of arrivals, completions, drains, KEDA's poll (every
//! `pollingInterval`, or at once on a push while at zero), the HPA's sync (every 15 s),
//! dispatch and accounting, in that order every tick. Integer ticks keep it exact and
//! repeatable.

use std::collections::VecDeque;
use std::time::Duration;

use super::pods::Fleet;
use super::{Report, Sample, Scenario, StartError, Variant, Wait, Waits};
use crate::decision::{HPA_SYNC_PERIOD, Observation, Scaler};

const TICKS_PER_SECOND: u64 = 10;

pub(super) struct Engine<'a> {
    scenario: &'a Scenario,
    scaler: Scaler,
    push: bool,
    /// The trigger's `useCachedMetrics`: the HPA sees KEDA's last poll, not a fresh read.
    cached_metrics: bool,
    last_poll: Option<Observation>,
    poll_ticks: u64,
    next_poll: u64,
    hpa_ticks: u64,
    next_arrival: usize,
    queue: VecDeque<usize>,
    fleet: Fleet,
    started: Vec<bool>,
    waits: Vec<f64>,
    done: u64,
    requeued: u64,
    pod_ticks: u64,
    max_pods: u32,
    series: Vec<Sample>,
    name: String,
}

impl<'a> Engine<'a> {
    pub fn new(variant: &Variant, scenario: &'a Scenario) -> Result<Self, StartError> {
        let mut spec = variant.scaling.clone();
        // Push on means the gateway's trigger is there, with its metric; off means neither.
        spec.external_push = match (variant.push, spec.external_push) {
            (false, _) => None,
            (true, None) => Some("simulated".to_owned()),
            (true, some) => some,
        };
        let resting = spec.idle_replica_count.unwrap_or(spec.min_replicas);
        let replicas = scenario.start.replicas.unwrap_or(resting);
        // The runtime gives up on in-flight jobs after its own grace, Kubernetes after its.
        let runtime_grace = Duration::from_millis(spec.grace_ms());
        let concurrency = variant.concurrency.max(1);
        let mut fleet = Fleet::new(
            replicas,
            usize::try_from(concurrency).unwrap_or(1),
            ticks(variant.start_delay),
            ticks(spec.termination_grace.min(runtime_grace)),
        );
        let in_flight = usize::try_from(scenario.start.in_flight).unwrap_or(usize::MAX);
        let running = scenario
            .jobs
            .iter()
            .take(in_flight)
            .enumerate()
            .map(|(index, job)| (index, service_ticks(job.service)));
        if !fleet.preload(running) {
            return Err(StartError::InFlightOverCapacity {
                variant: variant.name.clone(),
                in_flight: scenario.start.in_flight,
                replicas,
                concurrency,
                capacity: u64::from(replicas) * u64::from(concurrency),
            });
        }
        let mut started = vec![false; scenario.jobs.len()];
        started.iter_mut().take(in_flight).for_each(|s| *s = true);
        Ok(Self {
            scenario,
            scaler: Scaler::starting_at(&spec, replicas),
            push: variant.push,
            cached_metrics: spec.use_cached_metrics,
            last_poll: None,
            poll_ticks: ticks(spec.polling_interval).max(1),
            next_poll: 0,
            hpa_ticks: ticks(HPA_SYNC_PERIOD),
            next_arrival: in_flight.min(scenario.jobs.len()),
            queue: VecDeque::new(),
            fleet,
            started,
            waits: Vec::new(),
            done: 0,
            requeued: 0,
            pod_ticks: 0,
            max_pods: 0,
            series: Vec::new(),
            name: variant.name.clone(),
        })
    }

    pub fn run(mut self) -> Report {
        let end = ticks(self.scenario.duration);
        for tick in 0..=end {
            let arrived = self.arrive(tick);
            self.done += self.fleet.complete(tick);
            self.requeued += self.fleet.reap(tick, &mut self.queue);
            if tick >= self.next_poll {
                self.poll(tick);
                self.next_poll += self.poll_ticks;
            } else if arrived && self.push && self.scaler.replicas() == 0 {
                // The gateway's stream says "active" at once; KEDA scales without waiting.
                self.poll(tick);
            }
            if tick.is_multiple_of(self.hpa_ticks) {
                self.sync(tick);
            }
            self.dispatch(tick);
            self.account(tick);
        }
        self.report(end)
    }

    fn arrive(&mut self, tick: u64) -> bool {
        let now = seconds(tick);
        let before = self.next_arrival;
        while let Some(job) = self.scenario.jobs.get(self.next_arrival) {
            if job.arrival > now {
                break;
            }
            self.queue.push_back(self.next_arrival);
            self.next_arrival += 1;
        }
        self.next_arrival > before
    }

    /// What the triggers read now: queued and running jobs, and the gateway's activity.
    fn observation(&self, tick: u64) -> Observation {
        let (ready, in_flight) = (self.queue.len(), self.fleet.in_flight());
        Observation {
            now: Duration::from_millis(tick * 1000 / TICKS_PER_SECOND),
            ready: ready as f64,
            in_flight: in_flight as f64,
            pushed_active: self.push && ready + in_flight > 0,
        }
    }

    fn poll(&mut self, tick: u64) {
        let observation = self.observation(tick);
        self.last_poll = Some(observation);
        let decision = self.scaler.poll(&observation);
        self.fleet.reconcile(tick, decision.replicas as usize);
    }

    fn sync(&mut self, tick: u64) {
        let fresh = self.observation(tick);
        let observation = match self.last_poll {
            Some(cached) if self.cached_metrics => Observation {
                now: fresh.now,
                ..cached
            },
            _ => fresh,
        };
        let decision = self.scaler.sync(&observation);
        self.fleet.reconcile(tick, decision.replicas as usize);
    }

    fn dispatch(&mut self, tick: u64) {
        let now = seconds(tick);
        let (jobs, started, waits) = (&self.scenario.jobs, &mut self.started, &mut self.waits);
        self.fleet.dispatch(tick, &mut self.queue, |index| {
            let job = jobs[index];
            if !started[index] {
                started[index] = true;
                waits.push(now - job.arrival);
            }
            service_ticks(job.service)
        });
    }

    fn account(&mut self, tick: u64) {
        let pods = u32::try_from(self.fleet.len()).unwrap_or(u32::MAX);
        self.pod_ticks += u64::from(pods);
        self.max_pods = self.max_pods.max(pods);
        if tick.is_multiple_of(TICKS_PER_SECOND) {
            self.series.push(Sample {
                t: tick / TICKS_PER_SECOND,
                replicas: pods,
                queue_depth: u32::try_from(self.queue.len()).unwrap_or(u32::MAX),
                in_flight: u32::try_from(self.fleet.in_flight()).unwrap_or(u32::MAX),
            });
        }
    }

    fn report(self, end: u64) -> Report {
        // Jobs still waiting count as having waited until the end, at least.
        let end = seconds(end);
        let unstarted = (0..self.next_arrival)
            .filter(|&i| !self.started[i])
            .map(|i| (end - self.scenario.jobs[i].arrival, true));
        let mut waits: Vec<(f64, bool)> = self.waits.iter().map(|&w| (w, false)).collect();
        waits.extend(unstarted);
        // Ties put known waits first, so a bound shows only where it must.
        waits.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Report {
            variant: self.name,
            series: self.series,
            waits: Waits {
                p50: percentile(&waits, 50.0),
                p95: percentile(&waits, 95.0),
                p99: percentile(&waits, 99.0),
            },
            jobs_arrived: self.next_arrival as u64,
            jobs_done: self.done,
            jobs_requeued: self.requeued,
            replica_seconds: self.pod_ticks as f64 / TICKS_PER_SECOND as f64,
            max_replicas: self.max_pods,
        }
    }
}

fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_millis() * u128::from(TICKS_PER_SECOND) / 1000).unwrap_or(u64::MAX)
}

fn seconds(tick: u64) -> f64 {
    tick as f64 / TICKS_PER_SECOND as f64
}

/// Ticks a job of `service` seconds runs, at least one.
fn service_ticks(service: f64) -> u64 {
    ((service * TICKS_PER_SECOND as f64).ceil() as u64).max(1)
}

/// Nearest-rank percentile of sorted (wait, never started) pairs; 0 when there are none. A
/// job that never started waited at least its figure, so the rank's value is a lower bound
/// whenever one of them is at or below it.
fn percentile(sorted: &[(f64, bool)], p: f64) -> Wait {
    if sorted.is_empty() {
        return Wait::default();
    }
    let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Wait {
        seconds: sorted[rank - 1].0,
        at_least: sorted[..rank].iter().any(|&(_, unstarted)| unstarted),
    }
}
