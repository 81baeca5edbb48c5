//! What the golden tables share: reading a table, laying a row's ScaledObject fields over a
//! base, and loading the result through `manifest` from files, as `surge` does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use surge_autoscale::manifest::{self, FunctionScaling};

/// The function every case scales.
pub const FUNCTION: &str = "t";

/// The Deployment every case scales: its grace periods cover the job timeout, so only the
/// case's own problem shows.
const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: surge-t}
spec:
  template:
    spec:
      terminationGracePeriodSeconds: 45
      containers:
        - name: function
          command: [/usr/local/bin/surge-t]
          env:
            - {name: SURGE_FUNCTION__TIMEOUT_MS, value: \"10000\"}
            - {name: SURGE_FUNCTION__GRACE_PERIOD_MS, value: \"30000\"}
            - {name: SURGE_DATABASE__MAX_CONNECTIONS, value: \"5\"}
";

const AUTHENTICATION: &str = "
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: surge-rabbitmq}
spec:
  secretTargetRef:
    - {parameter: host, name: surge-secrets, key: rabbitmq-management-url}
";

/// The ScaledObject a decision or simulation row changes: no behavior, so the HPA's older
/// path unless the row adds one.
const SCALED_OBJECT: &str = "
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: surge-t}
spec:
  scaleTargetRef: {name: surge-t}
  cooldownPeriod: 60
  maxReplicaCount: 10
  triggers:
    - type: rabbitmq
      metadata: {queueName: fn.t, protocol: http, value: \"20\"}
      authenticationRef: {name: surge-rabbitmq}
";

/// The rows of `file` in this directory.
pub fn table<T: DeserializeOwned>(file: &str) -> Vec<T> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads `documents` (with the base Deployment and TriggerAuthentication, and `concurrency`
/// set on the Deployment when given) from a directory of their own.
pub fn load(case: &str, documents: &str, concurrency: Option<u32>) -> Vec<FunctionScaling> {
    let mut deployment = DEPLOYMENT.to_owned();
    if let Some(c) = concurrency {
        deployment.push_str(&format!(
            "            - {{name: SURGE_FUNCTION__CONCURRENCY, value: \"{c}\"}}\n"
        ));
    }
    let text = format!("{deployment}---\n{AUTHENTICATION}---\n{documents}");
    let dir = scratch(case);
    std::fs::write(dir.join("manifests.yaml"), text).unwrap();
    let loaded = manifest::load_dir(&dir).unwrap_or_else(|e| panic!("{case}: {e:#}"));
    std::fs::remove_dir_all(&dir).unwrap();
    loaded
}

/// The base ScaledObject with `spec` laid over its spec and `trigger` over the rabbitmq
/// trigger's metadata, key by key.
pub fn scaled_object(spec: &Mapping, trigger: &Mapping) -> String {
    let mut object: Value = serde_yaml::from_str(SCALED_OBJECT).unwrap();
    let base_spec = object["spec"].as_mapping_mut().unwrap();
    let metadata = base_spec["triggers"][0]["metadata"]
        .as_mapping_mut()
        .unwrap();
    for (key, value) in trigger {
        metadata.insert(key.clone(), value.clone());
    }
    for (key, value) in spec {
        base_spec.insert(key.clone(), value.clone());
    }
    serde_yaml::to_string(&object).unwrap()
}

/// The one function a row's manifests define.
pub fn only_function(case: &str, documents: &str, concurrency: Option<u32>) -> FunctionScaling {
    let mut functions = load(case, documents, concurrency);
    assert_eq!(functions.len(), 1, "{case}");
    let function = functions.remove(0);
    assert_eq!(function.function, FUNCTION, "{case}");
    function
}

/// A fresh directory per call: the tables run in parallel and case names may repeat.
fn scratch(case: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let slug: String = case
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("surge-golden-{}-{n}-{slug}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
