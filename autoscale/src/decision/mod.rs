//! The replica decision KEDA 2.x and the HPA (autoscaling/v2) make for one ScaledObject, one
//! observation at a time: activation from zero, the AverageValue metric with its tolerance,
//! stabilization windows, scaling policies, and the cooldown before zero.
//!
//! Pure and deterministic: time is the `now` of each observation (a `Duration` since any
//! start), never a clock, and nothing here does I/O. The same `Scaler` serves the simulator,
//! so what it predicts is what this code decides.

mod hpa;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::manifest::FunctionScaling;

use self::hpa::Hpa;

/// Jobs per replica of the gateway's external-push metric when the trigger sets no
/// `targetSize` (the gateway's `scaler.default_target`).
pub const GATEWAY_DEFAULT_TARGET: f64 = 10.0;

/// The HPA leaves the count alone while usage is within this fraction of the target.
const TOLERANCE: f64 = 0.1;

/// What the scaler sees at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Time since an arbitrary start; never decreases from one observation to the next.
    pub now: Duration,
    /// Ready plus unacknowledged messages: jobs queued and jobs in flight.
    pub queue_depth: f64,
    /// Whether the gateway's external push scaler reports the function active.
    pub pushed_active: bool,
}

/// The replica count after an observation, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The count to run from now on.
    pub replicas: u32,
    /// Whether it differs from the count before the observation.
    pub changed: bool,
    /// What decided it, e.g. `hpa: ceil(40/20)=2` or
    /// `scale to zero: idle 60s >= cooldownPeriod 60s`.
    pub reason: String,
}

/// KEDA's and the HPA's state for one function.
#[derive(Debug, Clone)]
pub struct Scaler {
    activation_value: f64,
    target_value: f64,
    /// The external-push metric's target, when that trigger is there.
    push_target: Option<f64>,
    /// The least count the HPA keeps: `max(minReplicaCount, 1)`.
    floor: u32,
    max: u32,
    /// The count while inactive: `idleReplicaCount`, else `minReplicaCount`.
    rest: u32,
    cooldown: Duration,
    replicas: u32,
    last_active: Option<Duration>,
    hpa: Hpa,
}

impl Scaler {
    /// A scaler for `spec`, starting at its resting count (0 unless min or idle say more).
    pub fn new(spec: &FunctionScaling) -> Self {
        let rest = spec.idle_replica_count.unwrap_or(spec.min_replicas);
        Self {
            activation_value: spec.activation_value,
            target_value: spec.target_value,
            push_target: spec
                .external_push
                .as_ref()
                .map(|_| spec.external_push_target.unwrap_or(GATEWAY_DEFAULT_TARGET)),
            floor: spec.min_replicas.max(1),
            max: spec.max_replicas,
            rest,
            cooldown: spec.cooldown_period,
            replicas: rest,
            last_active: None,
            hpa: Hpa::new(spec.scale_up.clone(), spec.scale_down.clone()),
        }
    }

    /// The current replica count.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// Takes one observation and returns the count to run.
    pub fn observe(&mut self, obs: &Observation) -> Decision {
        let active = obs.queue_depth > self.activation_value || obs.pushed_active;
        if active {
            self.last_active = Some(obs.now);
        }
        let before = self.replicas;
        let (replicas, reason) = if before < self.floor {
            self.wake_or_rest(obs, active)
        } else if let Some(reason) = self.cooled_down(obs.now, active) {
            (self.rest, reason)
        } else {
            self.scale(obs, active)
        };
        self.replicas = replicas;
        Decision {
            replicas,
            changed: replicas != before,
            reason,
        }
    }

    /// KEDA's part at zero (or the idle count): activate, or stay.
    fn wake_or_rest(&self, obs: &Observation, active: bool) -> (u32, String) {
        let depth = format!(
            "depth {} {} activationValue {}",
            show_num(obs.queue_depth),
            if active { ">" } else { "<=" },
            show_num(self.activation_value)
        );
        if !active {
            (self.replicas, format!("idle: {depth}"))
        } else if obs.queue_depth > self.activation_value {
            (self.floor, format!("activate: {depth}"))
        } else {
            (self.floor, "activate: the gateway pushed active".to_owned())
        }
    }

    /// KEDA's scale to zero (or the idle count) once inactive for the whole cooldown.
    fn cooled_down(&self, now: Duration, active: bool) -> Option<String> {
        if active || self.rest >= self.floor {
            return None;
        }
        let idle = self.idle_for(now);
        (idle >= self.cooldown).then(|| {
            let to = match self.rest {
                0 => "zero".to_owned(),
                n => format!("idleReplicaCount {n}"),
            };
            format!(
                "scale to {to}: idle {} >= cooldownPeriod {}",
                show_secs(idle),
                show_secs(self.cooldown)
            )
        })
    }

    fn idle_for(&self, now: Duration) -> Duration {
        // Never active: idle since the start.
        now.saturating_sub(self.last_active.unwrap_or_default())
    }

    /// The HPA's part while replicas run.
    fn scale(&mut self, obs: &Observation, active: bool) -> (u32, String) {
        let (desired, mut reason) = self.metric_desired(obs);
        let clamped = desired.min(self.max).max(self.floor);
        if clamped > desired {
            reason.push_str(&format!(", raised to max(minReplicaCount,1) {clamped}"));
        } else if clamped < desired {
            reason.push_str(&format!(", clamped to maxReplicaCount {clamped}"));
        }
        let (applied, limited) = self.hpa.normalize(obs.now, self.replicas, clamped);
        if let Some(limited) = limited {
            reason = limited;
        }
        if !active && self.rest < self.floor {
            let idle = format!(
                "cooldown: idle {} of {}",
                show_secs(self.idle_for(obs.now)),
                show_secs(self.cooldown)
            );
            reason = if applied == self.replicas && applied == self.floor {
                format!("{idle}, keep {applied}")
            } else {
                format!("{reason}; {idle}")
            };
        }
        (applied, reason)
    }

    /// The largest count any metric asks for (the HPA takes the maximum over metrics).
    fn metric_desired(&self, obs: &Observation) -> (u32, String) {
        let queue = self.one_metric(obs.queue_depth, self.target_value, "");
        let Some(target) = self.push_target else {
            return queue;
        };
        // The gateway reports at least 1 right after a publish its figures do not show yet.
        let value = if obs.pushed_active {
            obs.queue_depth.max(1.0)
        } else {
            obs.queue_depth
        };
        let push = self.one_metric(value, target, " (external-push metric)");
        if push.0 > queue.0 { push } else { queue }
    }

    /// An AverageValue metric: `ceil(total / target)`, unless within the tolerance.
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

/// A number as people write it: `3`, `2.5`.
pub(crate) fn show_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A duration in seconds: `60s`, `12.5s`.
pub(crate) fn show_secs(d: Duration) -> String {
    format!("{}s", show_num(d.as_secs_f64()))
}
