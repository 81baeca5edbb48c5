//! The job lifecycle as the runtime records it. Exactly-once rests on two statements:
//! the claim (by the job's id — a gateway's event id is its job's id — or, for a trusted
//! producer's event, by its `source` + `id` key, recording the job on first sight; committed
//! on its own so `running` and the attempt count survive a crash) and the finish (`WHERE state = 'running'`,
//! so of two racing deliveries only one can commit a result). Claims of concurrent deliveries,
//! and the results of handlers that wrote nothing else, are written in groups
//! (`claim_recorded_group`, `succeed_group`); a handler's own writes keep its transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use surge_contract::job::{JobId, JobState};
use uuid::Uuid;

/// A delivery's job as the claim found or created it.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: JobId,
    pub state: JobState,
    pub attempts: i32,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub finished_at: Option<DateTime<Utc>>,
    pub owner_id: Option<Uuid>,
    pub tenant: Option<String>,
    /// The input as the job was recorded: what the handler runs on, whatever the delivery
    /// carried (a message on the broker is not trusted to say what the owner asked).
    pub input: Option<Value>,
    /// The persona of the credential its owner submitted it with.
    pub persona: Option<String>,
}

/// The identity of a delivery's job on the bus: its event's `source` and `id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub source: String,
    pub id: String,
}

/// What the claim of a trusted producer's event needs to know of it.
pub struct Delivered<'a> {
    pub function: &'a str,
    pub event_source: &'a str,
    pub event_id: &'a str,
    pub input: &'a Value,
    pub trace_parent: Option<&'a str>,
}

/// The claim of a trusted producer's event (one a gateway did not publish): marks its job
/// `running` and counts the attempt, recording the job (and its `source` + `id` key) on first
/// sight. A finished job is returned untouched, so its stored answer can be republished.
pub async fn claim_produced(pool: &PgPool, d: &Delivered<'_>) -> Result<JobRecord, sqlx::Error> {
    // Twice at most: a key whose job is gone (past retention) is freed once, then it is new.
    for _ in 0..2 {
        let known = sqlx::query_scalar!(
            "SELECT job_id FROM job_event_key WHERE event_source = $1 AND event_id = $2",
            d.event_source,
            d.event_id,
        )
        .fetch_optional(pool)
        .await?;
        match known {
            Some(id) => {
                if let Some(job) = claim_group(pool, &[JobId(id)], d.function)
                    .await?
                    .pop()
                    .flatten()
                {
                    return Ok(job);
                }
                sqlx::query!(
                    "DELETE FROM job_event_key WHERE event_source = $1 AND event_id = $2 AND job_id = $3",
                    d.event_source,
                    d.event_id,
                    id,
                )
                .execute(pool)
                .await?;
            }
            None => {
                if let Some(job) = record_produced(pool, d).await? {
                    return Ok(job);
                }
                // Another delivery recorded it meanwhile: claim that one.
            }
        }
    }
    Err(sqlx::Error::RowNotFound)
}

/// Records a trusted producer's job on first sight, running; `None` when its key was taken
/// meanwhile.
async fn record_produced(
    pool: &PgPool,
    d: &Delivered<'_>,
) -> Result<Option<JobRecord>, sqlx::Error> {
    sqlx::query_as!(
        JobRecord,
        r#"
        WITH key AS (
            INSERT INTO job_event_key (event_source, event_id, job_id) VALUES ($3, $4, $1)
            ON CONFLICT (event_source, event_id) DO NOTHING
            RETURNING job_id
        ), inserted AS (
            INSERT INTO job (id, function, state, attempts, event_source, event_id, input,
                             trace_parent, started_at)
            SELECT job_id, $2, 'running', 1, $3, $4, $5, $6, now() FROM key
            RETURNING id, state, attempts, result, error, finished_at, owner_id, input
        ), open AS (
            INSERT INTO job_open (job_id) SELECT id FROM inserted
        )
        SELECT id AS "id!: JobId", state AS "state!: JobState", attempts AS "attempts!", result,
               error, finished_at, owner_id, NULL::text AS tenant, input, NULL::text AS persona
        FROM inserted
        "#,
        JobId::new().0,
        d.function,
        d.event_source,
        d.event_id,
        d.input,
        d.trace_parent,
    )
    .fetch_optional(pool)
    .await
}

/// Claims recorded jobs of `function` by id, in one statement, in order: marks each `running`
/// and counts the attempt, unless it is finished (returned untouched). `None` for a job that
/// is not recorded, or is another function's (a message naming it on this queue is forged or
/// misrouted, and must not touch it). The ids must be distinct.
pub async fn claim_group(
    pool: &PgPool,
    ids: &[JobId],
    function: &str,
) -> Result<Vec<Option<JobRecord>>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
    let mut claimed: std::collections::HashMap<Uuid, JobRecord> = sqlx::query_as!(
        JobRecord,
        r#"
        WITH relaxed AS (
            -- This commit does not wait for its WAL flush (synchronous_commit = off, for this
            -- transaction only): a claim lost to a database crash loses no effect, since
            -- anything the job commits later is flushed after it and takes it along; all it
            -- can lose is an attempt's count and its `running` (docs/jobs.md).
            SELECT set_config('synchronous_commit', 'off', true)
        )
        UPDATE job SET
            state      = CASE WHEN job.state IN ('queued', 'running')
                              THEN 'running'::job_state ELSE job.state END,
            attempts   = CASE WHEN job.state IN ('queued', 'running')
                              THEN job.attempts + 1 ELSE job.attempts END,
            started_at = CASE WHEN job.state IN ('queued', 'running')
                              THEN now() ELSE job.started_at END,
            updated_at = now()
        FROM unnest($1::uuid[]) AS d(id), relaxed
        WHERE job.id = d.id AND job.function = $2
        RETURNING job.id AS "id: JobId", job.state AS "state: JobState", job.attempts,
                  job.result, job.error, job.finished_at, job.owner_id,
                  (SELECT tenant FROM entity WHERE entity.id = job.owner_id) AS tenant,
                  job.input, job.persona
        "#,
        &ids,
        function,
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|job| (job.id.0, job))
    .collect();
    Ok(ids.iter().map(|id| claimed.remove(id)).collect())
}

