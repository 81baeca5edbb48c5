//! What retention removes row by row: the small tables beside the jobs (their keys), spent
//! credentials and login flows. In batches, so no statement holds locks for long; the job
//! table itself is never pruned this way (its partitions are dropped whole: `partitions`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Rows one statement removes at most.
const BATCH: i64 = 5_000;

/// Runs `batch` until it removes fewer than a batch; the rows removed.
async fn in_batches<F, Fut>(mut batch: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
{
    let mut removed = 0;
    loop {
        let n = batch().await?;
        removed += n;
        if n < BATCH as u64 {
            return Ok(removed);
        }
    }
}

/// Idempotency keys made before `cut` (their jobs are past retention).
pub async fn idempotency_keys(pool: &PgPool, cut: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    in_batches(|| async {
        Ok(sqlx::query!(
            "DELETE FROM job_idempotency WHERE ctid IN (
                 SELECT ctid FROM job_idempotency WHERE created_at < $1 LIMIT $2)",
            cut,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected())
    })
    .await
}

/// Event keys of trusted producers' jobs made before `cut`.
pub async fn event_keys(pool: &PgPool, cut: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    in_batches(|| async {
        Ok(sqlx::query!(
            "DELETE FROM job_event_key WHERE ctid IN (
                 SELECT ctid FROM job_event_key WHERE created_at < $1 LIMIT $2)",
            cut,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected())
    })
    .await
}

/// API keys and login tokens revoked or expired before `cut` (their claims and groups go with
/// them).
pub async fn credentials(pool: &PgPool, cut: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    in_batches(|| async {
        Ok(sqlx::query!(
            "DELETE FROM auth WHERE id IN (
                 SELECT id FROM auth
                 WHERE (state = 'revoked' AND coalesce(revoked_at, granted) < $1)
                    OR (seconds > 0 AND granted + seconds * interval '1 second' < $1)
                 LIMIT $2)",
            cut,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected())
    })
    .await
}

/// Logins started before `cut` and never finished.
pub async fn login_flows(pool: &PgPool, cut: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    in_batches(|| async {
        Ok(sqlx::query!(
            "DELETE FROM login_flow WHERE state_hash IN (
                 SELECT state_hash FROM login_flow WHERE created_at < $1 LIMIT $2)",
            cut,
            BATCH
        )
        .execute(pool)
        .await?
        .rows_affected())
    })
    .await
}
