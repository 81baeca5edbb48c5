use std::path::Path;
use std::time::Duration;

use super::*;
use crate::manifest::{self, FunctionScaling};

/// A function `t` that passes every check: push trigger with a matching target, http, sane
/// values and grace periods.
fn clean() -> FunctionScaling {
    let mut f = FunctionScaling {
        external_push: Some("gw:9090".to_owned()),
        external_push_target: Some(20.0),
        termination_grace: Duration::from_secs(45),
        ..FunctionScaling::example()
    };
    for (k, v) in [
        ("SURGE_FUNCTION__TIMEOUT_MS", "10000"),
        ("SURGE_FUNCTION__GRACE_PERIOD_MS", "30000"),
        ("SURGE_DATABASE__MAX_CONNECTIONS", "5"),
    ] {
        f.env.insert(k.to_owned(), v.to_owned());
    }
    f
}

fn input(functions: Vec<FunctionScaling>) -> CheckInput {
    CheckInput {
        functions,
        known_functions: vec!["t".to_owned()],
        postgres_max_connections: 100,
        gateway_replicas_max: 2,
        gateway_pool: 10,
        default_function_pool: 10,
    }
}

fn only(f: FunctionScaling) -> Finding {
    let findings = check(&input(vec![f]));
    assert_eq!(findings.len(), 1, "{}", render(&findings));
    findings.into_iter().next().unwrap()
}

#[test]
fn a_clean_function_has_no_findings() {
    let findings = check(&input(vec![clean()]));
    assert!(findings.is_empty(), "{}", render(&findings));
    assert_eq!(render(&findings), "0 errors, 0 warnings\n");
}

#[test]
fn connections_beyond_postgres_max_are_an_error_with_the_numbers() {
    let mut other = clean();
    other.function = "u".to_owned();
    other.queue_name = "fn.u".to_owned();
    other.env.remove("SURGE_DATABASE__MAX_CONNECTIONS");
    let mut inp = input(vec![clean(), other]);
    inp.known_functions.push("u".to_owned());
    let findings = check(&inp);
    let f = &findings[0];
    assert_eq!((f.severity, f.function.as_deref()), (Severity::Error, None));
    // t 10 × 5 + u 10 × 10 (default pool) + gateway 2 × 10 = 170 > 100.
    assert_eq!(
        f.message,
        "at full scale Surge opens 170 Postgres connections, 70 more than max_connections 100: \
         t 10 × 5 = 50 + u 10 × 10 = 100 + gateway 2 × 10 = 20"
    );
    assert!(f.fix.contains("u's 100 is the largest"), "{}", f.fix);
    assert!(
        f.fix.contains("at least 170") && f.fix.contains("PgBouncer"),
        "{}",
        f.fix
    );
}

#[test]
fn a_termination_grace_below_the_job_timeout_or_the_runtime_grace_is_an_error() {
    let mut f = clean();
    f.termination_grace = Duration::from_secs(20);
    f.env
        .insert("SURGE_FUNCTION__TIMEOUT_MS".to_owned(), "25000".to_owned());
    let findings = check(&input(vec![f]));
    let messages: Vec<_> = findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(findings.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with(
        "terminationGracePeriodSeconds 20s is below SURGE_FUNCTION__TIMEOUT_MS 25000 (25s)"
    ));
    assert!(messages[1].starts_with(
        "terminationGracePeriodSeconds 20s is below SURGE_FUNCTION__GRACE_PERIOD_MS 30000 (30s)"
    ));
    assert_eq!(
        findings[0].fix,
        "set terminationGracePeriodSeconds on Deployment surge-t to at least 30"
    );
}

#[test]
fn a_runtime_grace_below_the_timeout_is_a_warning() {
    let mut f = clean();
    f.env.insert(
        "SURGE_FUNCTION__GRACE_PERIOD_MS".to_owned(),
        "5000".to_owned(),
    );
    let finding = only(f);
    assert_eq!(finding.severity, Severity::Warning);
    assert!(finding.message.starts_with(
        "SURGE_FUNCTION__GRACE_PERIOD_MS 5000 is below SURGE_FUNCTION__TIMEOUT_MS 10000"
    ));
}

#[test]
fn a_cooldown_shorter_than_the_typical_job_is_a_warning() {
    let from_timeout = only(FunctionScaling {
        cooldown_period: Duration::ZERO,
        ..clean()
    });
    assert_eq!(from_timeout.severity, Severity::Warning);
    assert!(
        from_timeout
            .message
            .contains("(1s, from SURGE_FUNCTION__TIMEOUT_MS 10000 / 10)"),
        "{}",
        from_timeout.message
    );
    let annotated = only(FunctionScaling {
        typical_job: Some(Duration::from_secs(90)),
        ..clean()
    });
    assert!(
        annotated.message.starts_with(
            "cooldownPeriod 60s is shorter than a typical t job (90s, from annotation"
        ),
        "{}",
        annotated.message
    );
    assert!(annotated.fix.contains("at least 90"), "{}", annotated.fix);
}

