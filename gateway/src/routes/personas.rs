//! The caller's personas: per-source profiles of its entity (a profile picture per device,
//! one trading bot's settings per API client). A key minted with `persona=<source>` makes
//! that persona the presenting one: `/me` shows it, and its jobs carry it to the function.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::request::json_error;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;
use crate::store::personas::{self, MAX_PER_ENTITY, Persona, Replaced};

/// The most a persona's `other` may hold, as compact JSON.
pub const MAX_OTHER_BYTES: usize = 16 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read, replace))
}

/// A persona's name: 1–32 lowercase letters, digits, `-` or `_`.
pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    let fits = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if fits {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "persona must be 1-32 lowercase letters, digits, '-' or '_' (pc, mobile, api…)".into(),
        ))
    }
}

/// The answer when an entity has no room for another persona.
pub(crate) fn full(source: &str) -> ApiError {
    ApiError::Conflict(format!(
        "an entity has at most {MAX_PER_ENTITY} personas and this one has as many; \
         reuse one of them (GET /personas) instead of {source:?}"
    ))
}

/// List the caller's personas
///
/// Every persona of the caller's entity, by name (at most 32).
#[utoipa::path(get, path = "/personas", tag = "identity", operation_id = "list_personas",
    responses((status = 200, description = "The caller's personas", body = Vec<Persona>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Persona>>, ApiError> {
    Ok(Json(personas::list(&state.pool, caller.entity_id).await?))
}

/// Read one persona
#[utoipa::path(get, path = "/personas/{source}", tag = "identity", operation_id = "read_persona",
    params(("source" = String, Path, description = "The persona's name", example = "mobile")),
    responses(
        (status = 200, description = "The persona", body = Persona),
        (status = 400, description = "Not a persona name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no persona of that name", body = Problem, content_type = "application/problem+json"),
    ))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(source): Path<String>,
) -> Result<Json<Persona>, ApiError> {
    check_name(&source)?;
    personas::get(&state.pool, caller.entity_id, &source)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("you have no persona named {source:?}")))
}

/// Replace a persona's profile
///
/// Sets the persona's `other` to the body, a JSON object of at most 16 KiB (as compact
/// JSON); creates the persona if the caller has fewer than 32.
#[utoipa::path(put, path = "/personas/{source}", tag = "identity", operation_id = "replace_persona",
    params(("source" = String, Path, description = "The persona's name", example = "mobile")),
    request_body(content = Object, content_type = "application/json", description = "The persona's new `other`: any JSON object"),
    responses(
        (status = 200, description = "Replaced", body = Persona),
        (status = 201, description = "Created", body = Persona),
        (status = 400, description = "Not a persona name, or a body that is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller already has 32 personas", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The object is larger than 16 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A value Surge cannot store (U+0000, a number beyond ±1e308)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(source): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<(StatusCode, Json<Persona>), ApiError> {
    check_name(&source)?;
    let Json(other) = body.map_err(|e| json_error(&e, state.http.body_limit_bytes))?;
    let other = Value::Object(other);
    let size = serde_json::to_vec(&other)
        .map_err(|e| ApiError::Internal(e.into()))?
        .len();
    if size > MAX_OTHER_BYTES {
        return Err(ApiError::PayloadTooLarge(MAX_OTHER_BYTES));
    }
    surge_contract::binding::storable(&other).map_err(ApiError::Unstorable)?;
    match personas::replace(&state.pool, caller.entity_id, &source, &other).await? {
        Replaced::Created(persona) => Ok((StatusCode::CREATED, Json(persona))),
        Replaced::Replaced(persona) => Ok((StatusCode::OK, Json(persona))),
        Replaced::Full => Err(full(&source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persona_names_are_short_lowercase_words() {
        for good in ["pc", "mobile", "bot-7", "a_b", &"x".repeat(32)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "PC", "has space", "ü", "a/b", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
