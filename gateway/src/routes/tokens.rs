//! The caller's own API keys: list them (never their secrets) and revoke one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::auth::{self, KeySummary};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list))
        .route("/token/{id}", delete(revoke))
}

/// `GET /tokens`: the caller's keys, newest first.
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<KeySummary>>, ApiError> {
    Ok(Json(auth::list(&state.pool, caller.entity_id).await?))
}

/// `DELETE /token/{id}`: revokes one of the caller's keys; every replica refuses it within
/// the key cache's lifetime (1 s).
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound(format!("no active key {id}"));
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    if auth::revoke(&state.pool, caller.entity_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}
