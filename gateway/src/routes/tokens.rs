//! The caller's own API keys: mint one through a login (`GET`/`POST /token`), list them
//! (never their secrets), rotate or re-time one (`PUT /token`), revoke one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Caller, api_key, key_policy};
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;
use crate::store::api_keys::{self, KeySummary};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(
            super::login::start_token,
            super::login::start_token_post,
            update,
            revoke_presented
        ))
        .routes(routes!(revoke))
}

/// List the caller's keys
///
/// API keys and login tokens, newest first (the latest 1,000); never their secrets.
#[utoipa::path(get, path = "/tokens", tag = "identity", operation_id = "list_tokens",
    responses((status = 200, description = "The caller's keys", body = Vec<KeySummary>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<KeySummary>>, ApiError> {
    Ok(Json(api_keys::list(&state.pool, caller.entity_id).await?))
}

/// Which credential `DELETE /token` revokes.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RevokeQuery {
    /// One of the caller's keys or login tokens; without it, the credential presented.
    #[param(format = Uuid)]
    id: Option<String>,
}

/// Revoke the presented credential (log out)
///
/// Revokes the API key or login token the request is made with (or, with `?id=`, another of
/// the caller's); every replica refuses it within a second and its open websockets close
/// (4003). A provider's own token or the development key cannot be revoked here.
#[utoipa::path(delete, path = "/token", tag = "identity", operation_id = "revoke_presented_token",
    params(RevokeQuery),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The presented credential is not a Surge token (a provider's JWT, the development key)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No active key of the caller's with that id", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke_presented(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<RevokeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let axum::extract::Query(query) = query?;
    let id = match (query.id, caller.key_id) {
        (Some(id), _) => id,
        (None, Some(own)) => own.to_string(),
        (None, None) => {
            return Err(ApiError::BadRequest(
                "the presented credential is not a Surge token (a provider's token expires on \
                 its own; the development key is configuration): name a key with ?id="
                    .into(),
            ));
        }
    };
    revoke_one(&state, &caller, &id).await
}

/// Revoke a key
///
/// Revokes one of the caller's keys or login tokens; every replica refuses it within a
/// second and its open websockets close (4003).
#[utoipa::path(delete, path = "/token/{id}", tag = "identity", operation_id = "revoke_token",
    params(("id" = String, Path, description = "The key's id", format = Uuid)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No active key of the caller's with that id", body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    revoke_one(&state, &caller, &id).await
}

async fn revoke_one(state: &AppState, caller: &Caller, id: &str) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound(format!("no active key {id}"));
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    if api_keys::revoke(&state.pool, caller.entity_id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

/// `PUT /token`: what to change about one of the caller's keys.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    pub id: Uuid,
    /// Valid for this many seconds from now, at most as long as it is now (a key's life only
    /// shrinks) and at most `identity.max_key_seconds`.
    #[schema(minimum = 1)]
    pub seconds: Option<i64>,
    /// Replace the secret; the old one stops working.
    #[serde(default)]
    pub rotate: bool,
}

/// The key after `PUT /token`; `key` only when it was rotated (shown this once).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdatedKey {
    #[serde(flatten)]
    pub summary: KeySummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Rotate or re-time a key
///
/// Rotates one of the caller's keys (the new secret is shown this once and the old one stops
/// working) and/or shortens its life. A key's life is never lengthened, and a credential
/// rotates only keys that expire no later than itself: a short-lived login token cannot turn
/// into a lasting secret.
#[utoipa::path(put, path = "/token", tag = "identity", operation_id = "update_token",
    request_body(content = KeyUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "The key as it is now; `key` when rotated", body = UpdatedKey),
        (status = 400, description = "Not a key update, or nothing to change", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Rotating a key that outlives the presented credential", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No active key of the caller's with that id", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the gateway accepts", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A lifetime longer than the key's present one or past `identity.max_key_seconds` (`invalid-lifetime`)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<KeyUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<UpdatedKey>, ApiError> {
    let Json(update) =
        body.map_err(|e| super::request::json_error(&e, state.http.body_limit_bytes))?;
    if update.seconds.is_none() && !update.rotate {
        return Err(ApiError::BadRequest(
            "say what to change: \"rotate\": true and/or \"seconds\": <lifetime from now, 0 = never expires>".into(),
        ));
    }
    let mut tx = state.pool.begin().await?;
    let (granted, seconds) = api_keys::lock_key_life(&mut tx, caller.entity_id, update.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no active key {}", update.id)))?;
    let now = chrono::Utc::now();
    let new_seconds = update
        .seconds
        .map(|requested| {
            key_policy::shortened(
                granted,
                seconds,
                requested,
                state.tenants.settings.max_key_seconds,
                now,
            )
        })
        .transpose()?;
    if update.rotate
        && !key_policy::may_rotate(
            caller.expires_at,
            key_policy::expiry(granted, new_seconds.unwrap_or(seconds)),
        )
    {
        return Err(ApiError::Forbidden(
            "this credential expires before that key does, so it may not rotate it: shorten \
             the key's life to end no later than this credential's, or rotate it with a \
             longer-lived credential"
                .into(),
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
    let summary = api_keys::update_key(
        &mut tx,
        update.id,
        minted.as_ref().map(|(_, hash)| hash),
        new_seconds,
    )
    .await?;
    tx.commit().await?;
    let key = minted.map(|(secret, _)| secret.expose_secret().to_owned());
    Ok(Json(UpdatedKey { summary, key }))
}
