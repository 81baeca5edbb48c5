//! The HPA's normalization of a metric recommendation (kubernetes pkg/controller/
//! podautoscaler/horizontal.go), in its two forms. With a behavior,
//! `normalizeDesiredReplicasWithBehaviors`: stabilize over the up and down windows, then limit
//! the change by the policies over their periods. Without one (`hpa.Spec.Behavior == nil`,
//! which is what KEDA creates when the ScaledObject has no behavior block),
//! `normalizeDesiredReplicas`: stabilize scale-downs over the controller's 300 s window, then
//! limit a scale-up to max(2 × current, 4) per sync. Keeps only the history those need; the
//! metric and KEDA's zero handling are the caller's.

use std::collections::VecDeque;
use std::time::Duration;

use super::show_secs;
use crate::manifest::{Behavior, HpaBehavior, Policy, PolicyKind, Select};

/// The controller's scale-down window for HPAs without a behavior
/// (`--horizontal-pod-autoscaler-downscale-stabilization`, 5 minutes by default).
const LEGACY_DOWNSCALE_WINDOW: Duration = Duration::from_secs(300);
/// `scaleUpLimitFactor` and `scaleUpLimitMinimum` of `calculateScaleUpLimit`.
const SCALE_UP_LIMIT_FACTOR: u32 = 2;
const SCALE_UP_LIMIT_MINIMUM: u32 = 4;

/// Why the normalized count differs from the metric's.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Adjustment {
    /// Below the HPA's `minReplicas`.
    RaisedToMin,
    /// Above `maxReplicas`.
    ClampedToMax,
    /// A window or a rate limit, said in full.
    Because(String),
}

/// The HPA's memory for one target.
#[derive(Debug, Clone)]
pub(super) struct Normalizer {
    /// `None`: the HPA has no behavior and takes the older path.
    behavior: Option<HpaBehavior>,
    /// (time, desired) of past recommendations, no older than the longest window.
    recommendations: VecDeque<(Duration, u32)>,
    /// (time, change) of past scale events, no older than the longest policy period; kept
    /// only with a behavior (`storeScaleEvent` ignores HPAs without one).
    events: VecDeque<(Duration, i64)>,
}

impl Normalizer {
    /// A fresh history, holding `initial` (time, count) as its first recommendation if given.
    pub fn new(behavior: Option<HpaBehavior>, initial: Option<(Duration, u32)>) -> Self {
        Self {
            behavior,
            recommendations: initial.into_iter().collect(),
            events: VecDeque::new(),
        }
    }

    /// The count to apply for the metric's `desired`, within `(floor, max)`, and why it
    /// differs when it does. Records `desired` as a recommendation, as both paths do.
    pub fn normalize(
        &mut self,
        now: Duration,
        current: u32,
        desired: u32,
        bounds: (u32, u32),
    ) -> (u32, Option<Adjustment>) {
        let result = match &self.behavior {
            None => self.without_behavior(now, current, desired, bounds),
            Some(behavior) => self.with_behavior(behavior, now, current, desired, bounds),
        };
        self.recommendations.push_back((now, desired));
        self.prune(now);
        result
    }

    /// A change the HPA applied, for the policies' periods (`storeScaleEvent`).
    pub fn record_scale(&mut self, now: Duration, from: u32, to: u32) {
        if self.behavior.is_some() {
            self.events
                .push_back((now, i64::from(to) - i64::from(from)));
        }
    }

