//! Every row of `decisions.yaml` through the decision code the simulator and the local scaler
//! use: the ScaledObject as a file, loaded like `surge` loads it, then KEDA's polls and the
//! HPA's syncs one step at a time.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Mapping;
use surge_autoscale::decision::{Observation, Scaler};

use super::fixture;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    case: String,
    rule: String,
    #[serde(default)]
    spec: Mapping,
    #[serde(default)]
    trigger: Mapping,
    replicas: u32,
    steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    by: Loop,
    at: u64,
    ready: u32,
    #[serde(default)]
    in_flight: u32,
    #[serde(default)]
    pushed: bool,
    expect: u32,
    active: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Loop {
    /// KEDA's poll.
    Keda,
    /// The HPA's sync.
    Hpa,
}

#[test]
fn every_golden_decision_is_what_keda_and_the_hpa_decide() {
    let cases: Vec<Case> = fixture::table("decisions.yaml");
    assert!(cases.len() >= 20, "{} cases", cases.len());
    for case in &cases {
        assert!(
            !case.rule.is_empty() && !case.steps.is_empty(),
            "{}",
            case.case
        );
        let object = fixture::scaled_object(&case.spec, &case.trigger);
        let spec = fixture::only_function(&case.case, &object, None);
        let mut scaler = Scaler::starting_at(&spec, case.replicas);
        for step in &case.steps {
            let observation = Observation {
                now: Duration::from_secs(step.at),
                ready: f64::from(step.ready),
                in_flight: f64::from(step.in_flight),
                pushed_active: step.pushed,
            };
            let decision = match step.by {
                Loop::Keda => scaler.poll(&observation),
                Loop::Hpa => scaler.sync(&observation),
            };
            let context = format!(
                "case {:?} ({}), {:?} at {}s: {}",
                case.case, case.rule, step.by, step.at, decision.reason
            );
            assert_eq!(decision.replicas, step.expect, "{context}");
            if let Some(active) = step.active {
                assert_eq!(decision.active, active, "{context}");
            }
        }
    }
}
