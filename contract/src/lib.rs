//! What every Surge process agrees on: the wire format of events, the broker topology, the job
//! lifecycle, the database schema and the process conventions (settings, telemetry, shutdown).
//!
//! The gateway and the function runtime both depend on this crate and on nothing of each other,
//! so a contract lives in exactly one place.

/// CloudEvents ⇄ AMQP 0-9-1 messages (the RabbitMQ protocol binding).
pub mod binding;
/// Connecting to RabbitMQ with timeouts, and the backoff used to reconnect.
pub mod broker;
/// A job's completion event: built by the runtime, read by gateways.
pub mod completion;
/// Process configuration shared by every binary: database, broker, job limits; and how it is
/// loaded (defaults, a TOML file, `SURGE_*` variables).
pub mod config;
/// Group commit: concurrent items written by one statement, each answered on its own.
pub mod group;
/// Job ids, states, event types and the extensions Surge puts on events.
pub mod job;
/// The supervised broker connection every process uses.
pub mod link;
/// Prometheus metrics: the registry every process serves at `/metrics`, and shared families.
pub mod metrics;
/// Problem details (RFC 9457) and their stable types.
pub mod problem;
/// A job's request event: built by gateways (and trusted producers), read by the runtime.
pub mod request;
/// Database migrations and the schema check every process runs at start.
pub mod schema;
/// Server settings: the `/settings` API and the `settings` function's wire format.
pub mod server_settings;
/// SIGTERM / Ctrl-C into a cancellation token.
pub mod shutdown;
/// Tracing, OpenTelemetry and W3C trace-context propagation through events.
pub mod telemetry;
/// Exchange and queue names, and their idempotent declaration.
pub mod topology;
