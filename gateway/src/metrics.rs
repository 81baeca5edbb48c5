//! The gateway's metrics (`/metrics`, on `http.metrics_addr` when set so the public ingress
//! never serves them): requests by route and status, accepted jobs, authentication and rate
//! limit rejections, websocket connections, queue depths (with the push scaler's poller),
//! publish confirms and readiness. Routes are the matched templates (`/jobs/{id}`), never raw
//! paths, so label sets stay bounded.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use surge_autoscale::depth::Depth;
use surge_contract::job::FunctionName;
use surge_contract::metrics::{
    Counter, FunctionLabel, FunctionState, ProcessMetrics, Timings, seconds, timings,
};

use crate::state::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// The method as a label: the standard ones by name, any invented one as `other` (a client
/// may send any token as a method; labels must stay a small set).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepublishLabels {
    function: String,
    /// `confirmed` or `failed`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabel {
    what: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why a caller was turned away before its request ran.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    /// No credential at all.
    Missing,
    /// A credential that is not one (unknown, forged, malformed).
    Invalid,
    /// Revoked or past its lifetime.
    Expired,
    /// Known, but not allowed (an admin endpoint).
    Forbidden,
}

#[derive(Debug)]
pub struct GatewayMetrics {
    pub process: ProcessMetrics,
    requests: Family<RequestLabels, Counter>,
    durations: Timings<RouteLabels>,
    accepted: Family<FunctionLabel, Counter>,
    republished: Family<RepublishLabels, Counter>,
    removed: Family<WhatLabel, Counter>,
    /// How far ahead of now the newest job partition reaches, as the last pass left it.
    partitions_ahead: Gauge<f64, std::sync::atomic::AtomicU64>,
    maintenance_failures: Counter,
    /// Jobs whose publish is unconfirmed, as the reconciler last counted them.
    pub unconfirmed: Gauge,
    rejections: Family<ReasonLabel, Counter>,
    rate_limited: Counter,
    rate_limit_store_failures: Counter,
    pub ws_connections: Gauge,
    queue_messages: Family<FunctionState, Gauge>,
    queue_consumers: Family<FunctionLabel, Gauge>,
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            process: ProcessMetrics::register(registry),
            requests: Family::default(),
            durations: timings(),
            accepted: Family::default(),
            republished: Family::default(),
            removed: Family::default(),
            partitions_ahead: Gauge::default(),
            maintenance_failures: Counter::default(),
            unconfirmed: Gauge::default(),
            rejections: Family::default(),
            rate_limited: Counter::default(),
            rate_limit_store_failures: Counter::default(),
            ws_connections: Gauge::default(),
            queue_messages: Family::default(),
            queue_consumers: Family::default(),
        };
        registry.register(
            "surge_http_requests",
            "HTTP requests answered, by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "surge_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            metrics.durations.clone(),
        );
        registry.register(
            "surge_jobs_accepted",
            "Jobs recorded and published, by function",
            metrics.accepted.clone(),
        );
        registry.register(
            "surge_jobs_republished",
            "Jobs the reconciler published again because no publish of theirs was confirmed, by function and outcome (confirmed, failed)",
            metrics.republished.clone(),
        );
        registry.register(
            "surge_retention_removed",
            "What retention removed: job partitions, job rows (estimated), dead listings, idempotency and event keys, credentials, login flows",
            metrics.removed.clone(),
        );
        registry.register(
            "surge_job_partitions_ahead_seconds",
            "How far ahead of now the newest partition of the job table reaches (inserts fail past it)",
            metrics.partitions_ahead.clone(),
        );
        registry.register(
            "surge_maintenance_failures",
            "Maintenance passes (partitions ahead, retention) that failed",
            metrics.maintenance_failures.clone(),
        );
        registry.register(
            "surge_jobs_unconfirmed",
            "Jobs recorded whose publish the broker has not confirmed, as the reconciler last counted them",
            metrics.unconfirmed.clone(),
        );
        registry.register(
            "surge_auth_rejections",
            "Requests refused before they ran: missing, invalid, expired credentials; forbidden",
            metrics.rejections.clone(),
        );
        registry.register(
            "surge_rate_limited",
            "Requests refused with 429 because an entity was over its rate limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "surge_rate_limit_store_failures",
            "Requests the shared rate-limit store (limits.store_url) gave no decision for in time; \
             let through or refused as limits.store_fail_open says",
            metrics.rate_limit_store_failures.clone(),
        );
        registry.register(
            "surge_ws_connections",
            "Open websocket connections on this replica",
            metrics.ws_connections.clone(),
        );
        registry.register(
            "surge_queue_messages",
            "Messages in a function's queues (ready, unacked, dead), as the broker reports them",
            metrics.queue_messages.clone(),
        );
        registry.register(
            "surge_queue_consumers",
            "Consumers of a function's queue, as the broker reports them",
            metrics.queue_consumers.clone(),
        );
        metrics
    }

    pub fn accepted(&self, function: &FunctionName) {
        self.accepted
            .get_or_create(&FunctionLabel {
                function: function.to_string(),
            })
            .inc();
    }

    /// The reconciler published `function`'s job again; `confirmed` says whether the broker
    /// took it.
    pub fn republished(&self, function: &FunctionName, confirmed: bool) {
        self.republished
            .get_or_create(&RepublishLabels {
                function: function.to_string(),
                outcome: if confirmed { "confirmed" } else { "failed" },
            })
            .inc();
    }

    /// What a maintenance pass did.
    pub fn maintenance(&self, pass: &crate::maintenance::Pass) {
        let rows: i64 = pass.partitions_dropped.iter().map(|(_, rows)| rows).sum();
        for (what, n) in [
            ("job_partitions", pass.partitions_dropped.len() as u64),
            ("job_rows", u64::try_from(rows).unwrap_or_default()),
            ("dead_listings", pass.dead_listings),
            ("idempotency_keys", pass.idempotency_keys),
            ("event_keys", pass.event_keys),
            ("credentials", pass.credentials),
            ("login_flows", pass.login_flows),
        ] {
            self.removed.get_or_create(&WhatLabel { what }).inc_by(n);
        }
        self.partitions_ahead
            .set(pass.ahead.num_milliseconds() as f64 / 1000.0);
    }

    pub fn maintenance_failed(&self) {
        self.maintenance_failures.inc();
    }

    pub fn rejected(&self, why: Rejection) {
        let reason = match why {
            Rejection::Missing => "missing",
            Rejection::Invalid => "invalid",
            Rejection::Expired => "expired",
            Rejection::Forbidden => "forbidden",
        };
        self.rejections.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub fn rate_limit_store_failed(&self) {
        self.rate_limit_store_failures.inc();
    }

    /// A function's queue as the poller last read it.
    pub fn queue(&self, function: &FunctionName, depth: Depth) {
        let function = function.to_string();
        for (state, value) in [("ready", depth.ready), ("unacked", depth.unacked)] {
            self.queue_gauge(&function, state, value);
        }
        self.queue_consumers
            .get_or_create(&FunctionLabel {
                function: function.clone(),
            })
            .set(i64::try_from(depth.consumers).unwrap_or(i64::MAX));
    }

    /// Messages in a function's dead-letter queue.
    pub fn dead_letters(&self, function: &FunctionName, messages: u64) {
        self.queue_gauge(&function.to_string(), "dead", messages);
    }

    fn queue_gauge(&self, function: &str, state: &str, value: u64) {
        self.queue_messages
            .get_or_create(&FunctionState {
                function: function.to_owned(),
                state: state.to_owned(),
            })
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    fn request(&self, route: String, method: &'static str, status: u16, took: Duration) {
        self.durations
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .observe(seconds(took));
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }
}

/// Middleware: counts and times every request by its route template. Paths that match no
/// route count as `unmatched` (their number is unbounded; the label is not).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> Response {
    let ready = !state.shutdown.is_cancelled()
        && state.bus.is_connected()
        && surge_contract::config::database_answers(&state.pool).await;
    state.metrics.process.ready.set(i64::from(ready));
    let connections = state.hub.connections();
    state
        .metrics
        .ws_connections
        .set(i64::try_from(connections).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(surge_contract::metrics::CONTENT_TYPE),
        )],
        surge_contract::metrics::render(&state.registry),
    )
        .into_response()
}
