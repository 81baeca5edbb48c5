//! KEDA's external scaler, served by the gateway over gRPC (`externalscaler.ExternalScaler`),
//! so an idle function wakes the moment a job is published for it instead of at the next poll.
//!
//! Activity per function = queued + in-flight jobs (the queue's ready and unacknowledged
//! messages, read from RabbitMQ's management API, as KEDA's `protocol: http` does), or a job
//! published by this replica within the last `scaler.publish_hold_ms` (the management API's
//! figures lag by its statistics interval, so a fresh publish counts by itself).

mod activity;
mod service;

/// KEDA's contract, generated in `surge-autoscale` (server here, client for KEDA's stand-ins).
pub use surge_autoscale::externalscaler as proto;

pub use activity::{Activity, FunctionActivity};
pub use service::ScalerService;
pub use surge_autoscale::depth::ManagementApi;
