//! One YAML document into a ScaledObject (as a `FunctionScaling` without its Deployment's
//! part) or a Deployment's [`Target`]; everything else is skipped. Defaults are KEDA's and
//! Kubernetes'; values are read, not judged.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use super::field::{Field, FieldError};
use super::{Behavior, FunctionScaling, ManifestError, Policy, PolicyKind, Select};

const TYPICAL_JOB_ANNOTATION: &str = "surge.dev/typical-job-seconds";

/// A document Surge's scaling depends on.
pub(super) enum Document {
    /// A ScaledObject, its Deployment's fields still at their defaults.
    ScaledObject(Box<FunctionScaling>),
    /// A Deployment, by name.
    Deployment(String, Target),
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
        _ => Ok(None),
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
    /// Fills in the Deployment's part from `targets`.
    pub(super) fn join(
        mut self,
        path: &Path,
        targets: &BTreeMap<String, Target>,
    ) -> Result<Self, ManifestError> {
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
    let (external_push, external_push_target) = push_fields(push_meta.as_ref())?;
    let behavior = spec
        .get("advanced")
        .get("horizontalPodAutoscalerConfig")
        .get("behavior");
    Ok(FunctionScaling {
        name: metadata.get("name").required_str()?.to_owned(),
        function: function_of(push_meta.as_ref(), &queue)?,
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
        exclude_unacknowledged: flag(&meta.get("excludeUnacknowledged"))?,
        external_push,
        external_push_target,
        typical_job: typical_job(&metadata.get("annotations").get(TYPICAL_JOB_ANNOTATION))?,
        scale_up: behavior_of(&behavior.get("scaleUp"), Behavior::default_scale_up())?,
        scale_down: behavior_of(&behavior.get("scaleDown"), Behavior::default_scale_down())?,
    })
}

/// The push trigger's `function`, else the queue's name after `fn.`.
fn function_of(push_meta: Option<&Field>, queue: &Field) -> Result<String, FieldError> {
    if let Some(function) = push_meta
        .map(|m| m.get("function").str())
        .transpose()?
        .flatten()
    {
        return Ok(function.to_owned());
    }
    queue
        .required_str()?
        .rsplit_once("fn.")
        .map(|(_, f)| f.to_owned())
        .ok_or_else(|| {
            queue.error(
                "cannot tell the function: expected fn.<name>, or an external-push trigger \
                 with metadata function",
            )
        })
}

/// The push trigger's `scalerAddress` and `targetSize`.
fn push_fields(push_meta: Option<&Field>) -> Result<(Option<String>, Option<f64>), FieldError> {
    let Some(meta) = push_meta else {
        return Ok((None, None));
    };
    let address = meta.get("scalerAddress").required_str()?.to_owned();
    Ok((Some(address), meta.get("targetSize").number()?))
}

/// The triggers Surge uses: one rabbitmq, at most one external-push; others are ignored.
struct Triggers<'a> {
    rabbit: Option<Field<'a>>,
    push: Option<Field<'a>>,
}

impl<'a> Triggers<'a> {
    fn read(list: &Field<'a>) -> Result<Self, FieldError> {
        let mut out = Self {
            rabbit: None,
            push: None,
        };
        for trigger in list.items()? {
            let slot = match trigger.get("type").required_str()? {
                "rabbitmq" => &mut out.rabbit,
                "external-push" => &mut out.push,
                _ => continue,
            };
            if slot.is_some() {
                return Err(trigger
                    .get("type")
                    .error("a second trigger of this type: Surge expects one per ScaledObject"));
            }
            *slot = Some(trigger);
        }
        Ok(out)
    }
}

fn behavior_of(field: &Field, default: Behavior) -> Result<Behavior, FieldError> {
    let items = field.get("policies").items()?;
    let policies = if items.is_empty() {
        default.policies
    } else {
        items.iter().map(policy).collect::<Result<_, _>>()?
    };
    let select_field = field.get("selectPolicy");
    let select = match select_field.str()? {
        None => default.select,
        Some("Max") => Select::Max,
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        Some(other) => {
            return Err(select_field.error(format!("{other:?}: expected Max, Min or Disabled")));
        }
    };
    Ok(Behavior {
        stabilization_window: field
            .get("stabilizationWindowSeconds")
            .u32()?
            .map_or(default.stabilization_window, secs),
        policies,
        select,
    })
}

fn policy(field: &Field) -> Result<Policy, FieldError> {
    let kind_field = field.get("type");
    let kind = match kind_field.required_str()? {
        "Pods" => PolicyKind::Pods,
        "Percent" => PolicyKind::Percent,
        other => return Err(kind_field.error(format!("{other:?}: expected Pods or Percent"))),
    };
    let required = |name: &str| {
        let f = field.get(name);
        f.u32()?.ok_or_else(|| f.error("missing"))
    };
    Ok(Policy {
        kind,
        value: required("value")?,
        period: secs(required("periodSeconds")?),
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

fn flag(field: &Field) -> Result<bool, FieldError> {
    match field.text()?.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(field.error(format!("{other:?}: expected \"true\" or \"false\""))),
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}
