//! What the operations console shows of a tenant's jobs: the most recent ones, and per
//! function how many finished lately, how fast, and how many lie dead. Scoped like the dead
//! jobs (`dead_jobs::Viewer`): the admin's tenant, and for operators the jobs no tenant owns.
//!
//! Jobs carry no tenant column (the hot path's insert stays as it is); a tenant's jobs are
//! its entities' jobs, each read through `job_owner_id_idx (owner_id, id DESC)`, and "lately"
//! is an id range, since ids are UUIDv7 and sort by creation time (`JobId::first_at`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use surge_contract::job::{JobId, JobState};
use uuid::Uuid;

use super::dead_jobs::Viewer;

/// A recent job, without its input and result (the console links to neither).
#[derive(Debug, Clone)]
pub struct RecentRow {
    pub id: JobId,
    pub function: String,
    pub state: JobState,
    pub attempts: i32,
    pub owner_id: Option<Uuid>,
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The viewer's `limit` most recent jobs, newest first: the newest `limit` of each of the
/// tenant's entities (one index range each), merged.
pub async fn recent(
    pool: &PgPool,
    viewer: Viewer<'_>,
    limit: i64,
) -> Result<Vec<RecentRow>, sqlx::Error> {
    sqlx::query_as!(
        RecentRow,
        r#"
        SELECT r.id AS "id!: JobId", r.function AS "function!", r.state AS "state!: JobState",
               r.attempts AS "attempts!", r.owner_id, r.error, r.created_at AS "created_at!",
               r.finished_at
        FROM (
            SELECT j.id, j.function, j.state, j.attempts, j.owner_id, j.error, j.created_at,
                   j.finished_at
            FROM entity e
            CROSS JOIN LATERAL (
                SELECT id, function, state, attempts, owner_id, error, created_at, finished_at
                FROM job WHERE owner_id = e.id ORDER BY id DESC LIMIT $2
            ) j
            WHERE e.tenant = $1
            UNION ALL
            (SELECT id, function, state, attempts, owner_id, error, created_at, finished_at
             FROM job WHERE owner_id IS NULL AND $3 ORDER BY id DESC LIMIT $2)
        ) r
        ORDER BY r.id DESC
        LIMIT $2
        "#,
        viewer.tenant,
        limit,
        viewer.operator,
    )
    .fetch_all(pool)
    .await
}

/// One function's jobs created since the window's start that have finished.
#[derive(Debug, Clone)]
pub struct FinishedRow {
    pub function: String,
    pub succeeded: i64,
    /// Failed or dead.
    pub failed: i64,
    /// Creation to finish of the succeeded ones, in seconds.
    pub p50_s: Option<f64>,
    pub p95_s: Option<f64>,
}

/// Per function, the viewer's jobs created since `since` that finished: counts, and the
/// median and 95th percentile of the succeeded ones' end-to-end time.
pub async fn finished_since(
    pool: &PgPool,
    viewer: Viewer<'_>,
    since: JobId,
) -> Result<Vec<FinishedRow>, sqlx::Error> {
    sqlx::query_as!(
        FinishedRow,
        r#"
        SELECT f.function AS "function!",
               count(*) FILTER (WHERE f.state = 'succeeded') AS "succeeded!",
               count(*) FILTER (WHERE f.state IN ('failed', 'dead')) AS "failed!",
               percentile_cont(0.5) WITHIN GROUP (ORDER BY f.seconds)
                   FILTER (WHERE f.state = 'succeeded') AS p50_s,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY f.seconds)
                   FILTER (WHERE f.state = 'succeeded') AS p95_s
        FROM (
            SELECT j.function, j.state,
                   extract(epoch FROM j.finished_at - j.created_at)::float8 AS seconds
            FROM entity e
            JOIN job j ON j.owner_id = e.id AND j.id >= $2
            WHERE e.tenant = $1 AND j.finished_at IS NOT NULL
            UNION ALL
            SELECT function, state, extract(epoch FROM finished_at - created_at)::float8
            FROM job
            WHERE owner_id IS NULL AND $3 AND id >= $2 AND finished_at IS NOT NULL
        ) f
        GROUP BY f.function
        "#,
        viewer.tenant,
        since.0,
        viewer.operator,
    )
    .fetch_all(pool)
    .await
}

/// Per function, how many of the viewer's jobs are dead (served by `dead_job`'s key).
pub async fn dead_counts(
    pool: &PgPool,
    viewer: Viewer<'_>,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"
        SELECT d.function, count(*) AS "dead!"
        FROM dead_job d
        JOIN job j ON j.id = d.job_id
        LEFT JOIN entity e ON e.id = j.owner_id
        WHERE e.tenant = $1 OR (j.owner_id IS NULL AND $2)
        GROUP BY d.function
        "#,
        viewer.tenant,
        viewer.operator,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.function, r.dead)).collect())
}