#[test]
fn a_queue_no_known_function_consumes_is_an_error() {
    let f = FunctionScaling {
        queue_name: "fn.mail".to_owned(),
        external_push: None,
        function: "mail".to_owned(),
        ..clean()
    };
    let findings = check(&input(vec![f]));
    assert_eq!(findings[0].severity, Severity::Error);
    assert!(
        findings[0]
            .message
            .starts_with("queueName fn.mail is not the queue of any function in the code (t)"),
        "{}",
        findings[0].message
    );
    assert!(findings[0].fix.contains("fn.<function> for one of t"));
}

#[test]
fn a_push_trigger_for_an_unknown_function_is_an_error() {
    let f = FunctionScaling {
        function: "tt".to_owned(),
        ..clean()
    };
    let finding = only(f);
    assert!(
        finding
            .message
            .contains("names function \"tt\", which the gateway does not serve"),
        "{}",
        finding.message
    );
}

#[test]
fn the_amqp_protocol_is_an_error_and_auto_a_warning() {
    let amqp = only(FunctionScaling {
        protocol: Some("amqp".to_owned()),
        ..clean()
    });
    assert_eq!(amqp.severity, Severity::Error);
    assert!(amqp.message.starts_with(
        "protocol amqp counts only ready messages: a function whose jobs are all checked out \
         looks idle and is scaled to zero mid-job"
    ));
    assert!(amqp.fix.starts_with("set protocol: http"));
    let auto = only(FunctionScaling {
        protocol: None,
        ..clean()
    });
    assert_eq!(auto.severity, Severity::Warning);
    let excluded = only(FunctionScaling {
        exclude_unacknowledged: true,
        ..clean()
    });
    assert!(
        excluded
            .message
            .starts_with("excludeUnacknowledged \"true\" counts only ready")
    );
}

#[test]
fn a_non_positive_value_is_an_error() {
    let f = FunctionScaling {
        target_value: 0.0,
        ..clean()
    };
    let finding = check(&input(vec![f])).remove(0);
    assert_eq!(finding.severity, Severity::Error);
    assert!(
        finding
            .message
            .starts_with("the rabbitmq trigger's value is 0"),
        "{}",
        finding.message
    );
}

#[test]
fn an_unreachable_or_negative_activation_value_is_reported() {
    // 10 × max 10 × value 20 = 2000; without the push trigger nothing else wakes the function.
    let high = FunctionScaling {
        activation_value: 2000.0,
        ..clean()
    };
    let with_push = only(high.clone());
    assert_eq!(with_push.severity, Severity::Warning);
    assert!(
        with_push
            .message
            .contains("at least 10 × maxReplicaCount 10 × value 20 = 2000"),
        "{}",
        with_push.message
    );
    let findings = check(&input(vec![FunctionScaling {
        external_push: None,
        ..high
    }]));
    assert_eq!(findings[0].severity, Severity::Error);
    let negative = only(FunctionScaling {
        activation_value: -1.0,
        ..clean()
    });
    assert!(
        negative
            .message
            .contains("negative: the trigger is always active")
    );
}

#[test]
fn min_above_max_replicas_is_an_error() {
    let finding = only(FunctionScaling {
        min_replicas: 5,
        max_replicas: 2,
        ..clean()
    });
    assert_eq!(
        finding.message,
        "minReplicaCount 5 is above maxReplicaCount 2: KEDA rejects ScaledObject surge-t"
    );
}

#[test]
fn a_missing_push_trigger_is_a_warning_naming_the_polling_interval() {
    let finding = only(FunctionScaling {
        external_push: None,
        ..clean()
    });
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding.message.contains("up to pollingInterval 30s"),
        "{}",
        finding.message
    );
    assert!(finding.fix.contains("metadata function: t"));
}

#[test]
fn a_push_target_below_value_is_a_warning_that_sizes_the_excess() {
    let finding = only(FunctionScaling {
        target_value: 50.0,
        external_push_target: None,
        ..clean()
    });
    assert_eq!(finding.severity, Severity::Warning);
    let expected = "has no targetSize, so the gateway's metric uses its \
                    scaler.default_target, 10 jobs per replica, while the rabbitmq trigger's \
                    value is 50";
    assert!(finding.message.contains(expected), "{}", finding.message);
    assert!(
        finding.message.contains("up to 5× the replicas"),
        "{}",
        finding.message
    );
    assert!(finding.fix.starts_with("set metadata targetSize: \"50\""));
}

#[test]
fn an_env_number_that_does_not_parse_is_an_error() {
    let mut f = clean();
    f.env
        .insert("SURGE_FUNCTION__CONCURRENCY".to_owned(), "many".to_owned());
    let finding = only(f);
    assert!(
        finding
            .message
            .starts_with("SURGE_FUNCTION__CONCURRENCY is \"many\"")
    );
}

