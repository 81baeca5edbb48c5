//! `/settings`: server settings. Every authenticated caller reads them (from this replica's
//! cache); admins write them, and each write is a job of the `settings` function, answered
//! synchronously: `POST` creates, `PUT` replaces and `DELETE` removes, the last two only with
//! `If-Match` (the `ETag` the writer read, or `*`), so two admins editing the same setting
//! cannot silently overwrite each other — the later one gets `412`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_contract::job::JobState;
use surge_contract::problem::Problem;
use surge_contract::server_settings::{self, Change, Changed};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::answer;
use super::request::{idempotency_key, json_error};
use crate::auth::{Caller, Operator};
use crate::error::ApiError;
use crate::jobs::{self, Answer, Repeat, Submission, Wait};
use crate::openapi::Problem as ProblemDoc;
use crate::state::AppState;
use crate::store::settings::SettingRow;
use crate::views::JobView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, replace, remove))
}

/// One setting. Its `ETag` is `"<version>"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SettingView {
    pub name: String,
    pub value: Value,
    pub version: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Every setting, by name.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettingList {
    pub settings: Vec<SettingView>,
}

/// `POST /settings`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "greeting", "value": {"text": "hello"}}))]
pub struct NewSetting {
    /// 1-64 of `a-z 0-9 _ . -`, starting with a letter.
    #[schema(pattern = r"^[a-z][a-z0-9_.-]{0,63}$")]
    pub name: String,
    /// Any JSON up to 16 KiB; `rate_limit` must be `{"per_second": n, "burst": m}`.
    pub value: Value,
}

/// `PUT /settings/{name}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingValue {
    /// Any JSON up to 16 KiB; `rate_limit` must be `{"per_second": n, "burst": m}`.
    pub value: Value,
}

impl From<SettingRow> for SettingView {
    fn from(row: SettingRow) -> Self {
        Self {
            name: row.name,
            value: row.value,
            version: row.version,
            updated_at: row.updated_at,
        }
    }
}

impl From<Changed> for SettingView {
    fn from(changed: Changed) -> Self {
        Self {
            name: changed.name,
            value: changed.value,
            version: changed.version,
            updated_at: changed.updated_at,
        }
    }
}

/// List settings
///
/// Every server setting, by name, as this replica has them (changes reach every replica as
/// they are made).
#[utoipa::path(get, path = "/settings", tag = "settings", operation_id = "list_settings",
    responses((status = 200, description = "Every setting", body = SettingList)))]
async fn list(State(state): State<AppState>, _caller: Caller) -> Json<SettingList> {
    let settings = state
        .settings
        .all()
        .iter()
        .cloned()
        .map(SettingView::from)
        .collect();
    Json(SettingList { settings })
}

