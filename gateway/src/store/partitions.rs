//! The job table's partitions: ranges of job ids, hence of creation times (ids are UUIDv7).
//! Listed from the catalog, made ahead, dropped whole. The only dynamic SQL of the store: the
//! names and bounds are made here from times, never from input.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use surge_contract::job::JobId;
use uuid::Uuid;

/// One partition: ids from `from` (`None`: the first, from the lowest id) up to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub from: Option<Uuid>,
    pub to: Uuid,
}

impl Partition {
    /// When the last job it can hold was created.
    pub fn ends_at(&self) -> DateTime<Utc> {
        time_of(self.to)
    }
}

/// The creation time a job id says (its first 48 bits are Unix milliseconds).
pub fn time_of(id: Uuid) -> DateTime<Utc> {
    let b = id.as_bytes();
    let ms = b[..6]
        .iter()
        .fold(0_i64, |ms, byte| (ms << 8) | i64::from(*byte));
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Every partition of `job`, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Partition>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'job'::regclass",
    )
    .fetch_all(pool)
    .await?;
    let mut partitions: Vec<Partition> = rows
        .into_iter()
        .filter_map(|(name, bound)| {
            let (from, to) = parse_bound(&bound)?;
            Some(Partition { name, from, to })
        })
        .collect();
    partitions.sort_by_key(|p| p.to);
    Ok(partitions)
}

/// `FOR VALUES FROM ('…') TO ('…')` (or `FROM (MINVALUE)`) into its two ids.
fn parse_bound(bound: &str) -> Option<(Option<Uuid>, Uuid)> {
    let rest = bound.strip_prefix("FOR VALUES FROM (")?;
    let (from, rest) = rest.split_once(") TO (")?;
    let to = rest.strip_suffix(')')?;
    let id = |text: &str| text.trim_matches('\'').parse::<Uuid>().ok();
    let from = if from == "MINVALUE" {
        None
    } else {
        Some(id(from)?)
    };
    Some((from, id(to)?))
}

/// The name of the partition that starts at `start`.
pub fn name_at(start: DateTime<Utc>) -> String {
    format!("job_p{}", start.format("%Y%m%d%H"))
}

/// Makes a partition for the jobs created from `start` to `end`.
pub async fn create(
    pool: &PgPool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let (from, to) = (JobId::first_at(start).0, JobId::first_at(end).0);
    // Names and bounds are made above from times: no input reaches this text.
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF job FOR VALUES FROM ('{from}') TO ('{to}') \
         WITH (fillfactor = 70)",
        name_at(start)
    );
    sqlx::query(AssertSqlSafe(ddl)).execute(pool).await?;
    Ok(())
}

/// Whether any job of `partition` is still open (queued or running).
pub async fn has_open_jobs(pool: &PgPool, partition: &Partition) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM job_open
                          WHERE ($1::uuid IS NULL OR job_id >= $1) AND job_id < $2) AS "open!""#,
        partition.from,
        partition.to,
    )
    .fetch_one(pool)
    .await
}

/// When the last dead job of `partition` died, if it has any.
pub async fn last_death(
    pool: &PgPool,
    partition: &Partition,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT max(died_at) FROM dead_job WHERE ($1::uuid IS NULL OR job_id >= $1) AND job_id < $2",
        partition.from,
        partition.to,
    )
    .fetch_one(pool)
    .await
}

/// Rows in `partition`, as the planner's statistics estimate them (for the metrics: counting
/// would read the whole partition).
pub async fn estimated_rows(pool: &PgPool, partition: &Partition) -> Result<i64, sqlx::Error> {
    let rows: Option<f32> = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = $1")
        .bind(&partition.name)
        .fetch_optional(pool)
        .await?;
    Ok(rows.map_or(0, |r| r.max(0.0) as i64))
}

/// Drops `partition` whole, with the dead-job listings of its jobs: detached concurrently (the
/// hot table keeps serving), then dropped. Returns the dead-job listings removed.
pub async fn drop(pool: &PgPool, partition: &Partition) -> Result<u64, sqlx::Error> {
    let listed = sqlx::query!(
        "DELETE FROM dead_job WHERE ($1::uuid IS NULL OR job_id >= $1) AND job_id < $2",
        partition.from,
        partition.to,
    )
    .execute(pool)
    .await?
    .rows_affected();
    let name = &partition.name;
    // The name comes from the catalog, and only names this module makes are dropped.
    if !name.starts_with("job_p") || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(sqlx::Error::Protocol(format!(
            "not a job partition: {name}"
        )));
    }
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE job DETACH PARTITION {name} CONCURRENTLY"
    )))
    .execute(pool)
    .await?;
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {name}")))
        .execute(pool)
        .await?;
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_read_as_the_catalog_writes_them() {
        let (from, to) = parse_bound(
            "FOR VALUES FROM ('01a24dcc-d800-7000-8000-000000000000') TO ('01a252f3-3400-7000-8000-000000000000')",
        )
        .unwrap();
        assert_eq!(
            time_of(from.unwrap()),
            "2026-12-07T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            time_of(to),
            "2026-12-08T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let (from, _) =
            parse_bound("FOR VALUES FROM (MINVALUE) TO ('01a24dcc-d800-7000-8000-000000000000')")
                .unwrap();
        assert_eq!(from, None);
        assert_eq!(parse_bound("DEFAULT"), None);
    }

    #[test]
    fn a_partitions_name_says_where_it_starts() {
        let start: DateTime<Utc> = "2026-12-07T05:00:00Z".parse().unwrap();
        assert_eq!(name_at(start), "job_p2026120705");
    }
}
