//! Checks of the ScaledObject's triggers and bounds: the queue against the functions in the
//! code, what the rabbitmq trigger counts, its value and activation value, the replica
//! bounds, and the external-push trigger and its metric. How the trigger reaches the broker
//! (its TriggerAuthentication) is `connection`'s.

use super::rules::CONCURRENCY;
use super::{Finding, Severity};
use crate::decision::{GATEWAY_DEFAULT_TARGET, QueueProtocol, queue_protocol, show_num, show_secs};
use crate::manifest::{BrokerHost, FunctionScaling};

/// The queue and the push trigger's function against the functions in the code.
pub(super) fn queue(f: &FunctionScaling, known: &[String]) -> Vec<Finding> {
    let list = known.join(", ");
    let mut out = Vec::new();
    if !known.iter().any(|k| f.queue_name == format!("fn.{k}")) {
        out.push(Finding::new(
            Severity::Error,
            Some(f),
            format!(
                "queueName {} is not the queue of any function in the code ({list}): \
                 ScaledObject {} scales {} on a queue nobody consumes",
                f.queue_name, f.name, f.deployment
            ),
            format!(
                "set queueName to fn.<function> for one of {list} (prefixed with \
                 SURGE_BROKER__PREFIX when one is set), or add the function to the code"
            ),
        ));
    }
    if f.external_push.is_some() && !known.contains(&f.function) {
        out.push(Finding::new(
            Severity::Error,
            Some(f),
            format!(
                "the external-push trigger names function {:?}, which the gateway does not \
                 serve ({list}): the scaler answers not-found and push activation never happens",
                f.function
            ),
            format!(
                "set the external-push trigger's metadata function on ScaledObject {} to one \
                 of {list}",
                f.name
            ),
        ));
    } else if known.contains(&f.function) && f.queue_name != format!("fn.{}", f.function) {
        out.push(Finding::new(
            Severity::Error,
            Some(f),
            format!(
                "the triggers disagree: external-push function {} but rabbitmq queueName {}",
                f.function, f.queue_name
            ),
            format!(
                "set queueName to fn.{} on ScaledObject {}",
                f.function, f.name
            ),
        ));
    }
    out
}

/// Whether the rabbitmq trigger counts jobs in flight (only `http` with unacked does).
pub(super) fn protocol(f: &FunctionScaling) -> Option<Finding> {
    let ready_only = "counts only ready messages: a function whose jobs are all checked out \
                      looks idle and is scaled to zero mid-job (KEDA issues 356, 638, 2572, 5050)";
    let excluded = || {
        (
            Severity::Error,
            format!("excludeUnacknowledged \"true\" {ready_only}"),
        )
    };
    let (severity, message) = match f.protocol.as_deref() {
        Some("http") if !f.exclude_unacknowledged => return None,
        Some("http") => excluded(),
        // `auto` with the host in the metadata: its scheme decides, as it does for KEDA.
        None | Some("auto") if matches!(f.host, Some(BrokerHost::Url(_))) => {
            match queue_protocol(f) {
                QueueProtocol::Http {
                    exclude_unacknowledged: false,
                } => return None,
                QueueProtocol::Http { .. } => excluded(),
                QueueProtocol::Amqp => (
                    Severity::Error,
                    format!("protocol auto with an amqp host {ready_only}"),
                ),
            }
        }
        None | Some("auto") => (
            Severity::Warning,
            format!(
                "protocol is auto: KEDA picks amqp or http from the host URL's scheme, and \
                 over amqp it {ready_only}"
            ),
        ),
        Some(other) => (Severity::Error, format!("protocol {other} {ready_only}")),
    };
    let fix = format!(
        "set protocol: http (host = the management API URL in the TriggerAuthentication) and \
         excludeUnacknowledged: \"false\" on ScaledObject {}",
        f.name
    );
    Some(Finding::new(severity, Some(f), message, fix))
}

/// `value` must be positive: the HPA divides the queue depth by it.
pub(super) fn value(f: &FunctionScaling) -> Option<Finding> {
    if f.target_value > 0.0 {
        return None;
    }
    Some(Finding::new(
        Severity::Error,
        Some(f),
        format!(
            "the rabbitmq trigger's value is {}: it is the jobs queued or in flight per \
             replica and must be positive",
            show_num(f.target_value)
        ),
        format!(
            "set value on ScaledObject {} to the jobs one replica should carry, e.g. \
             \"{}\" ({CONCURRENCY})",
            f.name,
            f.concurrency()
        ),
    ))
}

