//! Checks of the workload around the triggers: the Postgres connection budget, the
//! Deployment's numeric settings, grace periods against job time limits, and the cooldown
//! against job length. Each says what it found, with the numbers, and a fix for that function.

use std::time::Duration;

use super::{CheckInput, Finding, Severity, connection, triggers};
use crate::decision::show_secs;
use crate::manifest::FunctionScaling;

pub(super) const POOL: &str = "SURGE_DATABASE__MAX_CONNECTIONS";
pub(super) const TIMEOUT: &str = "SURGE_FUNCTION__TIMEOUT_MS";
pub(super) const GRACE: &str = "SURGE_FUNCTION__GRACE_PERIOD_MS";
pub(super) const CONCURRENCY: &str = "SURGE_FUNCTION__CONCURRENCY";

/// Σ(maxReplicaCount × pool) + gateway maxReplicas × pool against Postgres' limit.
pub(super) fn connection_budget(input: &CheckInput) -> Option<Finding> {
    let mut parts = Vec::new();
    let mut largest: Option<(&str, u64)> = None;
    let mut total = 0u64;
    for f in &input.functions {
        let pool = env_u64(f, POOL).unwrap_or(u64::from(input.default_function_pool));
        let share = u64::from(f.max_replicas) * pool;
        parts.push(format!(
            "{} {} × {pool} = {share}",
            f.function, f.max_replicas
        ));
        if largest.is_none_or(|(_, s)| share > s) {
            largest = Some((&f.function, share));
        }
        total += share;
    }
    let gateway = u64::from(input.gateway_replicas_max) * u64::from(input.gateway_pool);
    parts.push(format!(
        "gateway {} × {} = {gateway}",
        input.gateway_replicas_max, input.gateway_pool
    ));
    total += gateway;
    let limit = u64::from(input.postgres_max_connections);
    if total <= limit {
        return None;
    }
    let biggest = largest.map_or(String::new(), |(name, share)| {
        format!(" ({name}'s {share} is the largest function share)")
    });
    Some(Finding::new(
        Severity::Error,
        None,
        format!(
            "at full scale Surge opens {total} Postgres connections, {} more than \
             max_connections {limit}: {}",
            total - limit,
            parts.join(" + ")
        ),
        format!(
            "lower maxReplicaCount or {POOL}{biggest}, or raise Postgres max_connections to \
             at least {total}, or put a pooler (PgBouncer) in front"
        ),
    ))
}

/// Every per-function check.
pub(super) fn function(f: &FunctionScaling, known: &[String]) -> Vec<Finding> {
    let mut out = env_numbers(f);
    out.extend(termination_grace(f));
    out.extend(cooldown(f));
    out.extend(triggers::queue(f, known));
    out.extend(triggers::protocol(f));
    out.extend(connection::authentication(f));
    out.extend(triggers::value(f));
    out.extend(triggers::activation(f));
    out.extend(triggers::replica_bounds(f));
    out.extend(triggers::push(f));
    out
}

/// A numeric env value of the Deployment; `None` when absent or not a number.
pub(super) fn env_u64(f: &FunctionScaling, key: &str) -> Option<u64> {
    f.env.get(key).and_then(|v| v.trim().parse().ok())
}

fn env_numbers(f: &FunctionScaling) -> Vec<Finding> {
    [POOL, TIMEOUT, GRACE, CONCURRENCY]
        .into_iter()
        .filter_map(|key| {
            let value = f.env.get(key)?;
            value.trim().parse::<u64>().is_err().then(|| {
                Finding::new(
                    Severity::Error,
                    Some(f),
                    format!("{key} is {value:?}, not a whole number: the process refuses to start"),
                    format!("set {key} on Deployment {} to a whole number", f.deployment),
                )
            })
        })
        .collect()
}

fn termination_grace(f: &FunctionScaling) -> Vec<Finding> {
    let timeout = f.timeout_ms();
    let grace = f.grace_ms();
    let k8s = show_secs(f.termination_grace);
    let killed = "a job still running when the pod is stopped is killed mid-run and runs again";
    let cut = "Kubernetes kills the pod before the runtime's drain ends, and its jobs run again";
    let mut out = Vec::new();
    for (key, ms, harm) in [(TIMEOUT, timeout, killed), (GRACE, grace, cut)] {
        if f.termination_grace < Duration::from_millis(ms) {
            out.push(Finding::new(
                Severity::Error,
                Some(f),
                format!(
                    "terminationGracePeriodSeconds {k8s} is below {key} {ms} ({}): {harm}",
                    show_secs(Duration::from_millis(ms))
                ),
                format!(
                    "set terminationGracePeriodSeconds on Deployment {} to at least {}",
                    f.deployment,
                    ms.div_ceil(1000) + 5
                ),
            ));
        }
    }
    if grace < timeout {
        out.push(Finding::new(
            Severity::Warning,
            Some(f),
            format!(
                "{GRACE} {grace} is below {TIMEOUT} {timeout}: a job near its time limit is \
                 abandoned at SIGTERM and runs again on another replica"
            ),
            format!(
                "raise {GRACE} to at least {timeout} (and terminationGracePeriodSeconds to at \
                 least {}), or accept reruns of the longest jobs",
                timeout.div_ceil(1000) + 5
            ),
        ));
    }
    out
}

fn cooldown(f: &FunctionScaling) -> Option<Finding> {
    let (typical, source) = match f.typical_job {
        Some(t) => (t, "annotation surge.dev/typical-job-seconds".to_owned()),
        None => {
            let timeout = f.timeout_ms();
            let source = format!("{TIMEOUT} {timeout} / 10");
            (Duration::from_millis(timeout / 10), source)
        }
    };
    if f.cooldown_period >= typical {
        return None;
    }
    Some(Finding::new(
        Severity::Warning,
        Some(f),
        format!(
            "cooldownPeriod {} is shorter than a typical {} job ({}, from {source}): between \
             jobs the function drops to zero and the next job waits for a cold start",
            show_secs(f.cooldown_period),
            f.function,
            show_secs(typical)
        ),
        format!(
            "raise cooldownPeriod on ScaledObject {} to at least {}, or set the annotation \
             surge.dev/typical-job-seconds if its jobs are shorter",
            f.name,
            typical.as_secs_f64().ceil()
        ),
    ))
}
