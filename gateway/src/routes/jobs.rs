//! The jobs API. `POST /jobs/{function}` records the job (one statement), publishes its event
//! (one confirmed publish) and, unless the caller prefers async, waits for the completion on
//! this replica's reply queue; past the wait it answers 202 with `Location`.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use surge_contract::job::{FunctionName, JobId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accept::{Accepted, Submission, accept, wait};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::routes::views::{JobPage, JobView};
use crate::state::AppState;
use crate::store::jobs::{self, JobRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, submit))
}

/// Run a function
///
/// Records a job for the function named in the path with the JSON body as its input, and
/// waits for its completion (`200` with the finished job). Past the wait (`Prefer: wait=<s>`,
/// else the gateway's default), or with `Prefer: respond-async`, answers `202` with the queued
/// job and its `Location`. The same `Idempotency-Key` with the same input returns the first
/// job instead of running it again. (The path's segment is a function name here and a job id
/// on `GET`: OpenAPI wants one name for both.)
#[utoipa::path(
    post,
    path = "/jobs/{id}",
    tag = "jobs",
    operation_id = "submit_job",
    params(
        ("id" = String, Path, description = "The function to run", example = "echo",
            pattern = r"^[a-z][a-z0-9-]{0,62}$"),
        ("Prefer" = Option<String>, Header, description = "`respond-async` (answer 202 at once) and/or `wait=<seconds>`"),
        ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; a repeat returns the first job"),
    ),
    request_body(content = serde_json::Value, description = "The function's input", content_type = "application/json",
        example = json!({"hello": "world"})),
    responses(
        (status = 200, description = "The job finished: `state` is succeeded (with `result`), failed or dead (with `error`)", body = JobView),
        (status = 202, description = "Queued; read it at `Location`", body = JobView,
            headers(("Location" = String, description = "`/jobs/{id}` of the new job"))),
        (status = 400, description = "The body is not JSON, or a header is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No function of that name is served here", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the gateway accepts", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used before for another function or input", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let function = known_function(&state, &function)?;
    let body = body.map_err(|e| body_error(&e, state.http.body_limit_bytes))?;
    let input: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not JSON: {e}")))?;
    surge_contract::binding::storable(&input).map_err(ApiError::InvalidJson)?;
    let prefer = Preferences::parse(&headers);
    let key = idempotency_key(&headers)?;
    let submission = Submission {
        function: &function,
        input,
        idempotency_key: key,
        wait: !prefer.respond_async,
    };
    let (view, waiter) = match accept(&state, &caller, submission).await? {
        Accepted::New { view, waiter } => (view, waiter),
        Accepted::Repeat { first, input } => return repeat(first, &function, &input),
    };
    let Some(waiter) = waiter else {
        return Ok(accepted(view, prefer.respond_async));
    };
    Ok(match wait(&state, waiter, prefer.wait).await {
        Some(completion) => (StatusCode::OK, Json(view.completed(&completion))).into_response(),
        None => accepted(view, false),
    })
}

/// A repeated `Idempotency-Key`: the first job, if the request is the same.
fn repeat(first: JobRow, function: &FunctionName, input: &Value) -> Result<Response, ApiError> {
    let view = same_request(first, function, input)?;
    Ok(if view.state.is_terminal() {
        (StatusCode::OK, Json(view)).into_response()
    } else {
        accepted(view, false)
    })
}

/// The first job of a repeated `Idempotency-Key`, if the repeat asks for the same function
/// with the same input; `422` otherwise.
pub(crate) fn same_request(
    first: JobRow,
    function: &FunctionName,
    input: &Value,
) -> Result<JobView, ApiError> {
    if first.function != function.as_str() || first.input.as_ref() != Some(input) {
        return Err(ApiError::IdempotencyKeyReused(format!(
            "job {} of function {}",
            first.id, first.function
        )));
    }
    Ok(JobView::from(first))
}

/// Read a job
///
/// One of the caller's jobs, with its input, state, attempts and result or error. Jobs of
/// other entities are not found.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    params(("id" = String, Path, description = "The job's id (a UUIDv7)", format = Uuid)),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job of the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no job {id}"));
    let job_id: JobId = id.parse().map_err(|_| not_found())?;
    let job = jobs::get(&state.pool, caller.entity_id, job_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(job.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Jobs per page, 1 to `http.max_page_size` (100 by default).
    #[param(minimum = 1, default = 20)]
    limit: Option<i64>,
    /// The `next_before` of the previous page.
    #[param(format = Uuid)]
    before: Option<String>,
}

/// List the caller's jobs
///
/// Newest first, a page at a time: pass `next_before` as `before` for the next page.
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of the caller's jobs", body = JobPage),
        (status = 400, description = "`limit` or `before` is malformed", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(params) = params?;
    let (limit, before) = page(params.limit, params.before, state.http.max_page_size)?;
    let rows = jobs::list(&state.pool, caller.entity_id, before, limit).await?;
    let next_before = next_before(&rows, limit, |r| r.id);
    Ok(Json(JobPage {
        jobs: rows.into_iter().map(JobView::from).collect(),
        next_before,
    }))
}

/// How many rows a listing answers: `requested`, or `default` (capped at `max`), checked to
/// be 1 to `max`.
pub(crate) fn page_limit(requested: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = requested.unwrap_or(default.min(max));
    if !(1..=max).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {max}"
        )));
    }
    Ok(limit)
}

