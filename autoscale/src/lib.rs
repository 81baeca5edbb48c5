//! Surge's autoscaling, as a library: what the KEDA manifests say, what KEDA and the HPA decide
//! from them, how a load would play out under a variant, and what is wrong with a configuration.
//!
//! Pure and deterministic: no clocks, no cluster, no network. Time is a `Duration` since an
//! arbitrary start and randomness is a seeded generator, so every result can be replayed.

/// Lints manifests and configuration together (connection budget, grace periods, triggers).
pub mod check;
/// The KEDA + HPA replica decision, one observation at a time.
pub mod decision;
/// Loads the ScaledObjects and target Deployments Surge uses from YAML files.
pub mod manifest;
/// Replays a load trace against ScaledObject variants with the same decision code.
pub mod simulate;
