//! How the rabbitmq trigger reaches RabbitMQ: an `authenticationRef` naming an object the
//! manifests define, or a host in its own metadata. Without either KEDA cannot build the
//! scaler (rabbitmq_scaler.go `parseRabbitMQMetadata`: `host` comes from the metadata, the
//! authentication's parameters or the container's environment, and is required), the
//! ScaledObject is not ready, and the function never scales.

use super::{Finding, Severity};
use crate::manifest::{AuthenticationRef, FunctionScaling};

/// The kind KEDA looks up in the ScaledObject's namespace (a ClusterTriggerAuthentication is
/// cluster-wide and may be installed apart from the manifests).
const NAMESPACED_KIND: &str = "TriggerAuthentication";

/// A misspelling is a name at most this many edits from a defined one.
const MAX_TYPO_EDITS: usize = 3;

/// The trigger's authentication resolves, or the trigger names its host itself.
pub(super) fn authentication(f: &FunctionScaling) -> Option<Finding> {
    match &f.authentication {
        Some(reference) if reference.resolves() => None,
        Some(reference) => Some(unresolved(f, reference)),
        None if f.host.is_some() => None,
        None => Some(Finding::new(
            Severity::Error,
            Some(f),
            format!(
                "the rabbitmq trigger has no authenticationRef and no host or hostFromEnv: KEDA \
                 has no address for RabbitMQ, the ScaledObject is not ready and {} never scales",
                f.function
            ),
            format!(
                "add `authenticationRef: {{name: <TriggerAuthentication>}}` to the rabbitmq \
                 trigger of ScaledObject {} (keda/base has surge-rabbitmq, parameter host)",
                f.name
            ),
        )),
    }
}

fn unresolved(f: &FunctionScaling, reference: &AuthenticationRef) -> Finding {
    let kind = &reference.kind;
    let defined = if reference.defined.is_empty() {
        format!("they define no {kind}")
    } else {
        format!("they define {}", reference.defined.join(", "))
    };
    // A namespaced one belongs with the ScaledObject; a cluster-wide one may live elsewhere.
    let (severity, consequence) = if *kind == NAMESPACED_KIND {
        (
            Severity::Error,
            format!(
                "KEDA cannot read the queue, the ScaledObject is not ready and {} never scales",
                f.function
            ),
        )
    } else {
        (
            Severity::Warning,
            "unless it is installed in the cluster apart from these manifests, KEDA cannot \
             read the queue"
                .to_owned(),
        )
    };
    let suggestion = closest(&reference.name, &reference.defined)
        .map(|name| format!(" (did you mean {name}?)"))
        .unwrap_or_default();
    Finding::new(
        severity,
        Some(f),
        format!(
            "authenticationRef names {kind} {:?}, which the manifests do not define ({defined}): \
             {consequence}",
            reference.name
        ),
        format!(
            "correct authenticationRef.name on ScaledObject {}{suggestion}, or add {kind} {} \
             with parameter host",
            f.name, reference.name
        ),
    )
}

/// The defined name nearest to `name`, when it is near enough to be a misspelling.
fn closest<'a>(name: &str, defined: &'a [String]) -> Option<&'a str> {
    defined
        .iter()
        .map(|d| (edits(name, d), d.as_str()))
        .filter(|&(n, _)| n <= MAX_TYPO_EDITS)
        .min_by_key(|&(n, _)| n)
        .map(|(_, d)| d)
}

/// Levenshtein distance, by characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edits("surge-rabbitmq", "surge-rabbitmq"), 0);
        assert_eq!(edits("surge-rabbitmg", "surge-rabbitmq"), 1);
        assert_eq!(edits("surge-rabbit", "surge-rabbitmq"), 2);
        assert_eq!(edits("", "abc"), 3);
        let defined = ["surge-rabbitmq".to_owned(), "other".to_owned()];
        assert_eq!(closest("surge-rabbimq", &defined), Some("surge-rabbitmq"));
        assert_eq!(closest("nothing-alike", &defined), None);
    }
}
