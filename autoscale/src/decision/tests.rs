use std::time::Duration;

use super::*;
use crate::manifest::{Behavior, FunctionScaling, Policy, PolicyKind, Select};

fn at(secs: u64, depth: f64) -> Observation {
    Observation {
        now: Duration::from_secs(secs),
        queue_depth: depth,
        pushed_active: false,
    }
}

/// Scale-up with no practical limit, so a test sees the metric alone.
fn unlimited_up() -> Behavior {
    Behavior {
        stabilization_window: Duration::ZERO,
        policies: vec![Policy::new(PolicyKind::Percent, 100_000, 15)],
        select: Select::Max,
    }
}

/// A scaler already at one replica (activated at t = 0 by depth 1).
fn running(spec: FunctionScaling) -> Scaler {
    let mut s = Scaler::new(&spec);
    assert_eq!(s.observe(&at(0, 1.0)).replicas, 1);
    s
}

#[test]
fn a_queued_job_activates_a_function_at_zero() {
    let mut s = Scaler::new(&FunctionScaling::example());
    assert_eq!(s.replicas(), 0);
    let d = s.observe(&at(0, 3.0));
    assert_eq!((d.replicas, d.changed), (1, true));
    assert_eq!(d.reason, "activate: depth 3 > activationValue 0");
}

#[test]
fn a_depth_not_above_the_activation_value_leaves_the_function_at_zero() {
    let spec = FunctionScaling {
        activation_value: 5.0,
        ..FunctionScaling::example()
    };
    let mut s = Scaler::new(&spec);
    let d = s.observe(&at(0, 5.0));
    assert_eq!((d.replicas, d.changed), (0, false));
    assert_eq!(d.reason, "idle: depth 5 <= activationValue 5");
}

#[test]
fn the_gateways_push_activates_before_the_queue_shows_the_job() {
    let mut s = Scaler::new(&FunctionScaling::example());
    let obs = Observation {
        pushed_active: true,
        ..at(7, 0.0)
    };
    let d = s.observe(&obs);
    assert_eq!(d.replicas, 1);
    assert_eq!(d.reason, "activate: the gateway pushed active");
}

#[test]
fn activation_goes_to_min_replicas_when_that_is_above_one() {
    let spec = FunctionScaling {
        min_replicas: 3,
        idle_replica_count: Some(0),
        ..FunctionScaling::example()
    };
    let mut s = Scaler::new(&spec);
    assert_eq!(s.replicas(), 0);
    assert_eq!(s.observe(&at(0, 1.0)).replicas, 3);
}

#[test]
fn desired_is_the_ceiling_of_depth_over_value_clamped_to_max() {
    let spec = FunctionScaling {
        scale_up: unlimited_up(),
        ..FunctionScaling::example()
    };
    let mut s = running(spec);
    let d = s.observe(&at(30, 40.0));
    assert_eq!((d.replicas, d.reason.as_str()), (2, "hpa: ceil(40/20)=2"));
    let d = s.observe(&at(60, 1000.0));
    assert_eq!(d.replicas, 10);
    assert_eq!(
        d.reason,
        "hpa: ceil(1000/20)=50, clamped to maxReplicaCount 10"
    );
}

#[test]
fn within_the_tolerance_the_count_stays_and_beyond_it_changes() {
    let mut s = running(FunctionScaling::example());
    let d = s.observe(&at(30, 21.0));
    assert_eq!(d.replicas, 1);
    assert!(
        d.reason.starts_with("tolerance: 21/1/20 = 1.05"),
        "{}",
        d.reason
    );
    assert_eq!(s.observe(&at(60, 23.0)).replicas, 2);
}

#[test]
fn the_cooldown_is_not_over_a_moment_before_it_ends() {
    let mut s = running(FunctionScaling::example());
    let d = s.observe(&at(30, 0.0));
    assert_eq!(d.replicas, 1);
    assert_eq!(d.reason, "cooldown: idle 30s of 60s, keep 1");
    assert_eq!(s.observe(&at(59, 0.0)).replicas, 1);
}

#[test]
fn the_function_scales_to_zero_exactly_when_the_cooldown_ends() {
    let mut s = running(FunctionScaling::example());
    let d = s.observe(&at(60, 0.0));
    assert_eq!((d.replicas, d.changed), (0, true));
    assert_eq!(d.reason, "scale to zero: idle 60s >= cooldownPeriod 60s");
}

#[test]
fn activity_restarts_the_cooldown() {
    let mut s = running(FunctionScaling::example());
    s.observe(&at(50, 2.0));
    assert_eq!(s.observe(&at(100, 0.0)).replicas, 1);
    assert_eq!(s.observe(&at(110, 0.0)).replicas, 0);
}

#[test]
fn an_idle_replica_count_replaces_zero() {
    let spec = FunctionScaling {
        min_replicas: 2,
        idle_replica_count: Some(1),
        ..FunctionScaling::example()
    };
    let mut s = Scaler::new(&spec);
    assert_eq!(s.replicas(), 1);
    assert_eq!(s.observe(&at(0, 1.0)).replicas, 2);
    let d = s.observe(&at(60, 0.0));
    assert_eq!(d.replicas, 1);
    assert!(
        d.reason.starts_with("scale to idleReplicaCount 1"),
        "{}",
        d.reason
    );
}

