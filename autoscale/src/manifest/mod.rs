//! The subset of KEDA ScaledObjects (`keda.sh/v1alpha1`), their target Deployments and the
//! TriggerAuthentications they name that Surge uses, read from YAML files into
//! [`FunctionScaling`](crate::manifest::FunctionScaling) values, with KEDA's and Kubernetes'
//! defaults filled in. Reads files only: it neither renders kustomize nor talks to a cluster,
//! and it does not judge the values (that is `check`'s job).

/// The HPA `behavior` block: types, Kubernetes' defaults, reading.
mod behavior;
/// Walking YAML by field path, so errors name the field.
mod field;
/// One document into a ScaledObject, Deployment or authentication.
mod parse;
#[cfg(test)]
mod tests;
/// The rabbitmq and external-push triggers.
mod triggers;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use self::parse::{Document, Target};

pub use self::behavior::{Behavior, HpaBehavior, Policy, PolicyKind, Select};

/// One function's scaling, from its ScaledObject and the Deployment it scales.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionScaling {
    /// The ScaledObject's name (`surge-echo`).
    pub name: String,
    /// The function: the `external-push` trigger's metadata `function`, else the rabbitmq
    /// trigger's queue name without `fn.`.
    pub function: String,
    /// The rabbitmq trigger's `queueName`.
    pub queue_name: String,
    /// `spec.scaleTargetRef.name`.
    pub deployment: String,
    /// The basename of the first container's `command[0]`.
    pub binary: Option<String>,
    /// The pod's `terminationGracePeriodSeconds` (Kubernetes' default: 30 s).
    pub termination_grace: Duration,
    /// The first container's literal `env` values (`valueFrom` entries are left out).
    pub env: BTreeMap<String, String>,
    /// `pollingInterval` (default 30 s).
    pub polling_interval: Duration,
    /// `cooldownPeriod` (default 300 s): idle time before scaling to zero.
    pub cooldown_period: Duration,
    /// `minReplicaCount` (default 0).
    pub min_replicas: u32,
    /// `maxReplicaCount` (default 100).
    pub max_replicas: u32,
    /// `idleReplicaCount`: the count while inactive, instead of zero.
    pub idle_replica_count: Option<u32>,
    /// The rabbitmq trigger's `value` (default 20): queue depth per replica.
    pub target_value: f64,
    /// The rabbitmq trigger's `activationValue` (default 0): active above it.
    pub activation_value: f64,
    /// The rabbitmq trigger's `mode` (`QueueLength`, `MessageRate`).
    pub mode: Option<String>,
    /// The rabbitmq trigger's `protocol` (`http`, `amqp`, `auto`; KEDA's default: `auto`).
    pub protocol: Option<String>,
    /// The rabbitmq trigger's `excludeUnacknowledged` (KEDA's default: false).
    pub exclude_unacknowledged: bool,
    /// The rabbitmq trigger's `useCachedMetrics` (default false): the HPA is served the value
    /// of KEDA's last poll instead of a fresh read of the queue.
    pub use_cached_metrics: bool,
    /// The broker's address as the rabbitmq trigger's metadata gives it; `None` when it comes
    /// from a TriggerAuthentication only.
    pub host: Option<BrokerHost>,
    /// The rabbitmq trigger's `authenticationRef`.
    pub authentication: Option<AuthenticationRef>,
    /// The `external-push` trigger's `scalerAddress`, when there is one.
    pub external_push: Option<String>,
    /// The `external-push` trigger's `targetSize`: jobs per replica of the gateway's metric
    /// (the gateway's `scaler.default_target` applies when absent).
    pub external_push_target: Option<f64>,
    /// The ScaledObject's annotation `surge.dev/typical-job-seconds`.
    pub typical_job: Option<Duration>,
    /// `spec.advanced.horizontalPodAutoscalerConfig.behavior`, completed with Kubernetes'
    /// defaults; `None` when absent, and then the HPA takes its older path (no policies: at
    /// most max(2 × current, 4) per sync, a 300 s scale-down window).
    pub behavior: Option<HpaBehavior>,
}

/// Where the rabbitmq trigger's metadata says the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerHost {
    /// `host`: a URL, whose scheme picks the protocol when `protocol` is `auto`.
    Url(String),
    /// `hostFromEnv`: the name of a variable of the scaled container.
    FromEnv(String),
}

/// A trigger's `authenticationRef`, resolved against the files loaded with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationRef {
    /// `TriggerAuthentication` (KEDA's default) or `ClusterTriggerAuthentication`.
    pub kind: String,
    /// The object it names.
    pub name: String,
    /// The names of the objects of that kind the files loaded with the ScaledObject define.
    pub defined: Vec<String>,
}

impl AuthenticationRef {
    /// Whether the files define the object it names.
    pub fn resolves(&self) -> bool {
        self.defined.contains(&self.name)
    }
}

/// The runtime's defaults for the settings a Deployment may leave out
/// (`surge_runtime::settings::FunctionSettings::default`; a test keeps them equal).
pub const RUNTIME_CONCURRENCY: u32 = 8;
pub const RUNTIME_TIMEOUT_MS: u64 = 60_000;
pub const RUNTIME_GRACE_MS: u64 = 30_000;

