//! One YAML document into a ScaledObject (as a `FunctionScaling` without its Deployment's
//! part), a Deployment's [`Target`], or the name of a (Cluster)TriggerAuthentication;
//! everything else is skipped. Defaults are KEDA's and Kubernetes'; values are read, not judged.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use super::field::{Field, FieldError};
use super::triggers::{self, Triggers};
use super::{FunctionScaling, ManifestError, behavior};

const TYPICAL_JOB_ANNOTATION: &str = "surge.dev/typical-job-seconds";

/// A document Surge's scaling depends on.
pub(super) enum Document {
    /// A ScaledObject, its Deployment's fields still at their defaults.
    ScaledObject(Box<FunctionScaling>),
    /// A Deployment, by name.
    Deployment(String, Target),
    /// A `TriggerAuthentication` or `ClusterTriggerAuthentication`: (kind, name).
    Authentication(&'static str, String),
}

/// What a ScaledObject takes from the Deployment it scales.
pub(super) struct Target {
    binary: Option<String>,
    termination_grace: Duration,
    env: BTreeMap<String, String>,
}

/// Reads one document; `None` for kinds Surge's scaling does not use.
pub(super) fn document(path: &Path, doc: &Value) -> Result<Option<Document>, ManifestError> {
    let root = Field::root(doc);
    let kind = root.get("kind").str().ok().flatten();
    let api = root.get("apiVersion").str().ok().flatten().unwrap_or("");
    let name = root.get("metadata").get("name").str().ok().flatten();
    match kind {
        Some("ScaledObject") if api.starts_with("keda.sh/") => {
            let at = located(path, "ScaledObject", name);
            let object = scaled_object(&root).map_err(at)?;
            Ok(Some(Document::ScaledObject(Box::new(object))))
        }
        Some("Deployment") if api == "apps/v1" => {
            let at = located(path, "Deployment", name);
            let name = root
                .get("metadata")
                .get("name")
                .required_str()
                .map_err(&at)?;
            Ok(Some(Document::Deployment(
                name.to_owned(),
                target(&root).map_err(at)?,
            )))
        }
        Some(kind @ ("TriggerAuthentication" | "ClusterTriggerAuthentication"))
            if api.starts_with("keda.sh/") =>
        {
            let kind = auth_kind(kind);
            let at = located(path, kind, name);
            let name = root
                .get("metadata")
                .get("name")
                .required_str()
                .map_err(at)?;
            Ok(Some(Document::Authentication(kind, name.to_owned())))
        }
        _ => Ok(None),
    }
}

/// The kind as a `'static` name, for errors and for matching references.
fn auth_kind(kind: &str) -> &'static str {
    if kind == "TriggerAuthentication" {
        "TriggerAuthentication"
    } else {
        "ClusterTriggerAuthentication"
    }
}

fn located(
    path: &Path,
    kind: &'static str,
    name: Option<&str>,
) -> impl Fn(FieldError) -> ManifestError {
    let path = path.to_owned();
    let object = name.unwrap_or("(unnamed)").to_owned();
    move |e| ManifestError::Field {
        path: path.clone(),
        kind,
        object: object.clone(),
        field: e.field,
        problem: e.problem,
    }
}

