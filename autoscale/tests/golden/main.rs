//! Golden cases, each a row of a YAML table next to this file naming the upstream rule it
//! follows: KEDA's and the HPA's decisions (`decisions.yaml`), `surge check`'s findings
//! (`checks.yaml`) and whole simulations (`simulations.yaml`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

/// `checks.yaml` through `surge_autoscale::check`.
mod checks;
/// `decisions.yaml` through `surge_autoscale::decision`.
mod decisions;
/// Reading the tables and turning a row into manifests on disk.
mod fixture;
/// `simulations.yaml` through `surge_autoscale::simulate`.
mod simulations;
