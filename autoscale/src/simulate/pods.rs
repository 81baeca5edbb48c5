//! The replicas of a simulated function, in ticks: started after a delay, taking up to their
//! concurrency, drained with a deadline when scaled in (SIGTERM grace), handing back what they
//! could not finish. Knows nothing of the scaler; the engine tells it the target count.

use std::collections::VecDeque;

/// A replica: taking work once `ready_at`, draining once `drain_until` is set.
#[derive(Debug)]
struct Pod {
    ready_at: u64,
    /// Jobs it runs: (finish tick, job index).
    running: Vec<(u64, usize)>,
    /// The tick its drain ends, jobs finished or not.
    drain_until: Option<u64>,
}

/// Every replica of the function, serving or draining.
#[derive(Debug)]
pub(super) struct Fleet {
    pods: Vec<Pod>,
    concurrency: usize,
    start_ticks: u64,
    drain_ticks: u64,
}

impl Fleet {
    /// `running` replicas ready at tick 0; new ones take `start_ticks`, and a drain ends
    /// after `drain_ticks`.
    pub fn new(running: u32, concurrency: usize, start_ticks: u64, drain_ticks: u64) -> Self {
        let pods = (0..running)
            .map(|_| Pod {
                ready_at: 0,
                running: Vec::new(),
                drain_until: None,
            })
            .collect();
        Self {
            pods,
            concurrency,
            start_ticks,
            drain_ticks,
        }
    }

    /// Replicas that exist: starting, serving or draining.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Jobs being run.
    pub fn in_flight(&self) -> usize {
        self.pods.iter().map(|p| p.running.len()).sum()
    }

    /// Puts `jobs` (job index, finish tick) on the replicas as already running, filling each
    /// in turn; false when they do not fit.
    pub fn preload(&mut self, jobs: impl IntoIterator<Item = (usize, u64)>) -> bool {
        let mut pods = self.pods.iter_mut();
        let mut pod = pods.next();
        for (index, finish) in jobs {
            while pod
                .as_ref()
                .is_some_and(|p| p.running.len() >= self.concurrency)
            {
                pod = pods.next();
            }
            let Some(p) = pod.as_mut() else {
                return false;
            };
            p.running.push((finish, index));
        }
        true
    }

    /// Finishes the jobs due by `tick`; returns how many.
    pub fn complete(&mut self, tick: u64) -> u64 {
        let mut done = 0;
        for pod in &mut self.pods {
            let before = pod.running.len();
            pod.running.retain(|&(finish, _)| finish > tick);
            done += (before - pod.running.len()) as u64;
        }
        done
    }

    /// Drained replicas go; those out of grace hand their jobs back to the front of `queue`
    /// first. Returns how many jobs were handed back.
    pub fn reap(&mut self, tick: u64, queue: &mut VecDeque<usize>) -> u64 {
        let mut requeued = 0;
        let mut kept = Vec::with_capacity(self.pods.len());
        for pod in std::mem::take(&mut self.pods) {
            match pod.drain_until {
                Some(_) if pod.running.is_empty() => {}
                Some(until) if tick >= until => {
                    for &(_, job) in pod.running.iter().rev() {
                        queue.push_front(job);
                        requeued += 1;
                    }
                }
                _ => kept.push(pod),
            }
        }
        self.pods = kept;
        requeued
    }

    /// Starts or drains replicas so that `target` are not draining.
    pub fn reconcile(&mut self, tick: u64, target: usize) {
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

    /// Hands jobs from `queue` to ready, serving replicas with room; `start` is told of each
    /// and answers how many ticks it runs.
    pub fn dispatch(
        &mut self,
        tick: u64,
        queue: &mut VecDeque<usize>,
        mut start: impl FnMut(usize) -> u64,
    ) {
        for pod in &mut self.pods {
            if pod.ready_at > tick || pod.drain_until.is_some() {
                continue;
            }
            while pod.running.len() < self.concurrency {
                let Some(index) = queue.pop_front() else {
                    return;
                };
                pod.running.push((tick + start(index), index));
            }
        }
    }
}
