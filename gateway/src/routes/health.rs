//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: broker link up,
//! database answering, the reconciler's passes succeeding; false while any is not).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use surge_contract::config::database_answers;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// A probe's answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready`.
    pub status: String,
    /// Why the reads that tolerate lag are on the primary although a replica is configured
    /// (`database.replica_url`): the replica is down or too far behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// Liveness
///
/// The process answers; nothing else is checked (a broker outage must not restart pods).
#[utoipa::path(get, path = "/healthz", tag = "health", operation_id = "healthz", security(()),
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        replica: None,
    })
}

/// Readiness
///
/// The broker link is up, the database answers and the reconciler's passes succeed; `503`
/// otherwise (and while draining).
#[utoipa::path(get, path = "/readyz", tag = "health", operation_id = "readyz", security(()),
    responses(
        (status = 200, description = "Ready for traffic", body = Health),
        (status = 503, description = "Not ready: the broker or the database is unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::Unavailable(
            "draining: this replica is shutting down".into(),
        ));
    }
    if !state.bus.is_connected() {
        return Err(ApiError::Unavailable("the broker link is down".into()));
    }
    if !database_answers(&state.pool).await {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    if let Some(why) = state.reconciler.failing() {
        return Err(ApiError::Unavailable(why));
    }
    Ok(Json(Health {
        status: "ready".into(),
        replica: state.reads.replica_down(),
    }))
}