/// Read a setting
///
/// Its `ETag` is the version to send as `If-Match` when changing it.
#[utoipa::path(get, path = "/settings/{name}", tag = "settings", operation_id = "get_setting",
    params(("name" = String, Path, description = "The setting's name", example = "greeting")),
    responses(
        (status = 200, description = "The setting", body = SettingView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, description = "No such setting", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let row = state
        .settings
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no setting {name}")))?;
    Ok(with_etag(StatusCode::OK, row.into()))
}

/// Create a setting
///
/// Platform operators only (admins of a tenant in `identity.operator_tenants`). Performed by the `settings` function and answered when done; past the wait,
/// `202` with the job to follow.
#[utoipa::path(post, path = "/settings", tag = "settings", operation_id = "create_setting",
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; a repeat returns the first outcome")),
    request_body(content = NewSetting, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = SettingView, headers(
            ("ETag" = String, description = "`\"1\"`"), ("Location" = String, description = "`/settings/{name}`"))),
        (status = 202, description = "Not done within the wait: the job", body = JobView, headers(("Location" = String, description = "`/jobs/{id}`"))),
        (status = 400, description = "Not JSON, or a malformed header", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a platform operator (an admin of a tenant in `identity.operator_tenants`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The setting exists (change it with PUT), or there are as many settings as allowed", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the gateway accepts", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or value, or an Idempotency-Key used for another request", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
async fn create(
    State(state): State<AppState>,
    Operator(caller): Operator,
    headers: HeaderMap,
    body: Result<Json<NewSetting>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| json_error(&e, state.http.body_limit_bytes))?;
    check(&body.name, Some(&body.value))?;
    let change = Change::Create {
        name: body.name,
        value: body.value,
    };
    Ok(match perform(&state, &caller, change, &headers).await? {
        Performed::Done(changed) => {
            let location = format!("/settings/{}", changed.name);
            let mut response = with_etag(StatusCode::CREATED, changed.into());
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Performed::Pending(response) => response,
    })
}

/// Change a setting
///
/// Platform operators only, with `If-Match`: the `ETag` read (the write happens only if nobody changed
/// the setting since: else `412`), or `*` for any version.
#[utoipa::path(put, path = "/settings/{name}", tag = "settings", operation_id = "update_setting",
    params(
        ("name" = String, Path, description = "The setting's name", example = "greeting"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` as read, or `*`; required", example = "*"),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; a repeat returns the first outcome"),
    ),
    request_body(content = SettingValue, content_type = "application/json"),
    responses(
        (status = 200, description = "Changed", body = SettingView, headers(("ETag" = String, description = "The new version"))),
        (status = 202, description = "Not done within the wait: the job", body = JobView, headers(("Location" = String, description = "`/jobs/{id}`"))),
        (status = 400, description = "Not JSON, or a malformed header", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a platform operator (an admin of a tenant in `identity.operator_tenants`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such setting", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read: `current_version` says to what", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the gateway accepts", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or value, or an Idempotency-Key used for another request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 428, description = "No If-Match", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
async fn replace(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SettingValue>, JsonRejection>,
) -> Result<Response, ApiError> {
    let if_version = if_match(&headers)?;
    let Json(body) = body.map_err(|e| json_error(&e, state.http.body_limit_bytes))?;
    check(&name, Some(&body.value))?;
    let change = Change::Update {
        name,
        value: body.value,
        if_version,
    };
    Ok(match perform(&state, &caller, change, &headers).await? {
        Performed::Done(changed) => with_etag(StatusCode::OK, changed.into()),
        Performed::Pending(response) => response,
    })
}

/// Delete a setting
///
/// Platform operators only, with `If-Match` as for `PUT`.
#[utoipa::path(delete, path = "/settings/{name}", tag = "settings", operation_id = "delete_setting",
    params(
        ("name" = String, Path, description = "The setting's name", example = "greeting"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` as read, or `*`; required", example = "*"),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; a repeat returns the first outcome"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 202, description = "Not done within the wait: the job", body = JobView, headers(("Location" = String, description = "`/jobs/{id}`"))),
        (status = 400, description = "A malformed header", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not a platform operator (an admin of a tenant in `identity.operator_tenants`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such setting", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "Changed since it was read: `current_version` says to what", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A bad name, or an Idempotency-Key used for another request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 428, description = "No If-Match", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
async fn remove(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_version = if_match(&headers)?;
    check(&name, None)?;
    let change = Change::Delete { name, if_version };
    Ok(match perform(&state, &caller, change, &headers).await? {
        Performed::Done(_) => StatusCode::NO_CONTENT.into_response(),
        Performed::Pending(response) => response,
    })
}

/// What came of a write.
enum Performed {
    Done(Changed),
    /// Not finished within the wait: `202` pointing at the job.
    Pending(Response),
}

/// Runs a write as a `settings` job and waits for it; on success this replica's cache is
/// reloaded before answering, so the writer reads its own write here at once.
async fn perform(
    state: &AppState,
    caller: &Caller,
    change: Change,
    headers: &HeaderMap,
) -> Result<Performed, ApiError> {
    let function = server_settings::function();
    let input = serde_json::to_value(&change).map_err(|e| ApiError::Internal(e.into()))?;
    let submission = Submission {
        function: &function,
        input,
        idempotency_key: idempotency_key(headers)?,
        wait: Wait::Default,
        repeat: Repeat::SameRequest,
    };
    match jobs::submit(state, caller, submission).await? {
        Answer::Finished { job, .. } => outcome(state, job).await,
        Answer::Pending(job) => Ok(Performed::Pending(answer::accepted(job, false))),
    }
}

async fn outcome(state: &AppState, view: JobView) -> Result<Performed, ApiError> {
    match view.state {
        JobState::Succeeded => {
            let changed: Changed = view
                .result
                .and_then(|r| serde_json::from_value(r).ok())
                .ok_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!(
                        "settings job {} succeeded without a change",
                        view.id
                    ))
                })?;
            if let Err(e) = state.reload_settings().await {
                // The change is made; other reloads (event, timer) will catch up.
                tracing::warn!(error = %e, "settings could not be reloaded after a write");
            }
            Ok(Performed::Done(changed))
        }
        JobState::Failed => {
            let problem: Problem = view
                .error
                .and_then(|e| serde_json::from_value(e).ok())
                .unwrap_or_else(|| {
                    Problem::new(surge_contract::problem::types::JOB_FAILED, "Job failed")
                });
            Err(ApiError::Function(Box::new(problem)))
        }
        _ => Err(ApiError::Unavailable(format!(
            "the settings function could not perform the change (job {} is {}); nothing changed, retry later",
            view.id,
            view.state.as_str()
        ))),
    }
}

/// Name and value checks done here too, so a bad request costs no job.
fn check(name: &str, value: Option<&Value>) -> Result<(), ApiError> {
    server_settings::validate_name(name).map_err(ApiError::InvalidSetting)?;
    if let Some(value) = value {
        server_settings::validate_value(name, value).map_err(ApiError::InvalidSetting)?;
    }
    Ok(())
}

/// `If-Match`: `*` (any version) or one strong `"<version>"`; required on writes that
/// replace or remove.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(ApiError::PreconditionRequired(
            "send If-Match with the ETag you read (GET /settings/{name}), or * to overwrite any version".into(),
        ));
    };
    let bad = || {
        ApiError::BadRequest(
            "If-Match must be * or one ETag as GET /settings/{name} gave it, like \"3\"".into(),
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    if text == "*" {
        return Ok(None);
    }
    let version = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|v| *v >= 1)
        .ok_or_else(bad)?;
    Ok(Some(version))
}

fn with_etag(status: StatusCode, view: SettingView) -> Response {
    let etag = format!("\"{}\"", view.version);
    let mut response = (status, Json(view)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_match_takes_a_star_or_one_strong_version() {
        assert_eq!(if_match(&headers(Some("*"))).unwrap(), None);
        assert_eq!(if_match(&headers(Some("\"7\""))).unwrap(), Some(7));
        assert!(matches!(
            if_match(&headers(None)),
            Err(ApiError::PreconditionRequired(_))
        ));
        for bad in ["7", "W/\"7\"", "\"0\"", "\"x\"", "\"1\", \"2\""] {
            assert!(
                matches!(if_match(&headers(Some(bad))), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
