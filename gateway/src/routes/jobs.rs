//! The jobs API. `POST /jobs/{function}` records the job (one statement), publishes its event
//! (one confirmed publish) and, unless the caller prefers async, waits for the completion on
//! this replica's reply queue; past the wait it answers 202 with `Location`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use surge_contract::job::JobId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::answer;
use super::paging;
use super::prefer::Preferences;
use super::request::{body_error, idempotency_key};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::jobs::{self, Repeat, Submission};
use crate::openapi::Problem;
use crate::state::AppState;
use crate::store;
use crate::views::{JobPage, JobView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, submit))
        .routes(routes!(submit_to_function))
}

/// Run a function
///
/// Records a job for the function named in the path with the JSON body as its input, and
/// waits for its completion (`200` with the finished job). Past the wait (`Prefer: wait=<s>`,
/// else the gateway's default), or with `Prefer: respond-async`, answers `202` with the queued
/// job and its `Location`. The same `Idempotency-Key` with the same input returns the first
/// job instead of running it again. The path's segment is the function's name; OpenAPI
/// gives `/jobs/{id}` one parameter name for every method, so generated clients call it `id`
/// here: they should use `run_function` (`POST /functions/{function}/jobs`), the same
/// operation with its parameter named as it is (docs/adr/0014).
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
        (status = 422, description = "The Idempotency-Key was used before for another function or input, or the input holds a value Surge cannot store (NUL, a number beyond ±1e308)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run(&state, &caller, &function, &headers, body).await
}

/// Run a function (for generated clients)
///
/// `POST /jobs/{function}` under a path of its own, so that its parameter has its own name
/// (`function`) in generated clients: the same operation, the same answers.
#[utoipa::path(
    post,
    path = "/functions/{function}/jobs",
    tag = "jobs",
    operation_id = "run_function",
    params(
        ("function" = String, Path, description = "The function to run", example = "echo",
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
        (status = 422, description = "The Idempotency-Key was used before for another function or input, or the input holds a value Surge cannot store (NUL, a number beyond ±1e308)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit_to_function(
    State(state): State<AppState>,
    caller: Caller,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run(&state, &caller, &function, &headers, body).await
}

async fn run(
    state: &AppState,
    caller: &Caller,
    function: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let function = state.function(function)?;
    let body = body.map_err(|e| body_error(&e, state.http.body_limit_bytes))?;
    let input: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not JSON: {e}")))?;
    surge_contract::binding::storable(&input).map_err(ApiError::Unstorable)?;
    let prefer = Preferences::parse(headers);
    let submission = Submission {
        function: &function,
        input,
        idempotency_key: idempotency_key(headers)?,
        wait: prefer.job_wait(),
        repeat: Repeat::SameRequest,
    };
    let answer = jobs::submit(state, caller, submission).await?;
    Ok(answer::job(answer, prefer.respond_async))
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
    let job = store::jobs::get(&state.pool, caller.entity_id, job_id)
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
    // A listing tolerates lag (the replica's, when there is one); a job just submitted is read
    // by its id, from the primary.
    let owner = caller.entity_id;
    let rows = state
        .reads
        .run(|pool| async move { store::jobs::list(&pool, owner, before, limit).await })
        .await?;
    let next_before = paging::next_before(&rows, limit, |r| r.id);
    Ok(Json(JobPage {
        jobs: rows.into_iter().map(JobView::from).collect(),
        next_before,
    }))
}

/// A keyset page's `limit` (1 to `max`, 20 by default) and `before` (a job id).
fn page(
    limit: Option<i64>,
    before: Option<String>,
    max: i64,
) -> Result<(i64, Option<JobId>), ApiError> {
    let limit = paging::limit(limit, 20, max)?;
    let before = before
        .map(|b| b.parse::<JobId>())
        .transpose()
        .map_err(|_| ApiError::BadRequest("before must be a job id".into()))?;
    Ok((limit, before))
}