/// `activationValue` neither negative (always active), out of reach (never active), nor above
/// `value` with nothing else to wake the function (jobs left in the queue at zero).
pub(super) fn activation(f: &FunctionScaling) -> Option<Finding> {
    let (value, activation) = (f.target_value, f.activation_value);
    let ceiling = f64::from(f.max_replicas) * value * 10.0;
    if f.external_push.is_none() && value > 0.0 && activation > value && activation < ceiling {
        return Some(stranded(f));
    }
    let problem = if activation < 0.0 {
        format!(
            "activationValue {} is negative: the trigger is always active and the function \
             never scales to zero",
            show_num(activation)
        )
    } else if value > 0.0 && activation >= ceiling {
        format!(
            "activationValue {} is at least 10 × maxReplicaCount {} × value {} = {}: the \
             queue trigger practically never activates the function",
            show_num(activation),
            f.max_replicas,
            show_num(value),
            show_num(ceiling)
        )
    } else {
        return None;
    };
    // With the push trigger the gateway still wakes the function, so it only degrades.
    let severity = match f.external_push {
        Some(_) => Severity::Warning,
        None => Severity::Error,
    };
    let fix = format!(
        "set activationValue on ScaledObject {} to \"0\" (any job wakes it) or a small \
         threshold below value {}",
        f.name,
        show_num(value)
    );
    Some(Finding::new(severity, Some(f), problem, fix))
}

/// KEDA activates only above `activationValue` (and deactivates at or below it, then scales to
/// zero after the cooldown) while the HPA would run `ceil(depth / value)` replicas: with the
/// activation above `value` and no push trigger, up to `activationValue` jobs wait at zero.
fn stranded(f: &FunctionScaling) -> Finding {
    let (value, activation) = (f.target_value, f.activation_value);
    let wanted = (activation / value).ceil();
    Finding::new(
        Severity::Error,
        Some(f),
        format!(
            "activationValue {} is above value {} and no external-push trigger wakes {}: up \
             to {} jobs stay in the queue with the function at zero (KEDA activates only above \
             activationValue, and scales a running function to zero after the cooldown once \
             that few are left), though the HPA would run {} replicas for them",
            show_num(activation),
            show_num(value),
            f.function,
            show_num(activation.floor()),
            show_num(wanted)
        ),
        format!(
            "lower activationValue on ScaledObject {} below value {} (\"0\": any job wakes it), \
             or add the external-push trigger",
            f.name,
            show_num(value)
        ),
    )
}

/// `minReplicaCount <= maxReplicaCount`, and `idleReplicaCount` below the minimum.
pub(super) fn replica_bounds(f: &FunctionScaling) -> Vec<Finding> {
    let mut out = Vec::new();
    if f.min_replicas > f.max_replicas {
        out.push(Finding::new(
            Severity::Error,
            Some(f),
            format!(
                "minReplicaCount {} is above maxReplicaCount {}: KEDA rejects ScaledObject {}",
                f.min_replicas, f.max_replicas, f.name
            ),
            format!(
                "lower minReplicaCount to at most {} or raise maxReplicaCount to at least {}",
                f.max_replicas, f.min_replicas
            ),
        ));
    }
    if let Some(idle) = f.idle_replica_count.filter(|i| *i >= f.min_replicas.max(1)) {
        out.push(Finding::new(
            Severity::Error,
            Some(f),
            format!(
                "idleReplicaCount {idle} is not below minReplicaCount {}: KEDA requires it \
                 to be smaller",
                f.min_replicas
            ),
            format!(
                "remove idleReplicaCount from ScaledObject {} or set it below minReplicaCount",
                f.name
            ),
        ));
    }
    out
}

/// The external-push trigger: there, and not sizing the function past what `value` says.
pub(super) fn push(f: &FunctionScaling) -> Option<Finding> {
    if f.external_push.is_none() {
        return Some(Finding::new(
            Severity::Warning,
            Some(f),
            format!(
                "no external-push trigger: an idle {} wakes only at the next poll, up to \
                 pollingInterval {} after a job arrives",
                f.function,
                show_secs(f.polling_interval)
            ),
            format!(
                "add to ScaledObject {} a trigger `type: external-push` with scalerAddress \
                 surge-gateway.<namespace>.svc.cluster.local:9090 and metadata function: {}",
                f.name, f.function
            ),
        ));
    }
    let (target, whose) = match f.external_push_target {
        Some(t) => (
            t,
            format!("sets targetSize {} jobs per replica", show_num(t)),
        ),
        None => (
            GATEWAY_DEFAULT_TARGET,
            format!(
                "has no targetSize, so the gateway's metric uses its scaler.default_target, \
                 {} jobs per replica,",
                show_num(GATEWAY_DEFAULT_TARGET)
            ),
        ),
    };
    if target <= 0.0 || target >= f.target_value {
        return None;
    }
    // KEDA gives the HPA one metric per trigger; the HPA follows the one asking for most.
    Some(Finding::new(
        Severity::Warning,
        Some(f),
        format!(
            "the external-push trigger {whose} while the rabbitmq trigger's value is {}: \
             KEDA gives the HPA both metrics and it takes the larger count, so {} runs up to \
             {}× the replicas value implies (capped by maxReplicaCount {})",
            show_num(f.target_value),
            f.function,
            show_num(f.target_value / target),
            f.max_replicas
        ),
        format!(
            "set metadata targetSize: \"{}\" on the external-push trigger of ScaledObject {} \
             (the same as value)",
            show_num(f.target_value),
            f.name
        ),
    ))
}
