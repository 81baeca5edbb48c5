//! `job_unconfirmed`: the jobs whose request the broker has not confirmed. Rows are written
//! with the job (`jobs::insert`), removed in batches once publishes are confirmed, and taken
//! by the reconciler when due — one replica per row (`FOR UPDATE SKIP LOCKED`), each taking
//! moves the row's due time forward by the backoff, so replicas never fight over a job and a
//! job that cannot be published is tried again at the backoff's pace, never in a loop.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use surge_contract::job::{JobId, JobState};
use uuid::Uuid;

/// A job taken by the reconciler, with what its request is made of; `state` is `None` when
/// the job no longer exists.
#[derive(Debug, Clone)]
pub struct DueJob {
    pub id: JobId,
    pub republished: i32,
    pub state: Option<JobState>,
    pub function: Option<String>,
    pub owner_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub event_source: Option<String>,
    pub event_id: Option<String>,
    pub input: Option<Value>,
    pub persona: Option<String>,
    pub trace_parent: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

/// Whether `id`'s publish is still unconfirmed.
pub async fn is_unconfirmed(pool: &PgPool, id: JobId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM job_unconfirmed WHERE job_id = $1) AS "exists!""#,
        id.0
    )
    .fetch_one(pool)
    .await
}

/// Records that these jobs' publishes were confirmed (or that they need none any more).
pub async fn forget(pool: &PgPool, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query!("DELETE FROM job_unconfirmed WHERE job_id = ANY($1)", ids)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Takes up to `limit` due jobs for this replica: each is due again after
/// `first × 2^republished`, at most `max`, should this publish not be confirmed either.
pub async fn take_due(
    pool: &PgPool,
    limit: i64,
    first: std::time::Duration,
    max: std::time::Duration,
) -> Result<Vec<DueJob>, sqlx::Error> {
    sqlx::query_as!(
        DueJob,
        r#"
        WITH due AS (
            SELECT job_id FROM job_unconfirmed
            WHERE due_at <= now()
            ORDER BY due_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE job_unconfirmed u
        SET republished = u.republished + 1,
            due_at = now() + make_interval(secs => least(
                $2::float8 * power(2, least(u.republished, 30)), $3::float8))
        FROM due
        LEFT JOIN job j ON j.id = due.job_id
        LEFT JOIN entity e ON e.id = j.owner_id
        WHERE u.job_id = due.job_id
        RETURNING u.job_id AS "id: JobId", u.republished,
                  j.state AS "state?: JobState", j.function AS "function?", j.owner_id AS "owner_id?",
                  e.tenant AS "tenant?", j.event_source AS "event_source?", j.event_id AS "event_id?",
                  j.input AS "input?", j.persona AS "persona?", j.trace_parent AS "trace_parent?", j.created_at AS "created_at?"
        "#,
        limit,
        first.as_secs_f64(),
        max.as_secs_f64(),
    )
    .fetch_all(pool)
    .await
}

/// How many publishes are unconfirmed, and how many of them are past due (for readiness and
/// the metrics).
pub async fn counts(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT count(*) AS "all!", count(*) FILTER (WHERE due_at <= now()) AS "due!"
           FROM job_unconfirmed"#
    )
    .fetch_one(pool)
    .await?;
    Ok((row.all, row.due))
}
