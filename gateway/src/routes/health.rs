//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: broker link up and
//! database answering; false while either is unreachable).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use surge_contract::settings::database_answers;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.bus.is_connected() {
        return Err(ApiError::Unavailable("the broker link is down".into()));
    }
    if !database_answers(&state.pool).await {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    Ok(Json(json!({"status": "ready"})))
}
