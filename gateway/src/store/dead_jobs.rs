//! `dead_job` and the dead jobs it lists, for admins. Every query is scoped to the admin's
//! tenant: an admin sees the dead jobs of its own tenant's entities; platform operators also
//! see those no tenant owns (published straight to the broker by a trusted producer).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use surge_contract::job::JobId;
use uuid::Uuid;

/// A dead job with its reasons.
#[derive(Debug, Clone)]
pub struct DeadRow {
    pub id: JobId,
    pub function: String,
    pub tenant: Option<String>,
    pub owner_id: Option<Uuid>,
    pub attempts: i32,
    pub input: Option<Value>,
    pub error: Option<Value>,
    pub attempt_errors: Value,
    pub created_at: DateTime<Utc>,
    pub died_at: DateTime<Utc>,
}

/// Whose dead jobs an admin sees.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub tenant: &'a str,
    /// A platform operator: also the jobs no tenant owns.
    pub operator: bool,
}

/// Where a page of dead jobs ends: the last row's death time and id, so the next page goes
/// on from there even when that job was replayed meanwhile (and is no longer listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadCursor {
    pub died_at: DateTime<Utc>,
    pub id: JobId,
}

impl DeadCursor {
    pub fn of(row: &DeadRow) -> Self {
        Self {
            died_at: row.died_at,
            id: row.id,
        }
    }

    /// Opaque to clients: `<microseconds since the epoch>.<job id>` (Postgres keeps
    /// microseconds, so the position is exact).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.died_at.timestamp_micros(), self.id)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        Some(Self {
            died_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// The dead jobs of `function` the viewer sees, newest death first; `before` (where the
/// previous page ended) pages on.
pub async fn list(
    pool: &PgPool,
    viewer: Viewer<'_>,
    function: &str,
    before: Option<DeadCursor>,
    limit: i64,
) -> Result<Vec<DeadRow>, sqlx::Error> {
    sqlx::query_as!(
        DeadRow,
        r#"
        SELECT j.id AS "id: JobId", j.function, e.tenant AS "tenant?", j.owner_id, j.attempts,
               j.input, j.error, j.attempt_errors, j.created_at, d.died_at
        FROM dead_job d
        JOIN job j ON j.id = d.job_id
        LEFT JOIN entity e ON e.id = j.owner_id
        WHERE d.function = $1
          AND (e.tenant = $2 OR (j.owner_id IS NULL AND $5))
          AND ($3::timestamptz IS NULL OR (d.died_at, d.job_id) < ($3, $6::uuid))
        ORDER BY d.died_at DESC, d.job_id DESC
        LIMIT $4
        "#,
        function,
        viewer.tenant,
        before.map(|b| b.died_at),
        limit,
        viewer.operator,
        before.map(|b| b.id.0),
    )
    .fetch_all(pool)
    .await
}

/// The ids of up to `limit` dead jobs of `function` the viewer sees, oldest death first.
pub async fn ids(
    pool: &PgPool,
    viewer: Viewer<'_>,
    function: &str,
    limit: i64,
) -> Result<Vec<JobId>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        SELECT d.job_id AS "id: JobId"
        FROM dead_job d
        JOIN job j ON j.id = d.job_id
        LEFT JOIN entity e ON e.id = j.owner_id
        WHERE d.function = $1 AND (e.tenant = $2 OR (j.owner_id IS NULL AND $4))
        ORDER BY d.died_at, d.job_id
        LIMIT $3
        "#,
        function,
        viewer.tenant,
        limit,
        viewer.operator,
    )
    .fetch_all(pool)
    .await
}

/// What a replay publishes again.
#[derive(Debug)]
pub struct Revived {
    pub id: JobId,
    pub owner_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub event_source: String,
    pub event_id: String,
    pub input: Option<Value>,
    pub persona: Option<String>,
}

/// Takes a dead job off the list and makes it `queued` with its attempts reset (the runtime
/// would otherwise find it out of attempts at once); its attempt errors stay. Runs in the
/// caller's transaction, whose row lock keeps a worker from claiming the job until the replay
/// is committed. `None`: no such dead job for the viewer, or another replay holds it right
/// now (skipped, not waited for: two replays of one job must not both publish it).
pub async fn revive(
    tx: &mut PgConnection,
    viewer: Viewer<'_>,
    function: &str,
    id: JobId,
) -> Result<Option<Revived>, sqlx::Error> {
    sqlx::query_as!(
        Revived,
        r#"
        WITH mine AS (
            SELECT d.job_id, e.tenant
            FROM dead_job d
            JOIN job j ON j.id = d.job_id
            LEFT JOIN entity e ON e.id = j.owner_id
            WHERE d.job_id = $3 AND d.function = $2
              AND (e.tenant = $1 OR (j.owner_id IS NULL AND $4))
            FOR UPDATE OF d SKIP LOCKED
        ), listed AS (
            DELETE FROM dead_job d USING mine
            WHERE d.job_id = mine.job_id
            RETURNING d.job_id, mine.tenant
        ), revived AS (
            UPDATE job SET state = 'queued', attempts = 0, error = NULL, result = NULL,
                           started_at = NULL, finished_at = NULL, updated_at = now()
            FROM listed
            WHERE job.id = listed.job_id AND job.state = 'dead'
            RETURNING job.id, job.owner_id, listed.tenant, job.event_source, job.event_id,
                      job.input, job.persona
        ), open AS (
            INSERT INTO job_open (job_id) SELECT id FROM revived ON CONFLICT DO NOTHING
        )
        SELECT id AS "id!: JobId", owner_id, tenant AS "tenant?", event_source AS "event_source!",
               event_id AS "event_id!", input, persona
        FROM revived
        "#,
        viewer.tenant,
        function,
        id.0,
        viewer.operator,
    )
    .fetch_optional(tx)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_exactly_and_nonsense_is_no_cursor() {
        let cursor = DeadCursor {
            died_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            id: JobId::new(),
        };
        assert_eq!(DeadCursor::parse(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "1.2",
            "x.01a21150-0bc2-728b-a838-4ff4f0c13bdb",
            "01a21150-0bc2-728b-a838-4ff4f0c13bdb",
        ] {
            assert_eq!(DeadCursor::parse(bad), None, "{bad}");
        }
    }
}
