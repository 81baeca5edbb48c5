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

/// A new job, as accepted by a gateway (its event's source is the gateway's, its id the
/// job's).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub owner: Uuid,
    pub function: String,
    pub idempotency_key: Option<String>,
    /// The input as JSON text (serialized once, here).
    pub input: String,
    pub trace_parent: Option<String>,
}

/// Records a group of new jobs, and that their publishes are not confirmed yet (due for the
/// reconciler after `lease`), in one statement. Answers each job in order: its creation time,
/// or `None` when its owner already has a job with its idempotency key (also a job earlier in
/// the same group). The statement is all or nothing; a caller that must fail only the bad
/// row calls [`insert_one`] for each.
pub async fn insert_group(
    pool: &PgPool,
    jobs: &[NewJob],
    lease: std::time::Duration,
) -> Result<Vec<Option<DateTime<Utc>>>, sqlx::Error> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id.0).collect();
    let owners: Vec<Uuid> = jobs.iter().map(|j| j.owner).collect();
    let functions: Vec<String> = jobs.iter().map(|j| j.function.clone()).collect();
    let keys: Vec<Option<String>> = jobs.iter().map(|j| j.idempotency_key.clone()).collect();
    let inputs: Vec<String> = jobs.iter().map(|j| j.input.clone()).collect();
    let traces: Vec<Option<String>> = jobs.iter().map(|j| j.trace_parent.clone()).collect();
    let rows = sqlx::query!(
        r#"
        WITH input AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
                AS t(id, owner_id, function, idempotency_key, input, trace_parent)
        ), inserted AS (
            INSERT INTO job (id, owner_id, function, idempotency_key, event_source, event_id,
                             input, trace_parent)
            SELECT id, owner_id, function, idempotency_key, $7, id::text, input::jsonb, trace_parent
            FROM input
            ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id, created_at
        ), unconfirmed AS (
            INSERT INTO job_unconfirmed (job_id, due_at)
            SELECT id, created_at + make_interval(secs => $8::float8) FROM inserted
        )
        SELECT id AS "id!", created_at AS "created_at!" FROM inserted
        "#,
        &ids,
        &owners,
        &functions,
        &keys as &[Option<String>],
        &inputs,
        &traces as &[Option<String>],
        surge_contract::job::GATEWAY_SOURCE,
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await?;
    let created: std::collections::HashMap<Uuid, DateTime<Utc>> =
        rows.into_iter().map(|r| (r.id, r.created_at)).collect();
    Ok(ids.iter().map(|id| created.get(id).copied()).collect())
}

/// [`insert_group`] for one job.
pub async fn insert_one(
    pool: &PgPool,
    job: &NewJob,
    lease: std::time::Duration,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(insert_group(pool, std::slice::from_ref(job), lease)
        .await?
        .pop()
        .flatten())
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
