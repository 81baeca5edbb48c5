use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const BASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../keda/base");

fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("surge-autoscale-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        fs::write(dir.join(file), text).unwrap();
    }
    dir
}

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: fn-a}
spec:
  template:
    spec:
      containers:
        - name: function
          command: [/usr/local/bin/surge-a, --flag]
          env:
            - {name: SURGE_FUNCTION__CONCURRENCY, value: \"3\"}
            - {name: PLAIN_NUMBER, value: 7}
            - name: SECRET
              valueFrom: {secretKeyRef: {name: s, key: k}}
";

const MINIMAL: &str = "
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: so-a}
spec:
  scaleTargetRef: {name: fn-a}
  triggers:
    - type: rabbitmq
      metadata: {queueName: fn.a}
";

fn load_one(name: &str, scaled_object: &str) -> Result<Vec<FunctionScaling>, ManifestError> {
    let text = format!("{DEPLOYMENT}---\n{scaled_object}");
    load_dir(&scratch(name, &[("a.yaml", &text)]))
}

#[test]
fn the_keda_base_yields_every_function_with_its_settings() {
    let all = load_dir(Path::new(BASE)).unwrap();
    let names: Vec<_> = all.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names, ["echo", "settings", "sleep"]);
    let echo = &all[0];
    assert_eq!(echo.name, "surge-echo");
    assert_eq!(echo.queue_name, "fn.echo");
    assert_eq!(echo.deployment, "surge-echo");
    assert_eq!(echo.binary.as_deref(), Some("surge-echo"));
    assert_eq!(echo.termination_grace, Duration::from_secs(45));
    assert_eq!(echo.env["SURGE_FUNCTION__CONCURRENCY"], "16");
    assert!(!echo.env.contains_key("SURGE_DATABASE__URL"));
    assert_eq!(echo.polling_interval, Duration::from_secs(10));
    assert_eq!(echo.cooldown_period, Duration::from_secs(60));
    assert_eq!((echo.min_replicas, echo.max_replicas), (0, 10));
    assert_eq!((echo.target_value, echo.activation_value), (50.0, 0.0));
    assert_eq!(echo.protocol.as_deref(), Some("http"));
    assert_eq!(echo.mode.as_deref(), Some("QueueLength"));
    assert!(echo.external_push.is_some());
    let behavior = echo.behavior.as_ref().unwrap();
    assert_eq!(behavior.scale_up, Behavior::default_scale_up());
    assert_eq!(
        behavior.scale_down.stabilization_window,
        Duration::from_secs(60)
    );
    assert_eq!(
        behavior.scale_down.policies,
        [Policy::new(PolicyKind::Percent, 50, 30)]
    );
    let auth = echo.authentication.as_ref().unwrap();
    assert_eq!(
        (auth.kind.as_str(), auth.name.as_str()),
        ("TriggerAuthentication", "surge-rabbitmq")
    );
    assert!(auth.resolves(), "{auth:?}");
    let sleep = &all[2];
    assert_eq!(
        sleep.behavior.as_ref().unwrap().scale_down.policies,
        [Policy::new(PolicyKind::Pods, 1, 60)]
    );
}

#[test]
fn absent_fields_take_the_keda_and_hpa_defaults() {
    let f = &load_one("defaults", MINIMAL).unwrap()[0];
    assert_eq!(f.function, "a");
    assert_eq!(f.polling_interval, Duration::from_secs(30));
    assert_eq!(f.cooldown_period, Duration::from_secs(300));
    assert_eq!((f.min_replicas, f.max_replicas), (0, 100));
    assert_eq!(f.idle_replica_count, None);
    assert_eq!((f.target_value, f.activation_value), (20.0, 0.0));
    assert_eq!(f.termination_grace, Duration::from_secs(30));
    assert_eq!(f.external_push, None);
    assert_eq!(f.typical_job, None);
    // No behavior block: KEDA creates the HPA without one (not with the defaults).
    assert_eq!(f.behavior, None);
    assert_eq!(
        (f.protocol.as_deref(), f.exclude_unacknowledged),
        (None, false)
    );
    assert!(!f.use_cached_metrics);
    assert_eq!((&f.host, &f.authentication), (&None, &None));
}

#[test]
fn an_empty_behavior_block_is_a_behavior_at_the_kubernetes_defaults() {
    let so = MINIMAL.to_owned()
        + "
  advanced:
    horizontalPodAutoscalerConfig:
      behavior: {}
";
    let f = &load_one("empty-behavior", &so).unwrap()[0];
    assert_eq!(f.behavior, Some(HpaBehavior::default()));
}

#[test]
fn the_trigger_connection_cache_and_authentication_are_read_and_resolved() {
    let so = MINIMAL.replace(
        "      metadata: {queueName: fn.a}",
        "      useCachedMetrics: true
      metadata: {queueName: fn.a, host: \"amqp://rabbit:5672/\", protocol: auto}
      authenticationRef: {name: rabbit-auth}",
    );
    let auth = "
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: rabbit-auth}
---
apiVersion: keda.sh/v1alpha1
kind: ClusterTriggerAuthentication
metadata: {name: cluster-auth}
";
    let text = format!("{DEPLOYMENT}---\n{so}---\n{auth}");
    let f = &load_dir(&scratch("auth", &[("a.yaml", &text)])).unwrap()[0];
    assert!(f.use_cached_metrics);
    assert_eq!(
        f.host,
        Some(BrokerHost::Url("amqp://rabbit:5672/".to_owned()))
    );
    let reference = f.authentication.as_ref().unwrap();
    assert_eq!(reference.kind, "TriggerAuthentication");
    assert_eq!(reference.defined, ["rabbit-auth"]);
    assert!(reference.resolves());
    // A misspelled name, or the other kind, does not resolve.
    let wrong = text.replace(
        "metadata: {name: rabbit-auth}",
        "metadata: {name: rabbit-atuh}",
    );
    let f = &load_dir(&scratch("auth-wrong", &[("a.yaml", &wrong)])).unwrap()[0];
    assert!(!f.authentication.as_ref().unwrap().resolves());
}

