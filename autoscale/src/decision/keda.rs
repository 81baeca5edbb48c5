//! KEDA's scale loop for one ScaledObject, run every `pollingInterval` and at once when an
//! external-push trigger's stream turns active (kedacore/keda pkg/scaling/executor/
//! scale_scaledobjects.go, `RequestScale`): activation from zero or the idle count, the
//! cooldown back to zero or the idle count, and `minReplicaCount` while inactive. Between the
//! floor and the maximum the count is the HPA's; KEDA leaves it alone.

use std::time::Duration;

use super::{Decision, Observation, Scaler, show_num, show_secs};

impl Scaler {
    /// One KEDA poll: reads the triggers, records activity, and scales from or to zero.
    pub fn poll(&mut self, obs: &Observation) -> Decision {
        let queue = self.queue_metric(obs);
        // Active strictly above activationValue (rabbitmq_scaler.go, `GetMetricsAndActivity`);
        // any active trigger makes the object active (scale_handler.go, `getScaledObjectState`).
        let by_queue = queue > self.activation_value;
        self.active = by_queue || obs.pushed_active;
        let counted = if self.counts_in_flight {
            "depth"
        } else {
            "ready"
        };
        let depth = format!(
            "{counted} {} {} activationValue {}",
            show_num(queue),
            if by_queue { ">" } else { "<=" },
            show_num(self.activation_value)
        );
        let why = if by_queue {
            depth.clone()
        } else {
            "the gateway pushed active".to_owned()
        };
        if self.active {
            self.last_active = obs.now;
            let below_min = self.idle_replicas.is_some() && self.replicas < self.min_replicas;
            if self.replicas == 0 || below_min {
                // `scaleFromZeroOrIdle`: to minReplicaCount, at least 1.
                return self.decide(self.floor, format!("activate: {why}"));
            }
            return self.decide(self.replicas, format!("active: {why}"));
        }
        let above_idle = self.idle_replicas.is_some_and(|idle| self.replicas > idle);
        if above_idle || (self.replicas > 0 && self.min_replicas == 0) {
            return self.cool_down(obs.now, &depth);
        }
        if self.replicas < self.min_replicas && self.idle_replicas.is_none() {
            let min = self.min_replicas;
            return self.decide(min, format!("raise to minReplicaCount {min}: {depth}"));
        }
        self.decide(self.replicas, format!("idle: {depth}"))
    }

    /// `scaleToZeroOrIdle`: scale in once `lastActiveTime + cooldownPeriod` is strictly
    /// before now (`.Before(time.Now())`); at exactly the cooldown it still waits.
    fn cool_down(&mut self, now: Duration, depth: &str) -> Decision {
        let idle = now.saturating_sub(self.last_active);
        if idle <= self.cooldown {
            let keep = self.replicas;
            let reason = format!(
                "cooldown: idle {} of {}, keep {keep} ({depth})",
                show_secs(idle),
                show_secs(self.cooldown)
            );
            return self.decide(keep, reason);
        }
        // `getIdleOrMinimumReplicaCount`.
        let to = self.idle_replicas.unwrap_or(self.min_replicas);
        let target = match (self.idle_replicas, to) {
            (None, 0) => "zero".to_owned(),
            (None, n) => format!("minReplicaCount {n}"),
            (Some(n), _) => format!("idleReplicaCount {n}"),
        };
        let reason = format!(
            "scale to {target}: idle {} > cooldownPeriod {}",
            show_secs(idle),
            show_secs(self.cooldown)
        );
        self.decide(to, reason)
    }
}