    /// `normalizeDesiredReplicas`: the maximum of the recommendations of the last 300 s (one
    /// exactly 300 s old still counts: `stabilizeRecommendation` drops only those `Before` the
    /// cutoff), then `convertDesiredReplicasWithRules`.
    fn without_behavior(
        &self,
        now: Duration,
        current: u32,
        desired: u32,
        (floor, max): (u32, u32),
    ) -> (u32, Option<Adjustment>) {
        let stabilized = self
            .recommendations
            .iter()
            .filter(|&&(at, _)| !older_than(at, now, LEGACY_DOWNSCALE_WINDOW))
            .fold(desired, |most, &(_, rec)| most.max(rec));
        let scale_up_limit = SCALE_UP_LIMIT_FACTOR
            .saturating_mul(current)
            .max(SCALE_UP_LIMIT_MINIMUM);
        if stabilized < floor {
            return (floor, Some(Adjustment::RaisedToMin));
        }
        if stabilized > max.min(scale_up_limit) {
            if max <= scale_up_limit {
                return (max, Some(Adjustment::ClampedToMax));
            }
            let reason = format!(
                "no behavior: scale-up limited to max(2×{current}, 4) = {scale_up_limit} per \
                 sync: {scale_up_limit} instead of {stabilized}"
            );
            return (scale_up_limit, Some(Adjustment::Because(reason)));
        }
        let window = (stabilized != desired)
            .then(|| window_reason("max", LEGACY_DOWNSCALE_WINDOW, stabilized, stabilized));
        (stabilized, window.map(Adjustment::Because))
    }

    /// `stabilizeRecommendationWithBehaviors`, then `convertDesiredReplicasWithBehaviorRate`.
    fn with_behavior(
        &self,
        behavior: &HpaBehavior,
        now: Duration,
        current: u32,
        desired: u32,
        (floor, max): (u32, u32),
    ) -> (u32, Option<Adjustment>) {
        let (stabilized, window) = self.stabilize(behavior, now, current, desired);
        let with_window = |adjustment: Adjustment, bound: &str| match &window {
            None => adjustment,
            Some(w) => Adjustment::Because(format!("{w}, {bound}")),
        };
        if stabilized > current {
            let (limit, by) = self.bound(now, current, &behavior.scale_up, true);
            let limit = limit.max(i64::from(current));
            if i64::from(max) > limit {
                if i64::from(stabilized) > limit {
                    let reason = policy_reason("up", by, to_u32(limit), stabilized);
                    return (to_u32(limit), Some(Adjustment::Because(reason)));
                }
            } else if stabilized > max {
                let bound = format!("clamped to maxReplicaCount {max}");
                return (max, Some(with_window(Adjustment::ClampedToMax, &bound)));
            }
        } else if stabilized < current {
            let (limit, by) = self.bound(now, current, &behavior.scale_down, false);
            let limit = limit.min(i64::from(current));
            if i64::from(floor) < limit {
                if i64::from(stabilized) < limit {
                    let reason = policy_reason("down", by, to_u32(limit), stabilized);
                    return (to_u32(limit), Some(Adjustment::Because(reason)));
                }
            } else if stabilized < floor {
                let bound = format!("raised to max(minReplicaCount,1) {floor}");
                return (floor, Some(with_window(Adjustment::RaisedToMin, &bound)));
            }
        }
        (stabilized, window.map(Adjustment::Because))
    }

    /// Up: the minimum over the scale-up window; down: the maximum over the scale-down window
    /// (recommendations strictly after each cutoff, `rec.timestamp.After(cutoff)`); the
    /// current count kept between the two.
    fn stabilize(
        &self,
        behavior: &HpaBehavior,
        now: Duration,
        current: u32,
        desired: u32,
    ) -> (u32, Option<String>) {
        let (up_window, down_window) = (
            behavior.scale_up.stabilization_window,
            behavior.scale_down.stabilization_window,
        );
        let (mut up, mut down) = (desired, desired);
        for &(at, rec) in &self.recommendations {
            if after(at, now, up_window) {
                up = up.min(rec);
            }
            if after(at, now, down_window) {
                down = down.max(rec);
            }
        }
        let result = current.max(up).min(down);
        let reason = match result.cmp(&desired) {
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(window_reason("max", down_window, down, result)),
            std::cmp::Ordering::Less => Some(window_reason("min", up_window, up, result)),
        };
        (result, reason)
    }

