//! The HPA controller's reconcile of the HPA KEDA creates, every [`HPA_SYNC_PERIOD`]
//! (kubernetes pkg/controller/podautoscaler/horizontal.go, `reconcileAutoscaler`): nothing at
//! zero replicas (KEDA's part), back within `[minReplicas, maxReplicas]` first, else the
//! largest count any metric asks for, normalized by the behavior or, without one, the older
//! fixed rules (`normalize`).
//!
//! [`HPA_SYNC_PERIOD`]: super::HPA_SYNC_PERIOD

use super::normalize::Adjustment;
use super::{Decision, Observation, Scaler, show_num};

/// The HPA leaves the count alone while usage is within this fraction of the target
/// (`--horizontal-pod-autoscaler-tolerance`, 0.1 by default).
const TOLERANCE: f64 = 0.1;

impl Scaler {
    /// One HPA sync, on the metrics as KEDA's metrics server serves them now.
    pub fn sync(&mut self, obs: &Observation) -> Decision {
        let current = self.replicas;
        if current == 0 {
            // "scaling is disabled since the replica count of the target is zero".
            let reason = "hpa: scaling disabled at 0 replicas (KEDA activates)".to_owned();
            return self.decide(0, reason);
        }
        let (replicas, reason) = if current > self.max {
            let max = self.max;
            (max, format!("hpa: {current} above maxReplicaCount {max}"))
        } else if current < self.floor {
            let floor = self.floor;
            let reason = format!("hpa: {current} below max(minReplicaCount,1) {floor}");
            (floor, reason)
        } else {
            let (desired, mut reason) = self.metric_desired(obs);
            let bounds = (self.floor, self.max);
            let (replicas, adjustment) = self.hpa.normalize(obs.now, current, desired, bounds);
            match adjustment {
                None => {}
                Some(Adjustment::RaisedToMin) => {
                    reason.push_str(&format!(", raised to max(minReplicaCount,1) {replicas}"))
                }
                Some(Adjustment::ClampedToMax) => {
                    reason.push_str(&format!(", clamped to maxReplicaCount {replicas}"));
                }
                Some(Adjustment::Because(why)) => reason = why,
            }
            (replicas, reason)
        };
        if replicas != current {
            self.hpa.record_scale(obs.now, current, replicas);
        }
        self.decide(replicas, reason)
    }

    /// The largest count any metric asks for (`computeReplicasForMetrics` takes the maximum).
    fn metric_desired(&self, obs: &Observation) -> (u32, String) {
        let queue = self.one_metric(self.queue_metric(obs), self.target_value, "");
        let Some(target) = self.push_target else {
            return queue;
        };
        // The gateway counts queued and running jobs (its own figures, whatever the rabbitmq
        // trigger's protocol), and at least 1 right after a publish they do not show yet.
        let total = obs.ready + obs.in_flight;
        let value = if obs.pushed_active {
            total.max(1.0)
        } else {
            total
        };
        let push = self.one_metric(value, target, " (external-push metric)");
        if push.0 > queue.0 { push } else { queue }
    }

    /// An AverageValue external metric (replica_calculator.go,
    /// `GetExternalPerPodMetricReplicas`): `ceil(total / target)`, unless
    /// `|total / (target × current) - 1| <= 0.1`.
    fn one_metric(&self, value: f64, target: f64, which: &str) -> (u32, String) {
        let current = self.replicas;
        let ratio = value / (target * f64::from(current));
        if (ratio - 1.0).abs() <= TOLERANCE {
            let reason = format!(
                "tolerance: {}/{current}/{} = {ratio:.2} within 10%, keep {current}{which}",
                show_num(value),
                show_num(target)
            );
            return (current, reason);
        }
        // `as` saturates: a zero target asks for the maximum, NaN for the minimum.
        let desired = (value / target).ceil() as u32;
        let reason = format!(
            "hpa: ceil({}/{})={desired}{which}",
            show_num(value),
            show_num(target)
        );
        (desired, reason)
    }
}
