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
    /// The input as JSON text (serialized once, shared: a retry does not copy it).
    pub input: std::sync::Arc<str>,
    pub trace_parent: Option<String>,
    /// The persona of the credential it was submitted with.
    pub persona: Option<String>,
}

/// Records a group of new jobs — with their idempotency keys, as open, and as not confirmed
/// yet (due for the reconciler after `lease`) — in one statement. Answers each job in order: its creation time,
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
    let inputs: Vec<&str> = jobs.iter().map(|j| &*j.input).collect();
    let traces: Vec<Option<String>> = jobs.iter().map(|j| j.trace_parent.clone()).collect();
    let personas: Vec<Option<String>> = jobs.iter().map(|j| j.persona.clone()).collect();
    let rows = sqlx::query!(
        r#"
        WITH input AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $9::text[])
                AS t(id, owner_id, function, idempotency_key, input, trace_parent, persona)
        ), keyed AS (
            -- A key's first use claims it; a repeat (also within the group) does not.
            INSERT INTO job_idempotency (owner_id, key, job_id)
            SELECT owner_id, idempotency_key, id FROM input WHERE idempotency_key IS NOT NULL
            ON CONFLICT (owner_id, key) DO NOTHING
            RETURNING job_id
        ), inserted AS (
            INSERT INTO job (id, owner_id, function, idempotency_key, event_source, event_id,
                             input, trace_parent, persona)
            SELECT id, owner_id, function, idempotency_key, $7, id::text, input::jsonb, trace_parent,
                   persona
            FROM input
            WHERE idempotency_key IS NULL OR id IN (SELECT job_id FROM keyed)
            RETURNING id, created_at
        ), unconfirmed AS (
            INSERT INTO job_unconfirmed (job_id, due_at)
            SELECT id, created_at + make_interval(secs => $8::float8) FROM inserted
        ), open AS (
            INSERT INTO job_open (job_id) SELECT id FROM inserted
        )
        SELECT id AS "id!", created_at AS "created_at!" FROM inserted
        "#,
        &ids,
        &owners,
        &functions,
        &keys as &[Option<String>],
        &inputs as &[&str],
        &traces as &[Option<String>],
        surge_contract::job::GATEWAY_SOURCE,
        lease.as_secs_f64(),
        &personas as &[Option<String>],
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

/// What an owner's idempotency key names.
#[derive(Debug)]
pub enum Keyed {
    /// The job it was first used for.
    Job(Box<JobRow>),
    /// A job that is gone (past retention): the key names nothing any more.
    Gone,
    /// No job was ever made with it (a repeat raced the first use's failure).
    Unused,
}

/// The owner's job with this idempotency key.
pub async fn by_idempotency_key(
    pool: &PgPool,
    owner: Uuid,
    key: &str,
) -> Result<Keyed, sqlx::Error> {
    let row = sqlx::query!(
        r#"
        SELECT k.job_id, j.id AS "id?: JobId", j.function AS "function?",
               j.state AS "state?: JobState", j.attempts AS "attempts?", j.input, j.result,
               j.error, j.created_at AS "created_at?", j.started_at, j.finished_at
        FROM job_idempotency k LEFT JOIN job j ON j.id = k.job_id
        WHERE k.owner_id = $1 AND k.key = $2
        "#,
        owner,
        key,
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(Keyed::Unused);
    };
    Ok(
        match (
            row.id,
            row.function,
            row.state,
            row.attempts,
            row.created_at,
        ) {
            (Some(id), Some(function), Some(state), Some(attempts), Some(created_at)) => {
                Keyed::Job(Box::new(JobRow {
                    id,
                    function,
                    state,
                    attempts,
                    input: row.input,
                    result: row.result,
                    error: row.error,
                    created_at,
                    started_at: row.started_at,
                    finished_at: row.finished_at,
                }))
            }
            _ => Keyed::Gone,
        },
    )
}

/// Frees an owner's key whose job is gone, so its next use makes a new job: the
/// `Idempotency-Key` promise lasts as long as the job is kept.
pub async fn forget_key(pool: &PgPool, owner: Uuid, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        DELETE FROM job_idempotency k
        WHERE k.owner_id = $1 AND k.key = $2
          AND NOT EXISTS (SELECT 1 FROM job WHERE job.id = k.job_id)
        "#,
        owner,
        key,
    )
    .execute(pool)
    .await?;
    Ok(())
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
            DELETE FROM job WHERE id = $1 AND owner_id = $2 AND state = 'queued'
            RETURNING id, owner_id, idempotency_key
        ), unconfirmed AS (
            DELETE FROM job_unconfirmed WHERE job_id IN (SELECT id FROM forgotten)
        ), open AS (
            DELETE FROM job_open WHERE job_id IN (SELECT id FROM forgotten)
        )
        DELETE FROM job_idempotency k USING forgotten f
        WHERE k.owner_id = f.owner_id AND k.key = f.idempotency_key AND k.job_id = f.id
        "#,
        id.0,
        owner,
    )
    .execute(pool)
    .await?;
    Ok(())
}
