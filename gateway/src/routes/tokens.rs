//! The caller's own API keys: mint one through a login (`GET`/`POST /token`), list them
//! (never their secrets), rotate or re-time one (`PUT /token`), revoke one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, api_key};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::auth::{self, KeySummary};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list))
        .route(
            "/token",
            get(super::login::start_token)
                .post(super::login::start_token)
                .put(update),
        )
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

/// `PUT /token`: what to change about one of the caller's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    pub id: Uuid,
    /// Valid for this many seconds from now; 0 never expires.
    pub seconds: Option<i64>,
    /// Replace the secret; the old one stops working.
    #[serde(default)]
    pub rotate: bool,
}

/// The key after `PUT /token`; `key` only when it was rotated (shown this once).
#[derive(Debug, Serialize, Deserialize)]
pub struct UpdatedKey {
    #[serde(flatten)]
    pub summary: KeySummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `PUT /token`: rotates one of the caller's keys and/or changes when it expires.
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<KeyUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<UpdatedKey>, ApiError> {
    let Json(update) = body.map_err(|e| ApiError::InvalidJson(e.body_text()))?;
    if update.seconds.is_none() && !update.rotate {
        return Err(ApiError::BadRequest(
            "say what to change: \"rotate\": true and/or \"seconds\": <lifetime from now, 0 = never expires>".into(),
        ));
    }
    if update.seconds.is_some_and(|s| s < 0) {
        return Err(ApiError::BadRequest(
            "seconds must be 0 (never expires) or a positive number of seconds".into(),
        ));
    }
    let minted = if update.rotate {
        Some(
            api_key::mint()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness for a key: {e}")))?,
        )
    } else {
        None
    };
    let summary = auth::update_key(
        &state.pool,
        caller.entity_id,
        update.id,
        minted.as_ref().map(|(_, hash)| hash),
        update.seconds,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no active key {}", update.id)))?;
    let key = minted.map(|(secret, _)| secret.expose_secret().to_owned());
    Ok(Json(UpdatedKey { summary, key }))
}
