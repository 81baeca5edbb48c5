//! Lints the scaling manifests together with the configuration they run with: the Postgres
//! connection budget at full scale, grace periods against job time limits, cooldowns against
//! job length, trigger queues against the functions in the code, trigger settings that make
//! KEDA scale a busy function to zero or never wake an idle one, and TriggerAuthentications
//! that the triggers name but the manifests do not define.
//!
//! Judges values only; loading them is `manifest`'s job, and nothing here reads files.

/// The trigger's way to the broker: its TriggerAuthentication or host.
mod connection;
/// Connection budget, env numbers, grace periods, cooldown.
mod rules;
#[cfg(test)]
mod tests;
/// Queue, protocol, value, activation, bounds, push trigger.
mod triggers;

use std::fmt::Write as _;

use crate::manifest::FunctionScaling;

/// What is checked: the loaded manifests and the numbers they must fit.
#[derive(Debug, Clone)]
pub struct CheckInput {
    /// The ScaledObjects with their Deployments.
    pub functions: Vec<FunctionScaling>,
    /// The functions the code has (each consumes `fn.<name>`).
    pub known_functions: Vec<String>,
    /// Connections Postgres grants Surge.
    pub postgres_max_connections: u32,
    /// The gateway's HPA `maxReplicas`.
    pub gateway_replicas_max: u32,
    /// The gateway's `SURGE_DATABASE__MAX_CONNECTIONS`.
    pub gateway_pool: u32,
    /// A function's pool when its env lacks `SURGE_DATABASE__MAX_CONNECTIONS`.
    pub default_function_pool: u32,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Breaks scaling or correctness: jobs killed or rerun, connections refused, no scaling.
    Error,
    /// Works, but worse than it could: slower wake-up, more replicas than meant.
    Warning,
}

/// One problem, with what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The function it concerns; `None` for the whole installation.
    pub function: Option<String>,
    /// What is wrong, with the numbers.
    pub message: String,
    /// What to change.
    pub fix: String,
}

impl Finding {
    fn new(
        severity: Severity,
        function: Option<&FunctionScaling>,
        message: String,
        fix: String,
    ) -> Self {
        Self {
            severity,
            function: function.map(|f| f.function.clone()),
            message,
            fix,
        }
    }
}

/// Every finding, errors first, then in the order of the functions.
pub fn check(input: &CheckInput) -> Vec<Finding> {
    let mut findings: Vec<Finding> = rules::connection_budget(input).into_iter().collect();
    for f in &input.functions {
        findings.extend(rules::function(f, &input.known_functions));
    }
    // Stable: within a severity, the order above holds.
    findings.sort_by_key(|f| f.severity);
    findings
}

/// The findings as text, two lines each, and a count.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let severity = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let scope = f.function.as_deref().unwrap_or("all");
        let _ = writeln!(out, "{severity}[{scope}]: {}\n  fix: {}", f.message, f.fix);
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let _ = writeln!(
        out,
        "{errors} error{}, {warnings} warning{}",
        plural(errors),
        plural(warnings)
    );
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
