//! Every row of `simulations.yaml` through `surge simulate`'s engine: the ScaledObject from
//! files, the start and arrivals of the row, pushes off, and the row's expectations on the
//! report.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Mapping;
use surge_autoscale::simulate::{self, Scenario, ServiceTime, Start, Variant, Wait};

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
    deployment_concurrency: Option<u32>,
    #[serde(default)]
    start: Initial,
    #[serde(default)]
    arrivals: Vec<f64>,
    /// Seconds each job runs.
    service: f64,
    duration: u64,
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Initial {
    replicas: Option<u32>,
    #[serde(default)]
    ready: u32,
    #[serde(default)]
    in_flight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    replicas_at: BTreeMap<usize, u32>,
    done: Option<u64>,
    requeued: Option<u64>,
    max_replicas: Option<u32>,
    p50: Option<ExpectedWait>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedWait {
    seconds: f64,
    at_least: bool,
}

#[test]
fn every_golden_simulation_shows_what_a_cluster_would_do() {
    let cases: Vec<Case> = fixture::table("simulations.yaml");
    assert!(cases.len() >= 5, "{} cases", cases.len());
    for case in &cases {
        let object = fixture::scaled_object(&case.spec, &case.trigger);
        let scaling = fixture::only_function(&case.case, &object, case.deployment_concurrency);
        let mut variant = Variant::new(&case.case, scaling);
        variant.push = false;
        let service = ServiceTime::Const(case.service);
        let start = Start {
            replicas: case.start.replicas,
            ready: case.start.ready,
            in_flight: case.start.in_flight,
        };
        let duration = Duration::from_secs(case.duration);
        let scenario =
            Scenario::new(&case.arrivals, &service, 1, duration).from_start(start, &service, 1);
        let report = simulate::run(&variant, &scenario).unwrap();
        let context = format!(
            "case {:?} ({}):\n{}",
            case.case,
            case.rule,
            simulate::render_table(std::slice::from_ref(&report))
        );
        for (&t, &replicas) in &case.expect.replicas_at {
            assert_eq!(report.series[t].replicas, replicas, "at {t}s, {context}");
        }
        let e = &case.expect;
        assert!(
            e.done.is_none_or(|d| d == report.jobs_done),
            "done, {context}"
        );
        assert!(
            e.requeued.is_none_or(|r| r == report.jobs_requeued),
            "requeued, {context}"
        );
        assert!(
            e.max_replicas.is_none_or(|m| m == report.max_replicas),
            "max, {context}"
        );
        if let Some(p50) = &e.p50 {
            let expected = Wait {
                seconds: p50.seconds,
                at_least: p50.at_least,
            };
            assert_eq!(report.waits.p50, expected, "p50, {context}");
        }
    }
}
