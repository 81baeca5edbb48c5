//! Surge's autoscaling, as a library: what the KEDA manifests say, what KEDA and the HPA decide
//! from them, how a load would play out under a variant, and what is wrong with a configuration.
//!
//! The decision, simulation and check modules are pure and deterministic: no clocks, no
//! cluster, no network. Time is a `Duration` since an arbitrary start and randomness is a
//! seeded generator, so every result can be replayed. The I/O lives apart: queue depths from
//! RabbitMQ's management API (`depth`), KEDA's gRPC contract (`externalscaler`), and the local
//! scaler that runs function processes with the same decisions (`local`).

/// Lints manifests and configuration together (connection budget, grace periods, triggers).
pub mod check;
/// The KEDA + HPA replica decision, one observation at a time.
pub mod decision;
/// Queued and in-flight counts from RabbitMQ's management API.
pub mod depth;
/// KEDA's external scaler gRPC contract (server and client), from `proto/externalscaler.proto`.
pub mod externalscaler {
    tonic::include_proto!("externalscaler");
}
/// The local scaler: KEDA's and the HPA's decisions applied to function processes.
pub mod local;
/// Loads the ScaledObjects and target Deployments Surge uses from YAML files.
pub mod manifest;
/// Replays a load trace against ScaledObject variants with the same decision code.
pub mod simulate;
