//! KEDA's external scaler, served by the gateway over gRPC (`externalscaler.ExternalScaler`),
//! so an idle function wakes the moment a job is published for it instead of at the next poll.
//!
//! Activity per function = queued + in-flight jobs (the queue's ready and unacknowledged
//! messages, read from RabbitMQ's management API, as KEDA's `protocol: http` does), or a job
//! published by this replica within the last `scaler.publish_hold_ms` (the management API's
//! figures lag by its statistics interval, so a fresh publish counts by itself).

mod activity;
mod depth;
mod service;

/// Generated from `proto/externalscaler.proto` (KEDA's contract): server and client.
pub mod proto {
    tonic::include_proto!("externalscaler");
}

pub use activity::{Activity, FunctionActivity};
pub use depth::{Depth, ManagementApi};
pub use service::ScalerService;
