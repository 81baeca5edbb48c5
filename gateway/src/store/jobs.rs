//! `job` as the gateway sees it: created at acceptance, read by its owner. The function side
//! (claim, result) lives in the runtime.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use surge_contract::job::{JobId, JobState};
use uuid::Uuid;

/// A job as its owner may see it.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: JobId,
    pub function: String,
    pub state: JobState,
    pub attempts: i32,
    pub input: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A new job, as accepted.
pub struct NewJob<'a> {
    pub id: JobId,
    pub owner: Uuid,
    pub function: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub event_source: &'a str,
    pub input: &'a Value,
    pub trace_parent: Option<&'a str>,
}

/// Records a new job, and that its publish is not confirmed yet (due for the reconciler
/// after `lease`), in one statement. `None`: the owner already has a job with this
/// idempotency key.
pub async fn insert(
    pool: &PgPool,
    job: &NewJob<'_>,
    lease: std::time::Duration,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    sqlx::query_scalar!(
        r#"
        WITH inserted AS (
            INSERT INTO job (id, owner_id, function, idempotency_key, event_source, event_id,
                             input, trace_parent)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id, created_at
        ), unconfirmed AS (
            INSERT INTO job_unconfirmed (job_id, due_at)
            SELECT id, created_at + make_interval(secs => $9::bigint / 1000.0) FROM inserted
        )
        SELECT created_at AS "created_at!" FROM inserted
        "#,
        job.id.0,
        job.owner,
        job.function,
        job.idempotency_key,
        job.event_source,
        job.id.to_string(),
        job.input,
        job.trace_parent,
        lease_ms,
    )
    .fetch_optional(pool)
    .await
}

/// The owner's job with this idempotency key.
pub async fn by_idempotency_key(
    pool: &PgPool,
    owner: Uuid,
    key: &str,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as!(
        JobRow,
        r#"
        SELECT id AS "id: JobId", function, state AS "state: JobState", attempts, input, result, error,
               created_at, started_at, finished_at
        FROM job WHERE owner_id = $1 AND idempotency_key = $2
        "#,
        owner,
        key,
    )
    .fetch_optional(pool)
    .await
}

/// The owner's job `id`; another owner's job is not found.
pub async fn get(pool: &PgPool, owner: Uuid, id: JobId) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as!(
        JobRow,
        r#"
        SELECT id AS "id: JobId", function, state AS "state: JobState", attempts, input, result, error,
               created_at, started_at, finished_at
        FROM job WHERE id = $1 AND owner_id = $2
        "#,
        id.0,
        owner,
    )
    .fetch_optional(pool)
    .await
}

/// The owner's jobs, newest first, older than `before` when given (keyset pagination over the
/// time-ordered ids, served by `job_owner_id_idx`).
pub async fn list(
    pool: &PgPool,
    owner: Uuid,
    before: Option<JobId>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as!(
        JobRow,
        r#"
        SELECT id AS "id: JobId", function, state AS "state: JobState", attempts, NULL::jsonb AS input,
               result, error, created_at, started_at, finished_at
        FROM job
        WHERE owner_id = $1 AND ($2::uuid IS NULL OR id < $2)
        ORDER BY id DESC
        LIMIT $3
        "#,
        owner,
        before.map(|b| b.0),
        limit,
    )
    .fetch_all(pool)
    .await
}

/// Forgets a job that could not be published: it was never accepted.
pub async fn delete_unpublished(pool: &PgPool, owner: Uuid, id: JobId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        WITH forgotten AS (
            DELETE FROM job WHERE id = $1 AND owner_id = $2 AND state = 'queued' RETURNING id
        )
        DELETE FROM job_unconfirmed WHERE job_id IN (SELECT id FROM forgotten)
        "#,
        id.0,
        owner,
    )
    .execute(pool)
    .await?;
    Ok(())
}