impl FunctionScaling {
    fn env_number(&self, key: &str) -> Option<u64> {
        self.env.get(key).and_then(|v| v.parse().ok())
    }

    /// Jobs one replica runs at once (`SURGE_FUNCTION__CONCURRENCY`, else the runtime's).
    pub fn concurrency(&self) -> u32 {
        self.env_number("SURGE_FUNCTION__CONCURRENCY")
            .and_then(|c| u32::try_from(c).ok())
            .filter(|c| *c > 0)
            .unwrap_or(RUNTIME_CONCURRENCY)
    }

    /// How long a handler may run (`SURGE_FUNCTION__TIMEOUT_MS`, else the runtime's).
    pub fn timeout_ms(&self) -> u64 {
        self.env_number("SURGE_FUNCTION__TIMEOUT_MS")
            .unwrap_or(RUNTIME_TIMEOUT_MS)
    }

    /// How long a stopping replica lets jobs finish (`SURGE_FUNCTION__GRACE_PERIOD_MS`, else
    /// the runtime's).
    pub fn grace_ms(&self) -> u64 {
        self.env_number("SURGE_FUNCTION__GRACE_PERIOD_MS")
            .unwrap_or(RUNTIME_GRACE_MS)
    }
}

#[cfg(test)]
impl FunctionScaling {
    /// Function `t` on `fn.t` (value 20, cooldown 60 s, 0..10 replicas, http, a behavior block
    /// at Kubernetes' defaults, a TriggerAuthentication that resolves), for tests.
    pub(crate) fn example() -> Self {
        Self {
            name: "surge-t".to_owned(),
            function: "t".to_owned(),
            queue_name: "fn.t".to_owned(),
            deployment: "surge-t".to_owned(),
            binary: Some("surge-t".to_owned()),
            termination_grace: Duration::from_secs(30),
            env: BTreeMap::new(),
            polling_interval: Duration::from_secs(30),
            cooldown_period: Duration::from_secs(60),
            min_replicas: 0,
            max_replicas: 10,
            idle_replica_count: None,
            target_value: 20.0,
            activation_value: 0.0,
            mode: Some("QueueLength".to_owned()),
            protocol: Some("http".to_owned()),
            exclude_unacknowledged: false,
            use_cached_metrics: false,
            host: None,
            authentication: Some(AuthenticationRef {
                kind: "TriggerAuthentication".to_owned(),
                name: "surge-rabbitmq".to_owned(),
                defined: vec!["surge-rabbitmq".to_owned()],
            }),
            external_push: None,
            external_push_target: None,
            typical_job: None,
            behavior: Some(HpaBehavior::default()),
        }
    }
}

/// Why manifests could not be loaded; each names the file and, where one is at fault, the
/// object and field.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file or directory could not be read. (The cause is the source, not repeated in the
    /// message: `{:#}` would print it twice.)
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{}: not valid YAML", path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    /// A field is missing, of the wrong type or unsupported.
    #[error("{}: {kind} {object}: {field}: {problem}", path.display())]
    Field {
        path: PathBuf,
        kind: &'static str,
        object: String,
        field: String,
        problem: String,
    },
}

/// Loads every ScaledObject in `dir`'s `*.yaml` / `*.yml` files (not in subfolders, not
/// `kustomization.yaml`), joined with its Deployment from the same files; sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<FunctionScaling>, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if is_manifest(&path) {
            files.push(path);
        }
    }
    files.sort();
    load(&files)
}

/// Loads the ScaledObjects of one file, joined with Deployments from the same file.
pub fn load_file(path: &Path) -> Result<Vec<FunctionScaling>, ManifestError> {
    load(&[path.to_owned()])
}

fn is_manifest(path: &Path) -> bool {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let kustomization = path
        .file_stem()
        .is_some_and(|s| s.eq_ignore_ascii_case("kustomization"));
    yaml && !kustomization && path.is_file()
}

fn load(files: &[PathBuf]) -> Result<Vec<FunctionScaling>, ManifestError> {
    let mut objects = Vec::new();
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let mut authentications = Vec::new();
    for path in files {
        for doc in read_documents(path)? {
            match parse::document(path, &doc)? {
                Some(Document::ScaledObject(object)) => objects.push((path.clone(), object)),
                Some(Document::Deployment(name, target)) => {
                    targets.insert(name, target);
                }
                Some(Document::Authentication(kind, name)) => authentications.push((kind, name)),
                None => {}
            }
        }
    }
    let mut out = objects
        .into_iter()
        .map(|(path, object)| object.join(&path, &targets, &authentications))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read_documents(path: &Path) -> Result<Vec<Value>, ManifestError> {
    let text = fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(&text) {
        let doc = Value::deserialize(de).map_err(|source| ManifestError::Yaml {
            path: path.to_owned(),
            source,
        })?;
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod runtime_defaults {
    #[test]
    fn the_defaults_assumed_here_are_the_runtimes() {
        let runtime = surge_runtime::settings::FunctionSettings::default();
        assert_eq!(u32::from(runtime.concurrency), super::RUNTIME_CONCURRENCY);
        assert_eq!(runtime.timeout_ms, super::RUNTIME_TIMEOUT_MS);
        assert_eq!(runtime.grace_period_ms, super::RUNTIME_GRACE_MS);
    }
}