/// Records the results of a group of handlers that wrote nothing else, in one statement, in
/// order: when each job finished, or `None` for a job no longer running (another delivery
/// finished it first). `results` are JSON texts.
pub async fn succeed_group(
    pool: &PgPool,
    results: &[(JobId, String)],
) -> Result<Vec<Finished>, sqlx::Error> {
    let ids: Vec<Uuid> = results.iter().map(|(id, _)| id.0).collect();
    let values: Vec<String> = results.iter().map(|(_, r)| r.clone()).collect();
    let rows = sqlx::query!(
        r#"
        WITH finished AS (
            UPDATE job SET state = 'succeeded', result = d.result::jsonb, finished_at = now(),
                           updated_at = now()
            FROM unnest($1::uuid[], $2::text[]) AS d(id, result)
            WHERE job.id = d.id AND job.state = 'running'
            RETURNING job.id, job.finished_at
        ), closed AS (
            DELETE FROM job_open WHERE job_id IN (SELECT id FROM finished)
        )
        SELECT id AS "id!", finished_at AS "finished_at!" FROM finished
        "#,
        &ids,
        &values,
    )
    .fetch_all(pool)
    .await?;
    let finished: std::collections::HashMap<Uuid, DateTime<Utc>> =
        rows.into_iter().map(|r| (r.id, r.finished_at)).collect();
    Ok(ids.iter().map(|id| finished.get(id).copied()).collect())
}

/// Locks the job's row for the handler's transaction and returns its state. While one
/// delivery holds it, a duplicate delivery of the same job waits here (or in its claim) instead
/// of running the handler alongside; once it gets the lock it sees the job finished.
pub async fn lock(tx: &mut PgConnection, id: JobId) -> Result<JobState, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT state AS "state: JobState" FROM job WHERE id = $1 FOR UPDATE"#,
        id.0,
    )
    .fetch_one(tx)
    .await
}

/// The time a job finished, when this call is the one that finished it.
pub type Finished = Option<DateTime<Utc>>;

/// Records the handler's result in its own transaction. `None`: the job was no longer
/// running (another delivery finished it first), and the caller must roll back.
pub async fn succeed(
    tx: &mut PgConnection,
    id: JobId,
    result: &Value,
) -> Result<Finished, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        WITH finished AS (
            UPDATE job SET state = 'succeeded', result = $2, finished_at = now(), updated_at = now()
            WHERE id = $1 AND state = 'running'
            RETURNING id, finished_at
        ), closed AS (
            DELETE FROM job_open WHERE job_id IN (SELECT id FROM finished)
        )
        SELECT finished_at AS "finished_at!" FROM finished
        "#,
        id.0,
        result,
    )
    .fetch_optional(tx)
    .await
}

/// Ends a running job as `failed` or `dead` with its problem, keeping it among the attempts'
/// errors (so a replayed job that dies again keeps both reasons). A dead job is also listed in
/// `dead_job`, in the same statement. `None`: the job was no longer running.
pub async fn finish_with_error(
    pool: &PgPool,
    id: JobId,
    state: JobState,
    problem: &Value,
) -> Result<Finished, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        WITH finished AS (
            UPDATE job SET state = $2, error = $3,
                           attempt_errors = attempt_errors || jsonb_build_array($3::jsonb),
                           finished_at = now(), updated_at = now()
            WHERE id = $1 AND state = 'running'
            RETURNING id, function, state, finished_at
        ), listed AS (
            INSERT INTO dead_job (job_id, function, died_at)
            SELECT id, function, finished_at FROM finished WHERE state = 'dead'
            ON CONFLICT (job_id) DO UPDATE SET died_at = EXCLUDED.died_at
        ), closed AS (
            DELETE FROM job_open WHERE job_id IN (SELECT id FROM finished)
        )
        SELECT finished_at AS "finished_at!" FROM finished
        "#,
        id.0,
        state as JobState,
        problem,
    )
    .fetch_optional(pool)
    .await
}

/// Keeps a retryable failure's problem; the job stays `running` until its next attempt.
pub async fn record_attempt_error(
    pool: &PgPool,
    id: JobId,
    problem: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        UPDATE job SET attempt_errors = attempt_errors || jsonb_build_array($2::jsonb), updated_at = now()
        WHERE id = $1 AND state = 'running'
        "#,
        id.0,
        problem,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Reads a job back, after another delivery won the race to finish it.
pub async fn load(pool: &PgPool, id: JobId) -> Result<JobRecord, sqlx::Error> {
    sqlx::query_as!(
        JobRecord,
        r#"
        SELECT id AS "id: JobId", state AS "state: JobState", attempts, result, error, finished_at,
               owner_id, (SELECT tenant FROM entity WHERE entity.id = job.owner_id) AS tenant,
               input, persona
        FROM job WHERE id = $1
        "#,
        id.0,
    )
    .fetch_one(pool)
    .await
}
