//! The harness every Surge function links: consume → handle → record → complete → ack.
//!
//! A function is a typed async handler ([`Function`]) plus a `main` that calls [`run`]. The
//! runtime owns everything else: settings, telemetry, the schema check, the broker connection
//! and its reconnection, checkout with manual acks (prefetch = concurrency), the job records
//! that make each job's effect happen once, completions published with confirms before the
//! ack, retries, dead jobs, and the drain on SIGTERM.

/// Completion events: built from a job's record, published with confirms.
mod completion;
/// The link handlers: consuming the queue (AMQP mode) or only publishing (HTTP mode).
mod consumer;
/// Claims and pure results written in groups.
mod groups;
/// What a function implements: the handler trait, its context and its errors.
mod handler;
/// The function's Prometheus metrics.
mod metrics;
/// Starting a function process: settings, telemetry, schema check, signals.
mod process;
/// The HTTP port: health, readiness and, in HTTP mode, the CloudEvents receiver.
mod server;
/// Runtime settings.
pub mod settings;
/// SQL of the job lifecycle on the function side.
mod store;
/// One delivery, from decode to ack.
mod worker;

pub use handler::{Function, HandlerError, JobContext};
pub use process::{run, run_with};
pub use settings::RuntimeSettings;