#[test]
fn a_drop_is_delayed_by_the_scale_down_window() {
    let mut s = running(FunctionScaling::example());
    assert_eq!(s.observe(&at(15, 100.0)).replicas, 5);
    let d = s.observe(&at(30, 20.0));
    assert_eq!(d.replicas, 5);
    assert_eq!(
        d.reason,
        "stabilized: max of recommendations in 300s window = 5"
    );
    // The recommendation of 5 at t = 15 is still inside the window at t = 300 ...
    assert_eq!(s.observe(&at(300, 20.0)).replicas, 5);
    // ... and out of it at t = 316.
    assert_eq!(s.observe(&at(316, 20.0)).replicas, 1);
}

#[test]
fn scale_up_is_limited_to_four_pods_per_fifteen_seconds() {
    let spec = FunctionScaling {
        max_replicas: 100,
        scale_up: Behavior {
            policies: vec![Policy::new(PolicyKind::Pods, 4, 15)],
            ..Behavior::default_scale_up()
        },
        ..FunctionScaling::example()
    };
    let mut s = running(spec);
    let d = s.observe(&at(10, 1000.0));
    assert_eq!(d.replicas, 5);
    assert_eq!(
        d.reason,
        "policy: scale-up limited to 4 pods per 15s: 5 instead of 50"
    );
    // The 4 added at t = 10 still count within the period at t = 20, not at t = 25.
    assert_eq!(s.observe(&at(20, 1000.0)).replicas, 5);
    assert_eq!(s.observe(&at(25, 1000.0)).replicas, 9);
}

#[test]
fn select_min_applies_the_least_permissive_policy() {
    let spec = FunctionScaling {
        scale_up: Behavior {
            select: Select::Min,
            ..Behavior::default_scale_up()
        },
        ..FunctionScaling::example()
    };
    let mut s = running(spec);
    // Percent 100 allows 2, Pods 4 allows 5: Min takes 2.
    assert_eq!(s.observe(&at(15, 200.0)).replicas, 2);
}

#[test]
fn a_disabled_scale_down_keeps_the_count() {
    let spec = FunctionScaling {
        scale_up: unlimited_up(),
        scale_down: Behavior {
            stabilization_window: Duration::ZERO,
            select: Select::Disabled,
            ..Behavior::default_scale_down()
        },
        ..FunctionScaling::example()
    };
    let mut s = running(spec);
    assert_eq!(s.observe(&at(15, 100.0)).replicas, 5);
    let d = s.observe(&at(30, 20.0));
    assert_eq!(
        (d.replicas, d.reason.as_str()),
        (5, "policy: scale-down disabled, keep 5")
    );
}

#[test]
fn a_percent_scale_down_policy_halves_per_period() {
    let spec = FunctionScaling {
        scale_up: unlimited_up(),
        scale_down: Behavior {
            stabilization_window: Duration::ZERO,
            policies: vec![Policy::new(PolicyKind::Percent, 50, 30)],
            select: Select::Max,
        },
        ..FunctionScaling::example()
    };
    let mut s = running(spec);
    assert_eq!(s.observe(&at(10, 160.0)).replicas, 8);
    // The period starts at 8 once the scale-up at t = 10 is out of it (as in Kubernetes,
    // changes within the period, up or down, move its start).
    let d = s.observe(&at(45, 20.0));
    assert_eq!(d.replicas, 4);
    assert_eq!(
        d.reason,
        "policy: scale-down limited to 50% per 30s: 4 instead of 1"
    );
    assert_eq!(s.observe(&at(60, 20.0)).replicas, 4);
    assert_eq!(s.observe(&at(76, 20.0)).replicas, 2);
}

#[test]
fn a_busy_function_whose_depth_counts_in_flight_jobs_never_scales_to_zero() {
    let spec = FunctionScaling {
        target_value: 4.0,
        ..FunctionScaling::example()
    };
    let mut s = running(spec);
    // Four jobs checked out, none ready, for an hour: ready + unacked = 4.
    for t in (10..3600).step_by(10) {
        assert_eq!(s.observe(&at(t, 4.0)).replicas, 1, "at {t}s");
    }
    // Counting ready messages only (amqp), the same function would be idle and go to zero.
    assert_eq!(s.observe(&at(3620, 0.0)).replicas, 1);
    assert_eq!(s.observe(&at(3650, 0.0)).replicas, 0);
}

#[test]
fn the_push_metric_sizes_by_its_own_target_when_that_is_smaller() {
    let spec = FunctionScaling {
        target_value: 50.0,
        external_push: Some("gw:9090".to_owned()),
        scale_up: unlimited_up(),
        ..FunctionScaling::example()
    };
    let mut s = running(spec);
    let d = s.observe(&at(10, 100.0));
    assert_eq!(d.replicas, 10);
    assert_eq!(d.reason, "hpa: ceil(100/10)=10 (external-push metric)");
}

#[test]
fn numbers_and_durations_read_as_people_write_them() {
    assert_eq!(show_num(3.0), "3");
    assert_eq!(show_num(2.5), "2.5");
    assert_eq!(show_num(100.001), "100");
    assert_eq!(show_secs(Duration::from_millis(12_500)), "12.5s");
}
