//! Each test names the upstream rule it follows: KEDA's scale loop (kedacore/keda
//! pkg/scaling/executor/scale_scaledobjects.go), its rabbitmq scaler (pkg/scalers/
//! rabbitmq_scaler.go), and the HPA controller (kubernetes pkg/controller/podautoscaler/
//! horizontal.go and replica_calculator.go).

use std::time::Duration;

use super::*;
use crate::manifest::FunctionScaling as Spec;
use crate::manifest::{Behavior, BrokerHost, HpaBehavior, Policy, PolicyKind, Select};

/// `ready` queued and nothing in flight, at `secs`.
fn at(secs: u64, ready: f64) -> Observation {
    busy(secs, ready, 0.0)
}

fn busy(secs: u64, ready: f64, in_flight: f64) -> Observation {
    Observation {
        now: Duration::from_secs(secs),
        ready,
        in_flight,
        pushed_active: false,
    }
}

/// A behavior whose scale-up has no practical limit, so a test sees the metric alone.
fn unlimited_up() -> Option<HpaBehavior> {
    Some(HpaBehavior {
        scale_up: Behavior {
            stabilization_window: Duration::ZERO,
            policies: vec![Policy::new(PolicyKind::Percent, 100_000, 15)],
            select: Select::Max,
        },
        ..HpaBehavior::default()
    })
}

fn with_down(scale_down: Behavior) -> Option<HpaBehavior> {
    let mut behavior = unlimited_up();
    if let Some(b) = &mut behavior {
        b.scale_down = scale_down;
    }
    behavior
}

/// KEDA activates from zero when depth > activationValue; `scaleFromZeroOrIdle` sets
/// max(minReplicaCount, 1).
#[test]
fn a_queued_job_activates_a_function_at_zero() {
    let mut s = Scaler::new(&Spec::example());
    assert_eq!(s.replicas(), 0);
    let d = s.poll(&at(0, 3.0));
    assert_eq!((d.replicas, d.changed, d.active), (1, true, true));
    assert_eq!(d.reason, "activate: depth 3 > activationValue 0");
}

/// rabbitmq_scaler.go `GetMetricsAndActivity`: `isActive = messages > activationValue`,
/// strictly.
#[test]
fn a_depth_equal_to_the_activation_value_leaves_the_function_at_zero() {
    let spec = Spec {
        activation_value: 5.0,
        ..Spec::example()
    };
    let mut s = Scaler::new(&spec);
    let d = s.poll(&at(0, 5.0));
    assert_eq!((d.replicas, d.changed, d.active), (0, false, false));
    assert_eq!(d.reason, "idle: depth 5 <= activationValue 5");
    assert_eq!(s.poll(&at(30, 6.0)).replicas, 1);
}

#[test]
fn the_gateways_push_activates_before_the_queue_shows_the_job() {
    let mut s = Scaler::new(&Spec::example());
    let obs = Observation {
        pushed_active: true,
        ..at(7, 0.0)
    };
    let d = s.poll(&obs);
    assert_eq!(d.replicas, 1);
    assert_eq!(d.reason, "activate: the gateway pushed active");
}

/// `scaleFromZeroOrIdle`: minReplicaCount when it is above 1.
#[test]
fn activation_goes_to_min_replicas_when_that_is_above_one() {
    let spec = Spec {
        min_replicas: 3,
        idle_replica_count: Some(0),
        ..Spec::example()
    };
    let mut s = Scaler::new(&spec);
    assert_eq!(s.replicas(), 0);
    assert_eq!(s.poll(&at(0, 1.0)).replicas, 3);
}

/// horizontal.go `reconcileAutoscaler`: "scaling is disabled since the replica count of the
/// target is zero"; only KEDA leaves zero.
#[test]
fn the_hpa_does_nothing_at_zero_replicas() {
    let mut s = Scaler::new(&Spec::example());
    let d = s.sync(&at(0, 100.0));
    assert_eq!((d.replicas, d.changed), (0, false));
}

