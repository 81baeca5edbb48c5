//! The replica decisions KEDA 2.x and the HPA (autoscaling/v2) make for one ScaledObject, as
//! the two loops they are: KEDA's scale loop every `pollingInterval` (activation from zero,
//! the cooldown back to zero: [`Scaler::poll`]) and the HPA controller's sync every 15 s (the
//! AverageValue metric with its tolerance, stabilization windows, the behavior's policies or,
//! without a behavior, the older fixed limits: [`Scaler::sync`]). What the rabbitmq trigger
//! counts (ready messages only over amqp) is decided here too.
//!
//! Pure and deterministic: time is the `now` of each observation (a `Duration` since any
//! start), never a clock, and nothing here does I/O. The same `Scaler` serves the simulator
//! and the local scaler, so what they predict is what this code decides. Each rule names the
//! upstream function it follows, so it can be checked against KEDA's and Kubernetes' source.

mod hpa;
mod keda;
mod normalize;
#[cfg(test)]
mod tests;
mod trigger;

use std::time::Duration;

use crate::manifest::FunctionScaling;

use self::normalize::Normalizer;

pub use self::trigger::{QueueProtocol, queue_protocol};

/// Jobs per replica of the gateway's external-push metric when the trigger sets no
/// `targetSize` (the gateway's `scaler.default_target`).
pub const GATEWAY_DEFAULT_TARGET: f64 = 10.0;

/// How often the HPA controller reconciles each HPA: kube-controller-manager's
/// `--horizontal-pod-autoscaler-sync-period`, 15 s by default, whatever KEDA's
/// `pollingInterval` (pkg/controller/podautoscaler/config/v1alpha1/defaults.go).
pub const HPA_SYNC_PERIOD: Duration = Duration::from_secs(15);

/// What the scaler sees at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Time since an arbitrary start; never decreases from one observation to the next.
    pub now: Duration,
    /// Ready messages: jobs waiting in the queue.
    pub ready: f64,
    /// Unacknowledged messages: jobs a replica has taken and not finished.
    pub in_flight: f64,
    /// Whether the gateway's external push scaler reports the function active.
    pub pushed_active: bool,
}

/// The replica count after a step of either loop, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The count to run from now on.
    pub replicas: u32,
    /// Whether it differs from the count before the step.
    pub changed: bool,
    /// Whether KEDA holds the ScaledObject active, as of its last poll.
    pub active: bool,
    /// What decided it, e.g. `hpa: ceil(40/20)=2` or
    /// `scale to zero: idle 90s > cooldownPeriod 60s`.
    pub reason: String,
}

/// KEDA's and the HPA's state for one function.
#[derive(Debug, Clone)]
pub struct Scaler {
    activation_value: f64,
    target_value: f64,
    /// Whether the rabbitmq trigger's count includes unacknowledged messages.
    counts_in_flight: bool,
    /// The external-push metric's target, when that trigger is there.
    push_target: Option<f64>,
    /// `minReplicaCount`, as KEDA reads it (0 allows scaling to zero).
    min_replicas: u32,
    /// The HPA's `minReplicas`: `max(minReplicaCount, 1)` (KEDA's `getHPAMinReplicas`).
    floor: u32,
    max: u32,
    idle_replicas: Option<u32>,
    cooldown: Duration,
    replicas: u32,
    /// KEDA's verdict at its last poll.
    active: bool,
    /// When KEDA last saw the ScaledObject active (its `status.lastActiveTime`). Starts at
    /// t = 0: a function that runs at the start is taken to have been busy just before it.
    last_active: Duration,
    hpa: Normalizer,
}

impl Scaler {
    /// A scaler for `spec`, starting at its resting count: `idleReplicaCount`, else
    /// `minReplicaCount` (0 unless set).
    pub fn new(spec: &FunctionScaling) -> Self {
        let rest = spec.idle_replica_count.unwrap_or(spec.min_replicas);
        Self::starting_at(spec, rest)
    }

    /// A scaler for `spec` with `replicas` already running at t = 0. When some run, the HPA
    /// has already recommended that count (as Kubernetes records the current count when it
    /// first sees an HPA, `recordInitialRecommendation`); from zero its history is empty.
    pub fn starting_at(spec: &FunctionScaling, replicas: u32) -> Self {
        let initial = (replicas > 0).then_some((Duration::ZERO, replicas));
        Self {
            activation_value: spec.activation_value,
            target_value: spec.target_value,
            counts_in_flight: queue_protocol(spec).counts_in_flight(),
            push_target: spec
                .external_push
                .as_ref()
                .map(|_| spec.external_push_target.unwrap_or(GATEWAY_DEFAULT_TARGET)),
            min_replicas: spec.min_replicas,
            floor: spec.min_replicas.max(1),
            max: spec.max_replicas,
            idle_replicas: spec.idle_replica_count,
            cooldown: spec.cooldown_period,
            replicas,
            active: false,
            last_active: Duration::ZERO,
            hpa: Normalizer::new(spec.behavior.clone(), initial),
        }
    }

    /// The current replica count.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// The rabbitmq trigger's metric: ready messages, plus unacknowledged ones unless the
    /// trigger counts ready messages only (amqp, or http with `excludeUnacknowledged`).
    fn queue_metric(&self, obs: &Observation) -> f64 {
        if self.counts_in_flight {
            obs.ready + obs.in_flight
        } else {
            obs.ready
        }
    }

    /// The step's result; `replicas` becomes the current count.
    fn decide(&mut self, replicas: u32, reason: String) -> Decision {
        let changed = replicas != self.replicas;
        self.replicas = replicas;
        Decision {
            replicas,
            changed,
            active: self.active,
            reason,
        }
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