    /// The furthest the count may go in one direction now, and the policy that allows it
    /// (`None`: scaling that way is disabled, or there is no policy).
    fn bound(
        &self,
        now: Duration,
        current: u32,
        rules: &Behavior,
        up: bool,
    ) -> (i64, Option<Policy>) {
        if rules.select == Select::Disabled {
            return (i64::from(current), None);
        }
        let mut best: Option<(i64, Policy)> = None;
        for policy in &rules.policies {
            let proposed = self.proposal(now, current, policy, up);
            // Max picks the policy allowing the most change, Min the least: upwards the most
            // change is the largest count, downwards the smallest.
            let prefer_larger = (rules.select == Select::Max) == up;
            let better = best.is_none_or(|(b, _)| {
                if prefer_larger {
                    proposed > b
                } else {
                    proposed < b
                }
            });
            if better {
                best = Some((proposed, *policy));
            }
        }
        match best {
            Some((limit, policy)) => (limit, Some(policy)),
            None if up => (i64::MAX, None),
            None => (i64::MIN, None),
        }
    }

    /// What one policy allows, from the count at the start of its period
    /// (`calculateScaleUpLimitWithScalingRules`, `calculateScaleDownLimitWithBehaviors`).
    fn proposal(&self, now: Duration, current: u32, policy: &Policy, up: bool) -> i64 {
        let (mut added, mut removed) = (0, 0);
        for &(at, change) in &self.events {
            if after(at, now, policy.period) {
                if change > 0 {
                    added += change;
                } else {
                    removed -= change;
                }
            }
        }
        let start = i64::from(current) - added + removed;
        let value = i64::from(policy.value);
        let pct = f64::from(policy.value) / 100.0;
        match (policy.kind, up) {
            (PolicyKind::Pods, true) => start + value,
            (PolicyKind::Pods, false) => start - value,
            (PolicyKind::Percent, true) => (start as f64 * (1.0 + pct)).ceil() as i64,
            // Kubernetes truncates here (`int32(float64(...))`).
            (PolicyKind::Percent, false) => (start as f64 * (1.0 - pct)) as i64,
        }
    }

    fn prune(&mut self, now: Duration) {
        let Some(behavior) = &self.behavior else {
            while self
                .recommendations
                .front()
                .is_some_and(|&(at, _)| older_than(at, now, LEGACY_DOWNSCALE_WINDOW))
            {
                self.recommendations.pop_front();
            }
            return;
        };
        let window = behavior
            .scale_up
            .stabilization_window
            .max(behavior.scale_down.stabilization_window);
        let period = behavior
            .scale_up
            .policies
            .iter()
            .chain(&behavior.scale_down.policies)
            .map(|p| p.period)
            .max()
            .unwrap_or_default();
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| !after(at, now, window))
        {
            self.recommendations.pop_front();
        }
        while self
            .events
            .front()
            .is_some_and(|&(at, _)| !after(at, now, period))
        {
            self.events.pop_front();
        }
    }
}

/// Whether `at` is strictly within `window` before `now` (Kubernetes: `After(cutoff)`).
fn after(at: Duration, now: Duration, window: Duration) -> bool {
    now.checked_sub(window).is_none_or(|cutoff| at > cutoff)
}

/// Whether `at` is strictly older than `window` before `now` (Kubernetes: `Before(cutoff)`).
fn older_than(at: Duration, now: Duration, window: Duration) -> bool {
    now.checked_sub(window).is_some_and(|cutoff| at < cutoff)
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn window_reason(which: &str, window: Duration, value: u32, result: u32) -> String {
    let mut reason = format!(
        "stabilized: {which} of recommendations in {} window = {value}",
        show_secs(window)
    );
    if value != result {
        reason.push_str(&format!(", keep {result}"));
    }
    reason
}

fn policy_reason(direction: &str, by: Option<Policy>, limit: u32, wanted: u32) -> String {
    match by {
        None => format!("policy: scale-{direction} disabled, keep {limit}"),
        Some(p) => {
            let unit = match p.kind {
                PolicyKind::Pods => " pods",
                PolicyKind::Percent => "%",
            };
            format!(
                "policy: scale-{direction} limited to {}{unit} per {}: {limit} instead of {wanted}",
                p.value,
                show_secs(p.period)
            )
        }
    }
}
