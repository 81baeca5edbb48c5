//! The step loop: 100 ms ticks of arrivals, completions, drains, scaler observations and
//! dispatch, in that order every tick. Integer ticks keep it exact and repeatable.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Report, Sample, Scenario, Variant, Waits};
use crate::decision::{Observation, Scaler};

const TICKS_PER_SECOND: u64 = 10;

/// A replica: taking work once `ready_at`, draining once `drain_until` is set.
#[derive(Debug)]
struct Pod {
    ready_at: u64,
    /// Jobs it runs: (finish tick, job index).
    running: Vec<(u64, usize)>,
    /// The tick its drain ends, jobs finished or not (SIGTERM grace).
    drain_until: Option<u64>,
}

pub(super) struct Engine<'a> {
    scenario: &'a Scenario,
    scaler: Scaler,
    push: bool,
    concurrency: usize,
    start_ticks: u64,
    drain_ticks: u64,
    poll_ticks: u64,
    next_poll: u64,
    next_arrival: usize,
    queue: VecDeque<usize>,
    pods: Vec<Pod>,
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
    pub fn new(variant: &Variant, scenario: &'a Scenario) -> Self {
        let mut spec = variant.scaling.clone();
        // Push on means the gateway's trigger is there, with its metric; off means neither.
        spec.external_push = match (variant.push, spec.external_push) {
            (false, _) => None,
            (true, None) => Some("simulated".to_owned()),
            (true, some) => some,
        };
        // The runtime gives up on in-flight jobs after its own grace, Kubernetes after its.
        let runtime_grace = Duration::from_millis(spec.grace_ms());
        Self {
            scenario,
            scaler: Scaler::new(&spec),
            push: variant.push,
            concurrency: usize::try_from(variant.concurrency.max(1)).unwrap_or(1),
            start_ticks: ticks(variant.start_delay),
            drain_ticks: ticks(spec.termination_grace.min(runtime_grace)),
            poll_ticks: ticks(spec.polling_interval).max(1),
            next_poll: 0,
            next_arrival: 0,
            queue: VecDeque::new(),
            pods: Vec::new(),
            started: vec![false; scenario.jobs.len()],
            waits: Vec::new(),
            done: 0,
            requeued: 0,
            pod_ticks: 0,
            max_pods: 0,
            series: Vec::new(),
            name: variant.name.clone(),
        }
    }

    pub fn run(mut self) -> Report {
        let end = ticks(self.scenario.duration);
        for tick in 0..=end {
            let arrived = self.arrive(tick);
            self.complete(tick);
            self.reap(tick);
            if tick >= self.next_poll {
                self.observe(tick);
                self.next_poll += self.poll_ticks;
            } else if arrived && self.push && self.scaler.replicas() == 0 {
                // The gateway's stream says "active" at once; KEDA scales without waiting.
                self.observe(tick);
            }
            self.dispatch(tick);
            self.account(tick);
        }
        self.report()
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

    fn complete(&mut self, tick: u64) {
        for pod in &mut self.pods {
            let before = pod.running.len();
            pod.running.retain(|&(finish, _)| finish > tick);
            self.done += (before - pod.running.len()) as u64;
        }
    }

    /// Drained replicas go; those out of grace hand their jobs back first.
    fn reap(&mut self, tick: u64) {
        let mut kept = Vec::with_capacity(self.pods.len());
        for pod in std::mem::take(&mut self.pods) {
            match pod.drain_until {
                Some(_) if pod.running.is_empty() => {}
                Some(until) if tick >= until => {
                    for &(_, job) in pod.running.iter().rev() {
                        self.queue.push_front(job);
                        self.requeued += 1;
                    }
                }
                _ => kept.push(pod),
            }
        }
        self.pods = kept;
    }

    fn in_flight(&self) -> usize {
        self.pods.iter().map(|p| p.running.len()).sum()
    }

    fn observe(&mut self, tick: u64) {
        let depth = self.queue.len() + self.in_flight();
        let decision = self.scaler.observe(&Observation {
            now: Duration::from_millis(tick * 1000 / TICKS_PER_SECOND),
            queue_depth: depth as f64,
            pushed_active: self.push && depth > 0,
        });
        self.reconcile(tick, decision.replicas as usize);
    }

    /// Starts or drains replicas to reach `target` that are not draining.
    fn reconcile(&mut self, tick: u64, target: usize) {
        let mut live: Vec<usize> = (0..self.pods.len())
            .filter(|&i| self.pods[i].drain_until.is_none())
            .collect();
        for _ in live.len()..target {
            self.pods.push(Pod {
                ready_at: tick.saturating_add(self.start_ticks),
                running: Vec::new(),
                drain_until: None,
            });
        }
        if live.len() <= target {
            return;
        }
        // Like a ReplicaSet: not-ready replicas first, then the least busy, then the newest.
        live.sort_by_key(|&i| {
            let pod = &self.pods[i];
            (
                pod.ready_at <= tick,
                pod.running.len(),
                std::cmp::Reverse(i),
            )
        });
        for &i in &live[..live.len() - target] {
            self.pods[i].drain_until = Some(tick.saturating_add(self.drain_ticks));
        }
    }

    fn dispatch(&mut self, tick: u64) {
        let now = seconds(tick);
        for pod in &mut self.pods {
            if pod.ready_at > tick || pod.drain_until.is_some() {
                continue;
            }
            while pod.running.len() < self.concurrency {
                let Some(index) = self.queue.pop_front() else {
                    return;
                };
                let job = self.scenario.jobs[index];
                if !self.started[index] {
                    self.started[index] = true;
                    self.waits.push(now - job.arrival);
                }
                let service = ((job.service * TICKS_PER_SECOND as f64).ceil() as u64).max(1);
                pod.running.push((tick + service, index));
            }
        }
    }

    fn account(&mut self, tick: u64) {
        let pods = u32::try_from(self.pods.len()).unwrap_or(u32::MAX);
        self.pod_ticks += u64::from(pods);
        self.max_pods = self.max_pods.max(pods);
        if tick.is_multiple_of(TICKS_PER_SECOND) {
            self.series.push(Sample {
                t: tick / TICKS_PER_SECOND,
                replicas: pods,
                queue_depth: u32::try_from(self.queue.len()).unwrap_or(u32::MAX),
                in_flight: u32::try_from(self.in_flight()).unwrap_or(u32::MAX),
            });
        }
    }

    fn report(mut self) -> Report {
        self.waits.sort_by(f64::total_cmp);
        Report {
            variant: self.name,
            series: self.series,
            waits: Waits {
                p50: percentile(&self.waits, 50.0),
                p95: percentile(&self.waits, 95.0),
                p99: percentile(&self.waits, 99.0),
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

/// Nearest-rank percentile of sorted values; 0 when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
