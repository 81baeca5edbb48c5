//! End-to-end tests against the machine's real RabbitMQ and Postgres. Each test has its own
//! database and broker prefix (see the harness).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod api_keys;
mod bad_input;
mod broker_trust;
mod client_limits;
mod console;
mod console_browser;
mod dead_jobs;
mod delivery;
mod events;
mod exactly_once;
mod faults;
mod group_commit;
mod identity;
mod instances;
mod interop;
mod jobs;
mod key_lifetimes;
mod local_scaler;
mod logs;
mod metrics;
mod openapi;
mod personas;
mod provider_claims;
mod refresh;
mod replica;
mod retention;
mod scaler;
mod schema;
mod settings;
mod shared_limits;
mod trace;
mod trace_tree;
mod trusted_producer;
mod ws;
mod ws_limits;
