//! The function's small HTTP port: `/healthz` (the process answers), `/readyz` (broker link up,
//! database answering, not draining) and, in HTTP mode, `POST /` — a CloudEvent in HTTP binary
//! or structured mode, run like a delivery and answered 2xx only once the job is recorded and
//! its completion published.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sqlx::PgPool;
use surge_contract::config::database_answers;
use surge_contract::link::Link;
use surge_contract::problem::{Problem, types};
use surge_contract::request::JobRequest;
use tokio_util::sync::CancellationToken;

use crate::handler::Function;
use crate::metrics::RuntimeMetrics;
use crate::worker::{Settlement, Worker};

pub struct ServerState<F: Function> {
    pub worker: Arc<Worker<F>>,
    pub link: Link,
    pub pool: PgPool,
    pub shutdown: CancellationToken,
    pub registry: Arc<prometheus_client::registry::Registry>,
    pub metrics: Arc<RuntimeMetrics>,
}

/// The router: health always, the CloudEvents receiver when `receive` is set, taking at most
/// `concurrency` events at once (as the AMQP mode's prefetch does; more would only queue on
/// the database pool).
pub fn router<F: Function>(
    state: Arc<ServerState<F>>,
    receive: bool,
    body_limit: usize,
    concurrency: usize,
) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<F>))
        .route("/metrics", get(metrics::<F>));
    if receive {
        router = router.route(
            "/",
            post(receive_event::<F>)
                .layer(tower::limit::ConcurrencyLimitLayer::new(concurrency.max(1))),
        );
    }
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn readyz<F: Function>(State(state): State<Arc<ServerState<F>>>) -> Response {
    match not_ready(&state).await {
        Some(why) => problem(StatusCode::SERVICE_UNAVAILABLE, types::UNAVAILABLE, why),
        None => "ready".into_response(),
    }
}

/// Why the process is not ready, if it is not.
async fn not_ready<F: Function>(state: &ServerState<F>) -> Option<&'static str> {
    if state.shutdown.is_cancelled() {
        return Some("draining");
    }
    if !state.link.is_up() {
        return Some("the broker link is down");
    }
    if !database_answers(&state.pool).await {
        return Some("the database does not answer");
    }
    None
}

/// `GET /metrics`: Prometheus text; `surge_ready` is evaluated as `/readyz` would answer.
async fn metrics<F: Function>(State(state): State<Arc<ServerState<F>>>) -> Response {
    let ready = not_ready(&state).await.is_none();
    state.metrics.process.ready.set(i64::from(ready));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(surge_contract::metrics::CONTENT_TYPE),
        )],
        surge_contract::metrics::render(&state.registry),
    )
        .into_response()
}

async fn receive_event<F: Function>(
    State(state): State<Arc<ServerState<F>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = cloudevents::binding::http::to_event(&headers, body.to_vec())
        .map_err(|e| format!("not a CloudEvent: {e}"))
        .and_then(|event| JobRequest::from_event(&event).map_err(|e| e.to_string()));
    let request = match request {
        Ok(request) => request,
        Err(reason) => {
            tracing::warn!(%reason, "refused an HTTP event that is not a valid job");
            return problem(StatusCode::BAD_REQUEST, types::BAD_REQUEST, &reason);
        }
    };
    let Some(channel) = state.link.channel() else {
        return retry_later("the broker link is down");
    };
    match state.worker.handle(&channel, request).await {
        Settlement::Done => StatusCode::NO_CONTENT.into_response(),
        Settlement::Retry => retry_later("the job is due another attempt"),
        Settlement::Reject(reason) => {
            // Not a job this runtime can take: as dead as a dead-lettered AMQP message.
            state.metrics.dead();
            problem(StatusCode::BAD_REQUEST, types::BAD_REQUEST, &reason)
        }
    }
}

fn retry_later(detail: &str) -> Response {
    let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, types::UNAVAILABLE, detail);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let body = Problem::new(kind, status.canonical_reason().unwrap_or("Error"))
        .with_status(status.as_u16())
        .with_detail(detail);
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}
