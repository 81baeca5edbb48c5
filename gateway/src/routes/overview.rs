//! `GET /admin/functions` and `GET /admin/jobs`: what the operations console shows first —
//! each function's queue, replicas, latency and dead jobs, and the tenant's recent jobs.
//! Changes then arrive over `/ws` (`"scope":"tenant"`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_contract::job::{JobId, JobState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::paging;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::openapi::Problem;
use crate::state::AppState;
use crate::store::overview::{self, RecentRow};

/// How far back `GET /admin/functions` counts finished jobs and their latency.
pub const WINDOW_S: i64 = 15 * 60;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(functions))
        .routes(routes!(recent))
}

/// A function as the console shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionOverview {
    pub function: String,
    /// Messages waiting in the function's queue (all tenants'); absent when the gateway
    /// does not read the broker's figures (`scaler.management_url` unset).
    pub ready: Option<u64>,
    /// Messages checked out by a replica and not yet finished (all tenants').
    pub unacked: Option<u64>,
    /// Replicas consuming the queue (each holds one consumer); absent like `ready`.
    pub replicas: Option<u64>,
    /// The tenant's dead jobs of this function.
    pub dead: i64,
    /// The tenant's jobs created in the window that succeeded.
    pub succeeded: i64,
    /// The tenant's jobs created in the window that failed or died.
    pub failed: i64,
    /// End-to-end time (accepted to finished) of those that succeeded, in milliseconds.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

/// Every served function, in name order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionsOverview {
    pub functions: Vec<FunctionOverview>,
    /// The window of `succeeded`, `failed` and the latencies, in seconds back from `at`.
    pub window_s: i64,
    pub at: DateTime<Utc>,
}

/// List functions with their figures
///
/// Admins only: each served function's queue (ready and in-flight messages) and replicas
/// as the broker last reported them, with the admin tenant's dead jobs and, over the last
/// 15 minutes, its finished jobs and their median and 95th-percentile latency.
#[utoipa::path(get, path = "/admin/functions", tag = "admin", operation_id = "list_functions",
    responses(
        (status = 200, description = "Every served function", body = FunctionsOverview),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn functions(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> Result<Json<FunctionsOverview>, ApiError> {
    let at = Utc::now();
    let since = JobId::first_at(at - chrono::Duration::seconds(WINDOW_S));
    let viewer = state.viewer(&caller);
    let finished = state
        .reads
        .run(|pool| async move { overview::finished_since(&pool, viewer, since).await })
        .await?;
    let dead = state
        .reads
        .run(|pool| async move { overview::dead_counts(&pool, viewer).await })
        .await?;
    let mut names: Vec<_> = state.functions.iter().collect();
    names.sort();
    let functions = names
        .into_iter()
        .map(|function| {
            let depth = state.activity.current(function).and_then(|a| a.observed());
            let done = finished.iter().find(|f| f.function == function.as_str());
            FunctionOverview {
                function: function.to_string(),
                ready: depth.map(|d| d.ready),
                unacked: depth.map(|d| d.unacked),
                replicas: depth.map(|d| d.consumers),
                dead: dead
                    .iter()
                    .find(|(f, _)| f == function.as_str())
                    .map_or(0, |(_, n)| *n),
                succeeded: done.map_or(0, |d| d.succeeded),
                failed: done.map_or(0, |d| d.failed),
                latency_p50_ms: done.and_then(|d| d.p50_s).map(|s| s * 1000.0),
                latency_p95_ms: done.and_then(|d| d.p95_s).map(|s| s * 1000.0),
            }
        })
        .collect();
    Ok(Json(FunctionsOverview {
        functions,
        window_s: WINDOW_S,
        at,
    }))
}

/// A job of the tenant, as the console lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantJob {
    pub id: JobId,
    pub function: String,
    pub state: JobState,
    pub attempts: i32,
    /// The owner; absent for a job a trusted producer published.
    pub entity_id: Option<Uuid>,
    /// The problem a failed or dead job ended with.
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The most recent jobs, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantJobs {
    pub jobs: Vec<TenantJob>,
}

impl From<RecentRow> for TenantJob {
    fn from(row: RecentRow) -> Self {
        Self {
            id: row.id,
            function: row.function,
            state: row.state,
            attempts: row.attempts,
            entity_id: row.owner_id,
            error: row.error,
            created_at: row.created_at,
            finished_at: row.finished_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RecentParams {
    /// Jobs at most, 1 to `http.max_page_size`.
    #[param(minimum = 1, default = 50)]
    limit: Option<i64>,
}

/// List the tenant's recent jobs
///
/// Admins only: the most recent jobs of every entity of the admin's tenant (an operator's
/// also those no tenant owns), newest first, without inputs and results.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", operation_id = "list_tenant_jobs",
    params(RecentParams),
    responses(
        (status = 200, description = "The most recent jobs", body = TenantJobs),
        (status = 400, description = "`limit` is out of range or malformed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn recent(
    State(state): State<AppState>,
    Admin(caller): Admin,
    params: Result<Query<RecentParams>, QueryRejection>,
) -> Result<Json<TenantJobs>, ApiError> {
    let Query(params) = params?;
    let limit = paging::limit(params.limit, 50, state.http.max_page_size)?;
    let viewer = state.viewer(&caller);
    let rows = state
        .reads
        .run(|pool| async move { overview::recent(&pool, viewer, limit).await })
        .await?;
    Ok(Json(TenantJobs {
        jobs: rows.into_iter().map(TenantJob::from).collect(),
    }))
}