impl FunctionScaling {
    /// Fills in the Deployment's part from `targets`, and which authentications of the kind
    /// the trigger refers to the same files define (`authentications`: (kind, name)).
    pub(super) fn join(
        mut self,
        path: &Path,
        targets: &BTreeMap<String, Target>,
        authentications: &[(&'static str, String)],
    ) -> Result<Self, ManifestError> {
        if let Some(reference) = &mut self.authentication {
            reference.defined = authentications
                .iter()
                .filter(|(kind, _)| *kind == reference.kind)
                .map(|(_, name)| name.clone())
                .collect();
        }
        let Some(target) = targets.get(&self.deployment) else {
            return Err(ManifestError::Field {
                path: path.to_owned(),
                kind: "ScaledObject",
                object: self.name,
                field: "spec.scaleTargetRef.name".to_owned(),
                problem: format!(
                    "no Deployment named {:?} in the files loaded with it",
                    self.deployment
                ),
            });
        };
        self.binary.clone_from(&target.binary);
        self.termination_grace = target.termination_grace;
        self.env.clone_from(&target.env);
        Ok(self)
    }
}

fn scaled_object(root: &Field) -> Result<FunctionScaling, FieldError> {
    let metadata = root.get("metadata");
    let spec = root.get("spec");
    let target_ref = spec.get("scaleTargetRef");
    let target_kind = target_ref.get("kind");
    if let Some(kind) = target_kind.str()?.filter(|k| *k != "Deployment") {
        return Err(target_kind.error(format!("{kind}: only Deployments are supported")));
    }
    let triggers = Triggers::read(&spec.get("triggers"))?;
    let rabbit = triggers.rabbit.ok_or_else(|| {
        spec.get("triggers")
            .error("no rabbitmq trigger: Surge scales each function on its queue")
    })?;
    let meta = rabbit.get("metadata");
    let queue = meta.get("queueName");
    let queue_name = queue.required_str()?.to_owned();
    let push_meta = triggers.push.as_ref().map(|p| p.get("metadata"));
    let (external_push, external_push_target) = triggers::push_fields(push_meta.as_ref())?;
    let behavior = spec
        .get("advanced")
        .get("horizontalPodAutoscalerConfig")
        .get("behavior");
    Ok(FunctionScaling {
        name: metadata.get("name").required_str()?.to_owned(),
        function: triggers::function_of(push_meta.as_ref(), &queue)?,
        queue_name,
        deployment: target_ref.get("name").required_str()?.to_owned(),
        binary: None,
        termination_grace: Duration::from_secs(30),
        env: BTreeMap::new(),
        polling_interval: secs(spec.get("pollingInterval").u32()?.unwrap_or(30)),
        cooldown_period: secs(spec.get("cooldownPeriod").u32()?.unwrap_or(300)),
        min_replicas: spec.get("minReplicaCount").u32()?.unwrap_or(0),
        max_replicas: spec.get("maxReplicaCount").u32()?.unwrap_or(100),
        idle_replica_count: spec.get("idleReplicaCount").u32()?,
        target_value: meta.get("value").number()?.unwrap_or(20.0),
        activation_value: meta.get("activationValue").number()?.unwrap_or(0.0),
        mode: meta.get("mode").text()?,
        protocol: meta.get("protocol").text()?,
        exclude_unacknowledged: triggers::flag(&meta.get("excludeUnacknowledged"))?,
        use_cached_metrics: triggers::flag(&rabbit.get("useCachedMetrics"))?,
        host: triggers::host(&meta)?,
        authentication: triggers::authentication(&rabbit)?,
        external_push,
        external_push_target,
        typical_job: typical_job(&metadata.get("annotations").get(TYPICAL_JOB_ANNOTATION))?,
        behavior: behavior::read(&behavior)?,
    })
}

fn target(root: &Field) -> Result<Target, FieldError> {
    let pod = root.get("spec").get("template").get("spec");
    let containers = pod.get("containers").items()?;
    let first = containers
        .first()
        .ok_or_else(|| pod.get("containers").error("no container"))?;
    let binary = match first.get("command").items()?.first() {
        Some(c) => c.required_str()?.rsplit('/').next().map(str::to_owned),
        None => None,
    };
    let mut env = BTreeMap::new();
    for var in first.get("env").items()? {
        if let Some(value) = var.get("value").text()? {
            env.insert(var.get("name").required_str()?.to_owned(), value);
        }
    }
    Ok(Target {
        binary,
        termination_grace: secs(
            pod.get("terminationGracePeriodSeconds")
                .u32()?
                .unwrap_or(30),
        ),
        env,
    })
}

fn typical_job(field: &Field) -> Result<Option<Duration>, FieldError> {
    match field.number()? {
        None => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| field.error(format!("{s}: expected a non-negative number of seconds"))),
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}
