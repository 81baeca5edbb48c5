//! Every row of `checks.yaml` through `surge check`'s rules: the snippet with the base
//! Deployment and TriggerAuthentication, loaded from files, checked, and its findings compared
//! with the row's, all of them.

use serde::Deserialize;
use surge_autoscale::check::{self, CheckInput, Severity};

use super::fixture;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    case: String,
    rule: String,
    manifests: String,
    expect: Vec<Expected>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    severity: Level,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Error,
    Warning,
}

#[test]
fn every_golden_check_gives_exactly_its_findings() {
    let cases: Vec<Case> = fixture::table("checks.yaml");
    assert!(cases.len() >= 10, "{} cases", cases.len());
    for case in &cases {
        let functions = fixture::load(&case.case, &case.manifests, None);
        let findings = check::check(&CheckInput {
            functions,
            known_functions: vec![fixture::FUNCTION.to_owned()],
            postgres_max_connections: 1000,
            gateway_replicas_max: 2,
            gateway_pool: 10,
            default_function_pool: 10,
        });
        let context = format!(
            "case {:?} ({}):\n{}",
            case.case,
            case.rule,
            check::render(&findings)
        );
        assert_eq!(findings.len(), case.expect.len(), "{context}");
        for expected in &case.expect {
            let severity = match expected.severity {
                Level::Error => Severity::Error,
                Level::Warning => Severity::Warning,
            };
            assert!(
                findings
                    .iter()
                    .any(|f| f.severity == severity && f.message.contains(&expected.message)),
                "missing {expected:?} in {context}"
            );
        }
    }
}