#[test]
fn a_yaml_error_names_its_cause_once() {
    let dir = scratch("bad-yaml", &[("a.yaml", "kind: [ScaledObject\n")]);
    let err = anyhow::Error::from(load_dir(&dir).unwrap_err());
    let text = format!("{err:#}");
    assert!(text.contains("a.yaml: not valid YAML: "), "{text}");
    let cause = err.root_cause().to_string();
    assert_eq!(text.matches(&cause).count(), 1, "{text}");
}

#[test]
fn the_deployment_gives_binary_basename_and_literal_env_only() {
    let f = &load_one("deployment", MINIMAL).unwrap()[0];
    assert_eq!(f.binary.as_deref(), Some("surge-a"));
    let env: Vec<_> = f.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(env, ["PLAIN_NUMBER=7", "SURGE_FUNCTION__CONCURRENCY=3"]);
}

#[test]
fn the_push_trigger_names_the_function_and_the_annotation_the_typical_job() {
    let so = MINIMAL.replace(
        "metadata: {name: so-a}",
        "metadata:\n  name: so-a\n  annotations: {surge.dev/typical-job-seconds: \"2.5\"}",
    ) + "    - type: external-push\n      \
           metadata: {scalerAddress: \"gw:9090\", function: b, targetSize: \"8\"}\n";
    let f = &load_one("push", &so).unwrap()[0];
    assert_eq!(f.function, "b");
    assert_eq!(f.external_push.as_deref(), Some("gw:9090"));
    assert_eq!(f.external_push_target, Some(8.0));
    assert_eq!(f.typical_job, Some(Duration::from_millis(2500)));
}

#[test]
fn a_partial_behavior_keeps_the_defaults_it_does_not_override() {
    let so = MINIMAL.to_owned()
        + "
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp: {selectPolicy: Disabled}
        scaleDown: {stabilizationWindowSeconds: 10}
";
    let f = &load_one("partial", &so).unwrap()[0];
    let behavior = f.behavior.as_ref().unwrap();
    assert_eq!(behavior.scale_up.select, Select::Disabled);
    assert_eq!(
        behavior.scale_up.policies,
        Behavior::default_scale_up().policies
    );
    assert_eq!(
        behavior.scale_down.stabilization_window,
        Duration::from_secs(10)
    );
    assert_eq!(
        behavior.scale_down.policies,
        Behavior::default_scale_down().policies
    );
}

#[test]
fn a_bad_value_is_reported_with_its_file_object_and_field() {
    let so = MINIMAL.replace("{queueName: fn.a}", "{queueName: fn.a, value: lots}");
    let err = load_one("bad-value", &so).unwrap_err().to_string();
    assert!(err.contains("a.yaml"), "{err}");
    assert!(err.contains("ScaledObject so-a"), "{err}");
    assert!(
        err.contains("spec.triggers[0].metadata.value: expected a number, got \"lots\""),
        "{err}"
    );
}

#[test]
fn a_scaled_object_whose_deployment_is_missing_is_an_error() {
    let dir = scratch("missing", &[("so.yaml", MINIMAL)]);
    let err = load_dir(&dir).unwrap_err().to_string();
    assert!(err.contains("spec.scaleTargetRef.name"), "{err}");
    assert!(err.contains("\"fn-a\""), "{err}");
}

#[test]
fn a_scaled_object_without_a_rabbitmq_trigger_is_an_error() {
    let so = MINIMAL.replace("type: rabbitmq", "type: cron");
    let err = load_one("no-rabbit", &so).unwrap_err().to_string();
    assert!(err.contains("spec.triggers: no rabbitmq trigger"), "{err}");
}

#[test]
fn other_kinds_kustomization_and_non_yaml_files_are_ignored() {
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\n";
    let dir = scratch(
        "ignored",
        &[
            ("kustomization.yaml", kustomization),
            ("notes.txt", "not: [yaml"),
            ("d.yml", DEPLOYMENT),
            ("so.yaml", &format!("{service}{MINIMAL}---\n")),
        ],
    );
    assert_eq!(load_dir(&dir).unwrap().len(), 1);
}

#[test]
fn load_file_reads_one_file_alone() {
    let dir = scratch("one-file", &[("so.yaml", MINIMAL), ("d.yaml", DEPLOYMENT)]);
    assert!(load_file(&dir.join("so.yaml")).is_err());
    let both = format!("{DEPLOYMENT}---\n{MINIMAL}");
    fs::write(dir.join("both.yaml"), both).unwrap();
    assert_eq!(load_file(&dir.join("both.yaml")).unwrap()[0].name, "so-a");
}