/// A keyset page's `limit` (1 to `max`, 20 by default) and `before` (a job id).
fn page(
    limit: Option<i64>,
    before: Option<String>,
    max: i64,
) -> Result<(i64, Option<JobId>), ApiError> {
    let limit = page_limit(limit, 20, max)?;
    let before = before
        .map(|b| b.parse::<JobId>())
        .transpose()
        .map_err(|_| ApiError::BadRequest("before must be a job id".into()))?;
    Ok((limit, before))
}

/// The `before` of the next page: the last row's position when the page is full.
pub(crate) fn next_before<T, C>(rows: &[T], limit: i64, position: impl Fn(&T) -> C) -> Option<C> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(position))
        .flatten()
}

pub(crate) fn known_function(state: &AppState, name: &str) -> Result<FunctionName, ApiError> {
    FunctionName::parse(name)
        .ok()
        .filter(|f| state.functions.contains(f))
        .ok_or_else(|| ApiError::UnknownFunction(name.to_owned()))
}

pub(crate) fn body_error(e: &BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(limit)
    } else {
        ApiError::BadRequest(format!("the body could not be read: {}", e.body_text()))
    }
}

pub(crate) fn accepted(view: JobView, async_preferred: bool) -> Response {
    let location = format!("/jobs/{}", view.id);
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    if async_preferred {
        headers.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
    }
    response
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad =
        || ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into());
    let key = value.to_str().map_err(|_| bad())?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key))
}

/// The caller's `Prefer` header (RFC 7240): `respond-async`, `wait=<seconds>`. Unknown
/// preferences are ignored, as the RFC asks.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Preferences {
    pub(crate) respond_async: bool,
    pub(crate) wait: Option<Duration>,
}

impl Preferences {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut prefs = Self::default();
        let tokens = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        for token in tokens {
            let (name, value) = token.split_once('=').map_or((token, None), |(n, v)| {
                (n.trim(), Some(v.trim().trim_matches('"')))
            });
            match (name.to_ascii_lowercase().as_str(), value) {
                ("respond-async", _) => prefs.respond_async = true,
                ("wait", Some(secs)) => prefs.wait = secs.parse().ok().map(Duration::from_secs),
                _ => {}
            }
        }
        prefs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn prefer_is_parsed_as_rfc_7240() {
        let p = Preferences::parse(&headers(&[("prefer", "respond-async, wait=10")]));
        assert_eq!(
            p,
            Preferences {
                respond_async: true,
                wait: Some(Duration::from_secs(10))
            }
        );
        let p = Preferences::parse(&headers(&[
            ("prefer", "handling=lenient"),
            ("prefer", "wait=3"),
        ]));
        assert_eq!(
            p,
            Preferences {
                respond_async: false,
                wait: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            Preferences::parse(&headers(&[("prefer", "wait=soon")])),
            Preferences::default()
        );
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert_eq!(
            idempotency_key(&headers(&[("idempotency-key", "order-42")])).unwrap(),
            Some("order-42")
        );
        assert!(idempotency_key(&headers(&[("idempotency-key", "has space")])).is_err());
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
    }
}