/// replica_calculator.go `GetExternalPerPodMetricReplicas`: `ceil(usage / target)`;
/// `convertDesiredReplicasWithBehaviorRate` caps at maxReplicas.
#[test]
fn desired_is_the_ceiling_of_depth_over_value_clamped_to_max() {
    let spec = Spec {
        behavior: unlimited_up(),
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    let d = s.sync(&at(15, 40.0));
    assert_eq!((d.replicas, d.reason.as_str()), (2, "hpa: ceil(40/20)=2"));
    let d = s.sync(&at(30, 1000.0));
    assert_eq!(d.replicas, 10);
    assert_eq!(
        d.reason,
        "hpa: ceil(1000/20)=50, clamped to maxReplicaCount 10"
    );
}

/// replica_calculator.go: the count changes only when `|1 - usageRatio| > tolerance` (0.1).
#[test]
fn within_the_tolerance_the_count_stays_and_beyond_it_changes() {
    let mut s = Scaler::starting_at(&Spec::example(), 1);
    let d = s.sync(&at(15, 21.0));
    assert_eq!(d.replicas, 1);
    assert!(
        d.reason.starts_with("tolerance: 21/1/20 = 1.05"),
        "{}",
        d.reason
    );
    assert_eq!(s.sync(&at(30, 23.0)).replicas, 2);
}

/// Finding 1. horizontal.go: with `hpa.Spec.Behavior == nil` the controller calls
/// `normalizeDesiredReplicas`, whose `convertDesiredReplicasWithRules` caps a scale-up at
/// `calculateScaleUpLimit(current) = max(scaleUpLimitFactor 2 × current, scaleUpLimitMinimum
/// 4)`; KEDA (controllers/keda/hpa.go `newHPAForScaledObject`) leaves the behavior nil when the
/// ScaledObject has none. From 1 replica with 100 jobs at value 20: 4, not the default
/// policy's 5.
#[test]
fn without_a_behavior_block_a_scale_up_is_limited_to_twice_the_count_or_four() {
    let spec = Spec {
        max_replicas: 100,
        behavior: None,
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    let d = s.sync(&at(0, 100.0));
    assert_eq!(d.replicas, 4);
    assert_eq!(
        d.reason,
        "no behavior: scale-up limited to max(2×1, 4) = 4 per sync: 4 instead of 5"
    );
    // No period: the next sync may double again.
    assert_eq!(s.sync(&at(15, 1000.0)).replicas, 8);
    assert_eq!(s.sync(&at(30, 1000.0)).replicas, 16);
    // With a behavior block, even an empty one, the default policies apply: +4 pods.
    let mut with_block = Scaler::starting_at(&Spec::example(), 1);
    assert_eq!(with_block.sync(&at(0, 100.0)).replicas, 5);
}

/// horizontal.go `stabilizeRecommendation` (no behavior): the maximum over the controller's
/// 300 s window, a recommendation exactly 300 s old included (only `Before(cutoff)` drops).
#[test]
fn without_a_behavior_block_scale_downs_wait_for_the_300_second_window() {
    let spec = Spec {
        behavior: None,
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    assert_eq!(s.sync(&at(0, 80.0)).replicas, 4);
    let d = s.sync(&at(15, 20.0));
    assert_eq!(d.replicas, 4);
    assert_eq!(
        d.reason,
        "stabilized: max of recommendations in 300s window = 4"
    );
    assert_eq!(s.sync(&at(300, 20.0)).replicas, 4);
    assert_eq!(s.sync(&at(315, 20.0)).replicas, 1);
}

/// `stabilizeRecommendationWithBehaviors`: the maximum of recommendations strictly after the
/// scale-down cutoff.
#[test]
fn a_drop_is_delayed_by_the_scale_down_window() {
    let mut s = Scaler::starting_at(&Spec::example(), 1);
    assert_eq!(s.sync(&at(15, 100.0)).replicas, 5);
    let d = s.sync(&at(30, 20.0));
    assert_eq!(d.replicas, 5);
    assert_eq!(
        d.reason,
        "stabilized: max of recommendations in 300s window = 5"
    );
    // The recommendation of 5 at t = 15 is still inside the window at t = 300 ...
    assert_eq!(s.sync(&at(300, 20.0)).replicas, 5);
    // ... and out of it at t = 315 (strictly after the cutoff only).
    assert_eq!(s.sync(&at(315, 20.0)).replicas, 1);
}

/// `calculateScaleUpLimitWithScalingRules`: a Pods policy counts from the replicas at the
/// start of its period, i.e. minus what scale events within it added.
#[test]
fn scale_up_is_limited_to_four_pods_per_fifteen_seconds() {
    let spec = Spec {
        max_replicas: 100,
        behavior: Some(HpaBehavior {
            scale_up: Behavior {
                policies: vec![Policy::new(PolicyKind::Pods, 4, 15)],
                ..Behavior::default_scale_up()
            },
            ..HpaBehavior::default()
        }),
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    let d = s.sync(&at(10, 1000.0));
    assert_eq!(d.replicas, 5);
    assert_eq!(
        d.reason,
        "policy: scale-up limited to 4 pods per 15s: 5 instead of 50"
    );
    // The 4 added at t = 10 still count within the period at t = 20, not at t = 25.
    assert_eq!(s.sync(&at(20, 1000.0)).replicas, 5);
    assert_eq!(s.sync(&at(25, 1000.0)).replicas, 9);
}

#[test]
fn select_min_applies_the_least_permissive_policy() {
    let spec = Spec {
        behavior: Some(HpaBehavior {
            scale_up: Behavior {
                select: Select::Min,
                ..Behavior::default_scale_up()
            },
            ..HpaBehavior::default()
        }),
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    // Percent 100 allows 2, Pods 4 allows 5: Min takes 2.
    assert_eq!(s.sync(&at(15, 200.0)).replicas, 2);
}

#[test]
fn a_disabled_scale_down_keeps_the_count() {
    let spec = Spec {
        behavior: with_down(Behavior {
            stabilization_window: Duration::ZERO,
            select: Select::Disabled,
            ..Behavior::default_scale_down()
        }),
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    assert_eq!(s.sync(&at(15, 100.0)).replicas, 5);
    let d = s.sync(&at(30, 20.0));
    assert_eq!(
        (d.replicas, d.reason.as_str()),
        (5, "policy: scale-down disabled, keep 5")
    );
}

/// `calculateScaleDownLimitWithBehaviors`: Percent truncates, from the period's start.
#[test]
fn a_percent_scale_down_policy_halves_per_period() {
    let spec = Spec {
        behavior: with_down(Behavior {
            stabilization_window: Duration::ZERO,
            policies: vec![Policy::new(PolicyKind::Percent, 50, 30)],
            select: Select::Max,
        }),
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    assert_eq!(s.sync(&at(10, 160.0)).replicas, 8);
    // The period starts at 8 once the scale-up at t = 10 is out of it (as in Kubernetes,
    // changes within the period, up or down, move its start).
    let d = s.sync(&at(45, 20.0));
    assert_eq!(d.replicas, 4);
    assert_eq!(
        d.reason,
        "policy: scale-down limited to 50% per 30s: 4 instead of 1"
    );
    assert_eq!(s.sync(&at(60, 20.0)).replicas, 4);
    assert_eq!(s.sync(&at(76, 20.0)).replicas, 2);
}

/// Finding 3. scale_scaledobjects.go `scaleToZeroOrIdle`: scale in only when
/// `lastActiveTime.Add(cooldownPeriod).Before(now)`; at exactly the cooldown it waits. On a
/// 30 s grid with a 60 s cooldown: not at t = 60, at t = 90.
#[test]
fn the_cooldown_ends_strictly_after_last_active_plus_cooldown_period() {
    let mut s = Scaler::new(&Spec::example());
    assert_eq!(s.poll(&at(0, 1.0)).replicas, 1);
    let d = s.poll(&at(30, 0.0));
    assert_eq!(
        d.reason,
        "cooldown: idle 30s of 60s, keep 1 (depth 0 <= activationValue 0)"
    );
    let d = s.poll(&at(60, 0.0));
    assert_eq!((d.replicas, d.changed), (1, false));
    let d = s.poll(&at(90, 0.0));
    assert_eq!((d.replicas, d.changed, d.active), (0, true, false));
    assert_eq!(d.reason, "scale to zero: idle 90s > cooldownPeriod 60s");
}

#[test]
fn activity_restarts_the_cooldown() {
    let mut s = Scaler::new(&Spec::example());
    s.poll(&at(0, 1.0));
    s.poll(&at(50, 2.0));
    assert_eq!(s.poll(&at(110, 0.0)).replicas, 1);
    assert_eq!(s.poll(&at(111, 0.0)).replicas, 0);
}

/// `getIdleOrMinimumReplicaCount`: idleReplicaCount replaces zero; activation from it goes to
/// minReplicaCount.
#[test]
fn an_idle_replica_count_replaces_zero() {
    let spec = Spec {
        min_replicas: 2,
        idle_replica_count: Some(1),
        ..Spec::example()
    };
    let mut s = Scaler::new(&spec);
    assert_eq!(s.replicas(), 1);
    assert_eq!(s.poll(&at(0, 1.0)).replicas, 2);
    let d = s.poll(&at(61, 0.0));
    assert_eq!(d.replicas, 1);
    assert!(
        d.reason.starts_with("scale to idleReplicaCount 1"),
        "{}",
        d.reason
    );
}

/// `RequestScale`: with minReplicaCount above 0 (and no idle count) KEDA never scales in;
/// the HPA keeps `minReplicas`.
#[test]
fn with_min_replicas_keda_leaves_an_idle_function_to_the_hpa() {
    let spec = Spec {
        min_replicas: 2,
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 3);
    assert_eq!(s.poll(&at(600, 0.0)).replicas, 3);
    let d = s.sync(&at(600, 0.0));
    assert_eq!(d.replicas, 2);
    assert!(
        d.reason.contains("raised to max(minReplicaCount,1) 2"),
        "{}",
        d.reason
    );
}

/// Finding 4. rabbitmq_scaler.go `getQueueStatus`: over amqp the count is
/// `QueueDeclarePassive(...).Messages`, ready messages only. Four jobs checked out and none
/// ready look like an idle queue, and the function goes to zero mid-job after the cooldown.
#[test]
fn over_amqp_a_busy_function_looks_idle_and_is_scaled_to_zero_mid_job() {
    let amqp = Spec {
        protocol: Some("amqp".to_owned()),
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&amqp, 1);
    let d = s.poll(&busy(30, 0.0, 4.0));
    assert!(!d.active);
    assert_eq!(
        d.reason,
        "cooldown: idle 30s of 60s, keep 1 (ready 0 <= activationValue 0)"
    );
    assert_eq!(s.poll(&busy(90, 0.0, 4.0)).replicas, 0);
    // Over http the same jobs keep it active for an hour.
    let mut http = Scaler::starting_at(&Spec::example(), 1);
    for t in (30..3600).step_by(30) {
        assert_eq!(http.poll(&busy(t, 0.0, 4.0)).replicas, 1, "at {t}s");
    }
}

/// rabbitmq_scaler.go `getQueueStatus`: over http with `excludeUnacknowledged` the count is
/// `messages_ready`; `rabbitMQMetadata.Validate` takes `auto`'s protocol from the host scheme.
#[test]
fn exclude_unacknowledged_and_an_amqp_host_count_ready_messages_only() {
    let excluded = Spec {
        exclude_unacknowledged: true,
        ..Spec::example()
    };
    assert!(!queue_protocol(&excluded).counts_in_flight());
    let auto_amqp = Spec {
        protocol: None,
        host: Some(BrokerHost::Url("amqps://rabbit:5671/".to_owned())),
        ..Spec::example()
    };
    assert_eq!(queue_protocol(&auto_amqp), QueueProtocol::Amqp);
    let auto_elsewhere = Spec {
        protocol: Some("auto".to_owned()),
        ..Spec::example()
    };
    assert!(queue_protocol(&auto_elsewhere).counts_in_flight());
    let mut s = Scaler::starting_at(&excluded, 1);
    assert_eq!(s.sync(&busy(15, 20.0, 80.0)).replicas, 1);
}

/// The push metric is the gateway's own count of queued and running jobs, whatever the
/// rabbitmq trigger's protocol; the HPA takes the larger of the two metrics.
#[test]
fn the_push_metric_sizes_by_its_own_target_when_that_is_smaller() {
    let spec = Spec {
        target_value: 50.0,
        external_push: Some("gw:9090".to_owned()),
        behavior: unlimited_up(),
        ..Spec::example()
    };
    let mut s = Scaler::starting_at(&spec, 1);
    let d = s.sync(&busy(10, 60.0, 40.0));
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
