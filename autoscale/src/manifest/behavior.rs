//! The HPA's `behavior` as a ScaledObject gives it (`spec.advanced.horizontalPodAutoscalerConfig
//! .behavior`): its types, the defaults the Kubernetes API server fills in, and how it is read.
//! Whether there is a behavior at all matters: KEDA copies the block into the HPA as it is, and
//! without one the HPA controller takes its older path (see `decision`).

use std::time::Duration;

use super::field::{Field, FieldError};

/// The HPA's `behavior`, both directions filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaBehavior {
    /// `behavior.scaleUp`, with Kubernetes' defaults for what it leaves out.
    pub scale_up: Behavior,
    /// `behavior.scaleDown`, with Kubernetes' defaults for what it leaves out.
    pub scale_down: Behavior,
}

/// One direction of the HPA's scaling behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Recommendations this far back are taken into account (max for down, min for up).
    pub stabilization_window: Duration,
    /// Limits on the change per period.
    pub policies: Vec<Policy>,
    /// Which policy applies when several do.
    pub select: Select,
}

/// A limit on how much the replica count may change within a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Whether `value` counts pods or percent of the count at the period's start.
    pub kind: PolicyKind,
    /// Pods or percent.
    pub value: u32,
    /// The period the limit applies to.
    pub period: Duration,
}

/// The unit of a [`Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// A number of pods.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// `selectPolicy`: which of several policies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

impl Default for HpaBehavior {
    /// What a `behavior: {}` becomes: both directions at Kubernetes' defaults.
    fn default() -> Self {
        Self {
            scale_up: Behavior::default_scale_up(),
            scale_down: Behavior::default_scale_down(),
        }
    }
}

impl Behavior {
    /// Kubernetes' default scale-up (`GenerateHPAScaleUpRules` in pkg/apis/autoscaling/v2/
    /// defaults.go): no window; +100 % or +4 pods per 15 s, whichever is more.
    pub fn default_scale_up() -> Self {
        Self {
            stabilization_window: Duration::ZERO,
            policies: vec![
                Policy::new(PolicyKind::Percent, 100, 15),
                Policy::new(PolicyKind::Pods, 4, 15),
            ],
            select: Select::Max,
        }
    }

    /// Kubernetes' default scale-down: the controller's 300 s window
    /// (`--horizontal-pod-autoscaler-downscale-stabilization`), then down to the recommendation
    /// at once (100 % per 15 s).
    pub fn default_scale_down() -> Self {
        Self {
            stabilization_window: Duration::from_secs(300),
            policies: vec![Policy::new(PolicyKind::Percent, 100, 15)],
            select: Select::Max,
        }
    }
}

impl Policy {
    /// A policy of `value` pods or percent per `period_secs`.
    pub fn new(kind: PolicyKind, value: u32, period_secs: u64) -> Self {
        Self {
            kind,
            value,
            period: Duration::from_secs(period_secs),
        }
    }
}

/// The `behavior` block; `None` when the ScaledObject has none (KEDA then creates the HPA
/// without one). A block that is there is completed field by field, as the API server does
/// (`SetDefaults_HorizontalPodAutoscalerBehavior`).
pub(super) fn read(field: &Field) -> Result<Option<HpaBehavior>, FieldError> {
    if !field.is_present() {
        return Ok(None);
    }
    Ok(Some(HpaBehavior {
        scale_up: direction(&field.get("scaleUp"), Behavior::default_scale_up())?,
        scale_down: direction(&field.get("scaleDown"), Behavior::default_scale_down())?,
    }))
}

fn direction(field: &Field, default: Behavior) -> Result<Behavior, FieldError> {
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

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}
