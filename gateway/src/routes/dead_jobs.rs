//! `/admin/dead/{function}`: the dead jobs of a function (out of attempts), with every reason
//! they failed, and their replay (`jobs::replay`: the same job id, queued again).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_contract::job::{FunctionName, JobId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::paging;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::jobs;
use crate::openapi::Problem;
use crate::state::AppState;
use crate::store::dead_jobs::{self, DeadCursor, DeadRow};

/// Jobs replayed by one `replay` of a whole function, at most.
const MAX_REPLAY: i64 = 1000;
/// How long one `replay` of a whole function goes on at most (each job waits for its
/// publish confirm); past it, it answers what it did and `more`.
const REPLAY_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(replay_all))
        .routes(routes!(replay_one))
}

/// A dead job, with why it died.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadJob {
    #[schema(value_type = String, format = Uuid)]
    pub id: JobId,
    pub function: String,
    /// The owner's tenant and entity; absent for a job a trusted producer published.
    pub tenant: Option<String>,
    pub entity_id: Option<Uuid>,
    pub attempts: i32,
    pub input: Option<Value>,
    /// The problem it died with.
    pub error: Option<Value>,
    /// Every failed attempt's problem, oldest first, across replays.
    pub attempt_errors: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub died_at: chrono::DateTime<chrono::Utc>,
}

/// A page of dead jobs, newest death first.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadPage {
    pub jobs: Vec<DeadJob>,
    /// Pass as `before` for the next page (opaque; absent on the last page).
    pub next_before: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Replayed {
    /// The jobs queued again.
    #[schema(value_type = Vec<String>)]
    pub replayed: Vec<JobId>,
    /// More dead jobs may be left: the call stopped at its 1000 jobs or 20 seconds; call again.
    #[serde(default)]
    pub more: bool,
}

impl From<DeadRow> for DeadJob {
    fn from(row: DeadRow) -> Self {
        Self {
            id: row.id,
            function: row.function,
            tenant: row.tenant,
            entity_id: row.owner_id,
            attempts: row.attempts,
            input: row.input,
            error: row.error,
            attempt_errors: row.attempt_errors,
            created_at: row.created_at,
            died_at: row.died_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeadParams {
    /// Jobs per page, 1 to `http.max_page_size`.
    #[param(minimum = 1, default = 20)]
    limit: Option<i64>,
    /// The `next_before` of the previous page.
    before: Option<String>,
}

/// List dead jobs
///
/// Admins only: the dead jobs of a function (of the admin's tenant, and those no tenant
/// owns), newest death first, with the problem each died with and every attempt's error.
#[utoipa::path(get, path = "/admin/dead/{function}", tag = "admin", operation_id = "list_dead_jobs",
    params(("function" = String, Path, description = "The function", example = "echo"), DeadParams),
    responses(
        (status = 200, description = "A page of dead jobs", body = DeadPage),
        (status = 400, description = "`limit` or `before` is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such function", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(function): Path<String>,
    params: Result<Query<DeadParams>, QueryRejection>,
) -> Result<Json<DeadPage>, ApiError> {
    let function = served(&state, &function)?;
    let Query(params) = params?;
    let limit = paging::limit(params.limit, 20, state.http.max_page_size)?;
    let before = params
        .before
        .map(|b| {
            DeadCursor::parse(&b).ok_or_else(|| {
                ApiError::BadRequest("before must be the next_before of a previous page".into())
            })
        })
        .transpose()?;
    let viewer = state.viewer(&caller);
    let name = function.as_str();
    let rows = state
        .reads
        .run(|pool| async move { dead_jobs::list(&pool, viewer, name, before, limit).await })
        .await?;
    let next_before = paging::next_before(&rows, limit, |r| DeadCursor::of(r).encode());
    Ok(Json(DeadPage {
        jobs: rows.into_iter().map(DeadJob::from).collect(),
        next_before,
    }))
}

/// Replay every dead job
///
/// Admins only: queues again (oldest first, at most 1000 jobs or 20 seconds per call, then
/// `more`) the dead jobs of a function listed for the admin.
#[utoipa::path(post, path = "/admin/dead/{function}/replay", tag = "admin", operation_id = "replay_dead_jobs",
    params(("function" = String, Path, description = "The function", example = "echo")),
    responses(
        (status = 200, description = "The jobs queued again", body = Replayed),
        (status = 400, description = "`settings`: dead writes are not replayed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such function", body = Problem, content_type = "application/problem+json"),
    ))]
async fn replay_all(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(function): Path<String>,
) -> Result<Json<Replayed>, ApiError> {
    let function = replayable(&state, &function)?;
    let ids = dead_jobs::ids(
        &state.pool,
        state.viewer(&caller),
        function.as_str(),
        MAX_REPLAY,
    )
    .await?;
    let mut replayed = Vec::with_capacity(ids.len());
    let mut more = ids.len() as i64 == MAX_REPLAY;
    let deadline = tokio::time::Instant::now() + REPLAY_BUDGET;
    for id in ids {
        if tokio::time::Instant::now() >= deadline {
            more = true;
            break;
        }
        match jobs::replay(&state, &caller, &function, id).await {
            Ok(true) => replayed.push(id),
            Ok(false) => {}
            Err(ApiError::Unavailable(why)) => {
                return Err(ApiError::Unavailable(format!(
                    "{why} ({} replayed before this one)",
                    replayed.len()
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Json(Replayed { replayed, more }))
}

/// Replay one dead job
///
/// Admins only: queues the dead job again under its own id.
#[utoipa::path(post, path = "/admin/dead/{function}/{id}/replay", tag = "admin", operation_id = "replay_dead_job",
    params(
        ("function" = String, Path, description = "The function", example = "echo"),
        ("id" = String, Path, description = "The dead job's id", format = Uuid),
    ),
    responses(
        (status = 200, description = "Queued again", body = Replayed),
        (status = 400, description = "`settings`: dead writes are not replayed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such function, or no such dead job", body = Problem, content_type = "application/problem+json"),
    ))]
async fn replay_one(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path((function, id)): Path<(String, String)>,
) -> Result<Json<Replayed>, ApiError> {
    let function = replayable(&state, &function)?;
    let not_found = || ApiError::NotFound(format!("no dead job {id} of {function}"));
    let job: JobId = id.parse().map_err(|_| not_found())?;
    if jobs::replay(&state, &caller, &function, job).await? {
        Ok(Json(Replayed {
            replayed: vec![job],
            more: false,
        }))
    } else {
        Err(not_found())
    }
}

/// A function whose dead jobs may be replayed: not `settings`, whose old writes would land
/// over newer ones (a settings write that died is written again, with a fresh `If-Match`).
fn replayable(state: &AppState, name: &str) -> Result<FunctionName, ApiError> {
    let function = served(state, name)?;
    if function.as_str() == surge_contract::server_settings::FUNCTION {
        return Err(ApiError::BadRequest(
            "dead settings writes are not replayed: an old write would land over newer ones; \
             read the setting and write it again"
                .into(),
        ));
    }
    Ok(function)
}

/// A function whose dead jobs may be listed: a served one, or `settings`.
fn served(state: &AppState, name: &str) -> Result<FunctionName, ApiError> {
    FunctionName::parse(name)
        .ok()
        .filter(|f| {
            state.functions.contains(f) || f.as_str() == surge_contract::server_settings::FUNCTION
        })
        .ok_or_else(|| ApiError::UnknownFunction(name.to_owned()))
}