#[test]
fn errors_come_first_and_render_counts_them() {
    let f = FunctionScaling {
        external_push: None,
        protocol: Some("amqp".to_owned()),
        ..clean()
    };
    let findings = check(&input(vec![f]));
    assert_eq!(findings[0].severity, Severity::Error);
    let text = render(&findings);
    assert!(text.starts_with("error[t]: protocol amqp"), "{text}");
    assert!(text.contains("\n  fix: set protocol: http"), "{text}");
    assert!(text.ends_with("1 error, 1 warning\n"), "{text}");
}

#[test]
fn the_keda_base_has_no_errors_with_a_thousand_connections() {
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../keda/base");
    let functions = manifest::load_dir(Path::new(base)).unwrap();
    let findings = check(&CheckInput {
        functions,
        known_functions: ["echo", "sleep", "settings"].map(String::from).to_vec(),
        postgres_max_connections: 1000,
        gateway_replicas_max: 10,
        gateway_pool: 10,
        default_function_pool: 10,
    });
    let errors: Vec<_> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{}", render(&findings));
}

/// Finding 6. KEDA activates only above activationValue (rabbitmq_scaler.go
/// `GetMetricsAndActivity`) and scales an inactive function to zero after the cooldown
/// (scale_scaledobjects.go `RequestScale`): above value, with no push trigger, jobs stay queued.
#[test]
fn an_activation_value_above_value_without_the_push_trigger_strands_jobs() {
    let f = FunctionScaling {
        activation_value: 50.0,
        external_push: None,
        ..clean()
    };
    let findings = check(&input(vec![f.clone()]));
    let finding = &findings[0];
    assert_eq!(finding.severity, Severity::Error);
    assert!(
        finding.message.starts_with(
            "activationValue 50 is above value 20 and no external-push trigger wakes t: up to \
             50 jobs stay in the queue with the function at zero"
        ),
        "{}",
        finding.message
    );
    assert!(
        finding
            .message
            .ends_with("the HPA would run 3 replicas for them")
    );
    // With the push trigger the gateway wakes it; at or below value it is a threshold.
    assert!(only_warnings_or_none(FunctionScaling {
        external_push: Some("gw:9090".to_owned()),
        ..f.clone()
    }));
    assert!(only_warnings_or_none(FunctionScaling {
        activation_value: 20.0,
        ..f
    }));
}

fn only_warnings_or_none(f: FunctionScaling) -> bool {
    check(&input(vec![f]))
        .iter()
        .all(|f| f.severity == Severity::Warning)
}

/// Finding 6. rabbitmq_scaler.go `parseRabbitMQMetadata` needs `host` (metadata, the
/// authentication's parameters or the environment): an authenticationRef naming nothing, or
/// neither a reference nor a host, leaves KEDA without a scaler.
#[test]
fn an_authentication_ref_naming_nothing_is_an_error_that_suggests_the_near_name() {
    let mut f = clean();
    if let Some(reference) = &mut f.authentication {
        reference.name = "surge-rabbitmg".to_owned();
    }
    let finding = only(f.clone());
    assert_eq!(finding.severity, Severity::Error);
    assert_eq!(
        finding.message,
        "authenticationRef names TriggerAuthentication \"surge-rabbitmg\", which the manifests \
         do not define (they define surge-rabbitmq): KEDA cannot read the queue, the \
         ScaledObject is not ready and t never scales"
    );
    assert!(
        finding.fix.contains("(did you mean surge-rabbitmq?)"),
        "{}",
        finding.fix
    );
    // A ClusterTriggerAuthentication may be installed apart: a warning.
    if let Some(reference) = &mut f.authentication {
        reference.kind = "ClusterTriggerAuthentication".to_owned();
        reference.defined.clear();
    }
    assert_eq!(only(f).severity, Severity::Warning);
}

#[test]
fn a_rabbitmq_trigger_without_authentication_or_host_is_an_error() {
    let missing = only(FunctionScaling {
        authentication: None,
        ..clean()
    });
    assert_eq!(missing.severity, Severity::Error);
    assert!(
        missing
            .message
            .starts_with("the rabbitmq trigger has no authenticationRef and no host"),
        "{}",
        missing.message
    );
    let with_host = FunctionScaling {
        authentication: None,
        host: Some(crate::manifest::BrokerHost::FromEnv(
            "RABBIT_URL".to_owned(),
        )),
        ..clean()
    };
    assert!(check(&input(vec![with_host])).is_empty());
}

/// rabbitmq_scaler.go `rabbitMQMetadata.Validate`: `auto` takes the protocol from the host
/// URL's scheme; when the host is in the metadata the check knows it too.
#[test]
fn protocol_auto_with_a_host_in_the_metadata_is_judged_by_its_scheme() {
    let with_host = |url: &str| FunctionScaling {
        protocol: Some("auto".to_owned()),
        host: Some(crate::manifest::BrokerHost::Url(url.to_owned())),
        ..clean()
    };
    let amqp = only(with_host("amqp://rabbit:5672/"));
    assert_eq!(amqp.severity, Severity::Error);
    assert!(
        amqp.message
            .starts_with("protocol auto with an amqp host counts only ready")
    );
    assert!(check(&input(vec![with_host("http://rabbit:15672/")])).is_empty());
}
