//! Surge's HTTP edge. It authenticates callers, records each call as a job, publishes it as a
//! CloudEvent, and answers the waiting caller when the function's completion comes back
//! through this replica's reply queue.

/// Who is calling: the `Caller` extractor.
pub mod auth;
/// The broker link: publishing jobs, the reply queue, waiting callers.
pub mod bus;
/// The `surge` command line.
pub mod cli;
/// `surge scaler`, `surge simulate`, `surge check`.
pub mod commands;
/// Gateway settings.
pub mod config;
/// `ApiError`: every outcome a client can see, rendered as problem+json.
pub mod error;
/// Tenants, logins and bearer tokens.
pub mod identity;
/// The job service: accept, publish, wait and answer; replay a dead job. No HTTP types.
pub mod jobs;
/// Bounded growth: job partitions made ahead and dropped past retention, spent rows pruned.
pub mod maintenance;
/// Prometheus metrics and the request-counting middleware.
pub mod metrics;
/// The OpenAPI document: security, shared answers, `/openapi.json`.
pub mod openapi;
/// Where the reads that tolerate lag go: the replica, else the primary.
pub mod reads;
/// HTTP routes, one module per resource.
pub mod routes;
/// KEDA's external push scaler over gRPC.
pub mod scaler;
/// Serving HTTP with header-read timeouts and a drain.
pub mod serve;
/// Every replica's copy of the server settings.
pub mod settings_cache;
/// Building and running the application.
pub mod startup;
/// The state handlers share.
pub mod state;
/// SQL, one module per table, every query scoped to its owner.
pub mod store;
/// The JSON documents of jobs.
pub mod views;
/// `GET /ws`: completions pushed over websockets.
pub mod ws;
