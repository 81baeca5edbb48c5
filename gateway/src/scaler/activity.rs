//! Whether each function has work, watched: the jobs route marks a publish at once, a poller
//! refreshes queue depths every `scaler.poll_interval_ms`, and gRPC streams wake on either.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use surge_contract::job::FunctionName;
use surge_contract::topology::Topology;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use surge_autoscale::depth::{Depth, ManagementApi};

/// What is known of one function's work.
#[derive(Debug, Clone, Copy, Default)]
pub struct FunctionActivity {
    pub depth: Depth,
    pub last_publish: Option<Instant>,
    /// Whether the broker's figures have counted work since the last publish. Until they do,
    /// the publish alone says a job exists (the figures lag by the broker's statistics
    /// interval, longer on a busy broker).
    pub counted_since_publish: bool,
    /// Whether the management API has answered for this function yet (never without
    /// `scaler.management_url`): until then `depth` is not a figure but a default.
    pub depth_read: bool,
}

impl FunctionActivity {
    /// The queue figures, once read from the broker.
    pub fn observed(&self) -> Option<Depth> {
        self.depth_read.then_some(self.depth)
    }

    fn recently_published(&self, hold: Duration, now: Instant) -> bool {
        !self.counted_since_publish
            && self
                .last_publish
                .is_some_and(|t| now.saturating_duration_since(t) < hold)
    }

    /// Active while any job is queued or in flight, or one was just published.
    pub fn is_active(&self, hold: Duration, now: Instant) -> bool {
        self.depth.total() > 0 || self.recently_published(hold, now)
    }

    /// Queued plus in-flight jobs; at least 1 right after a publish the figures do not show yet.
    pub fn metric(&self, hold: Duration, now: Instant) -> u64 {
        let total = self.depth.total();
        if total == 0 && self.recently_published(hold, now) {
            1
        } else {
            total
        }
    }
}

/// The activity of every function this gateway serves.
#[derive(Debug)]
pub struct Activity {
    hold: Duration,
    functions: HashMap<FunctionName, watch::Sender<FunctionActivity>>,
    /// Counts the polls that changed any function's figures (the console's feed wakes on it).
    changes: watch::Sender<u64>,
}

impl Activity {
    pub fn new(functions: &[FunctionName], hold: Duration) -> Arc<Self> {
        Arc::new(Self {
            hold,
            functions: functions
                .iter()
                .map(|f| (f.clone(), watch::Sender::new(FunctionActivity::default())))
                .collect(),
            changes: watch::Sender::new(0),
        })
    }

    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// A job for `function` was just published: active now, without waiting for a poll.
    pub fn published(&self, function: &FunctionName) {
        if let Some(tx) = self.functions.get(function) {
            tx.send_modify(|a| {
                a.last_publish = Some(Instant::now());
                a.counted_since_publish = false;
            });
        }
    }

    pub fn current(&self, function: &FunctionName) -> Option<FunctionActivity> {
        self.functions.get(function).map(|tx| *tx.borrow())
    }

    /// Wakes after each poll that changed some function's queue figures.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn subscribe(&self, function: &FunctionName) -> Option<watch::Receiver<FunctionActivity>> {
        self.functions.get(function).map(watch::Sender::subscribe)
    }

    /// Refreshes every function's depth each `interval` until `shutdown`. Each refresh
    /// notifies the watchers, which also lets a publish hold expire on time.
    pub async fn poll(
        self: Arc<Self>,
        api: ManagementApi,
        topology: Topology,
        interval: Duration,
        metrics: Arc<crate::metrics::GatewayMetrics>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        let mut ticks: u64 = 0;
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // Dead letters change rarely and only feed metrics: read them every 10th tick.
            let read_dead = ticks.is_multiple_of(10);
            ticks += 1;
            let mut changed = false;
            for (function, tx) in &self.functions {
                if read_dead {
                    match api.depth(&topology.dead_queue(function)).await {
                        Ok(dead) => metrics.dead_letters(function, dead.ready + dead.unacked),
                        Err(e) => {
                            tracing::debug!(%function, error = %e, "reading the dead-letter depth failed")
                        }
                    }
                }
                match api.depth(&topology.function_queue(function)).await {
                    Ok(depth) => tx.send_modify(|a| {
                        metrics.queue(function, depth);
                        if a.depth != depth || !a.depth_read {
                            tracing::debug!(%function, ready = depth.ready, unacked = depth.unacked, "queue depth");
                            changed = true;
                        }
                        a.depth = depth;
                        a.depth_read = true;
                        if depth.total() > 0 {
                            a.counted_since_publish = true;
                        }
                    }),
                    // Keep the last figures: a passing error must not report a busy function idle.
                    Err(e) => {
                        tracing::warn!(%function, error = %e, "reading the queue depth failed")
                    }
                }
            }
            if changed {
                self.changes.send_modify(|n| *n += 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_makes_a_function_active_until_the_hold_ends() {
        let hold = Duration::from_millis(50);
        let published = Instant::now();
        let mut a = FunctionActivity::default();
        assert!(!a.is_active(hold, published));
        a.last_publish = Some(published);
        assert!(a.is_active(hold, published + Duration::from_millis(49)));
        assert_eq!(a.metric(hold, published), 1);
        assert!(!a.is_active(hold, published + hold));
    }

    #[test]
    fn the_hold_ends_early_once_the_figures_count_the_work() {
        let hold = Duration::from_secs(60);
        let a = FunctionActivity {
            depth: Depth::default(),
            last_publish: Some(Instant::now()),
            counted_since_publish: true,
            depth_read: true,
        };
        assert!(
            !a.is_active(hold, Instant::now()),
            "counted, then drained: idle"
        );
    }

    #[test]
    fn in_flight_jobs_count_as_work() {
        let hold = Duration::from_millis(50);
        let a = FunctionActivity {
            depth: Depth {
                ready: 0,
                unacked: 3,
                consumers: 1,
            },
            ..Default::default()
        };
        assert!(
            a.is_active(hold, Instant::now()),
            "a busy function is not idle"
        );
        assert_eq!(a.metric(hold, Instant::now()), 3);
    }
}
