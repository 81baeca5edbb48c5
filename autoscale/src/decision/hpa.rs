//! The HPA's behaviour step (Kubernetes' `normalizeDesiredReplicasWithBehaviors`): stabilize a
//! recommendation over the windows, then limit the change by the policies. Keeps only the
//! history those need; the metric and KEDA's zero handling are the caller's.

use std::collections::VecDeque;
use std::time::Duration;

use super::show_secs;
use crate::manifest::{Behavior, Policy, PolicyKind, Select};

/// The HPA's memory for one target.
#[derive(Debug, Clone)]
pub(super) struct Hpa {
    up: Behavior,
    down: Behavior,
    /// (time, desired) of past recommendations, no older than the longest window.
    recommendations: VecDeque<(Duration, u32)>,
    /// (time, change) of past scale events, no older than the longest policy period.
    events: VecDeque<(Duration, i64)>,
}

impl Hpa {
    pub fn new(up: Behavior, down: Behavior) -> Self {
        Self {
            up,
            down,
            recommendations: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The count to apply for `desired` (already clamped to the bounds), and why when the
    /// windows or policies changed it.
    pub fn normalize(
        &mut self,
        now: Duration,
        current: u32,
        desired: u32,
    ) -> (u32, Option<String>) {
        let (stabilized, mut reason) = self.stabilize(now, current, desired);
        self.recommendations.push_back((now, desired));
        let (limited, policy) = self.limit(now, current, stabilized);
        if policy.is_some() {
            reason = policy;
        }
        if limited != current {
            self.events
                .push_back((now, i64::from(limited) - i64::from(current)));
        }
        self.prune(now);
        (limited, reason)
    }

    /// Up: the minimum over the scale-up window; down: the maximum over the scale-down window.
    fn stabilize(&self, now: Duration, current: u32, desired: u32) -> (u32, Option<String>) {
        let (mut up, mut down) = (desired, desired);
        for &(at, rec) in &self.recommendations {
            if after(at, now, self.up.stabilization_window) {
                up = up.min(rec);
            }
            if after(at, now, self.down.stabilization_window) {
                down = down.max(rec);
            }
        }
        let result = current.max(up).min(down);
        let reason = match result.cmp(&desired) {
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(window_reason(
                "max",
                self.down.stabilization_window,
                down,
                result,
            )),
            std::cmp::Ordering::Less => Some(window_reason(
                "min",
                self.up.stabilization_window,
                up,
                result,
            )),
        };
        (result, reason)
    }

    fn limit(&self, now: Duration, current: u32, wanted: u32) -> (u32, Option<String>) {
        if wanted > current {
            let (limit, by) = self.bound(now, current, &self.up, true);
            let limit = limit.max(i64::from(current));
            if i64::from(wanted) > limit {
                let limit = to_u32(limit);
                return (limit, Some(policy_reason("up", by, limit, wanted)));
            }
        } else if wanted < current {
            let (limit, by) = self.bound(now, current, &self.down, false);
            let limit = limit.min(i64::from(current));
            if i64::from(wanted) < limit {
                let limit = to_u32(limit);
                return (limit, Some(policy_reason("down", by, limit, wanted)));
            }
        }
        (wanted, None)
    }

    /// The furthest the count may go in one direction now, and the policy that allows it
    /// (`None`: scaling that way is disabled).
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
            // No policy: no limit.
            None if up => (i64::MAX, None),
            None => (i64::MIN, None),
        }
    }

    /// What one policy allows, from the count at the start of its period.
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
        let window = self
            .up
            .stabilization_window
            .max(self.down.stabilization_window);
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| !after(at, now, window))
        {
            self.recommendations.pop_front();
        }
        let period = self
            .up
            .policies
            .iter()
            .chain(&self.down.policies)
            .map(|p| p.period)
            .max()
            .unwrap_or_default();
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
