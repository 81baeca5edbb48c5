//! Keeping the database's growth bounded, on one gateway replica at a time: every
//! `maintenance.interval_ms` the replica that takes a session advisory lock makes the job
//! table's partitions `jobs.partitions_ahead_hours` ahead, drops whole the partitions past
//! retention (never one holding an open job, or a dead job within `jobs.dead_retention_s`), and
//! removes the keys, spent credentials and login flows past theirs. Time is an argument, so
//! tests can run a pass as if days had gone by. `surge migrate` makes the partitions too.

use std::time::Duration;

use chrono::{DateTime, DurationRound as _, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use surge_contract::config::JobSettings;
use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;
use crate::store::{partitions, retention};

/// `maintenance.*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// How often a replica tries to run a pass (one replica runs it at a time).
    pub interval_ms: u64,
    /// Revoked or expired API keys and login tokens are removed this long after they stopped
    /// working (so `GET /tokens` still shows a recent revocation).
    pub credential_grace_s: u64,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            interval_ms: 600_000,
            credential_grace_s: 7 * 86_400,
        }
    }
}

/// What a pass keeps and for how long.
#[derive(Debug, Clone)]
pub struct Policy {
    pub jobs: JobSettings,
    pub credential_grace: Duration,
    /// Logins not finished within this are spent (`identity.flow_ttl_s`).
    pub flow_ttl: Duration,
}

/// The advisory lock that makes one replica at a time run a pass ("surge-maintenance").
const LOCK: i64 = 0x7375_7267_655f_6d74;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pass {
    pub partitions_made: usize,
    /// Partitions dropped, with the job rows they held (estimated).
    pub partitions_dropped: Vec<(String, i64)>,
    /// Partitions past retention kept for an open job or a dead job within its retention.
    pub partitions_kept: Vec<String>,
    pub dead_listings: u64,
    pub idempotency_keys: u64,
    pub event_keys: u64,
    pub credentials: u64,
    pub login_flows: u64,
    /// How far ahead of `now` the newest partition reaches.
    pub ahead: chrono::Duration,
}

/// Makes partitions so that jobs created up to `now + jobs.partitions_ahead_hours` have one.
pub async fn make_partitions(
    pool: &PgPool,
    jobs: &JobSettings,
    now: DateTime<Utc>,
) -> Result<(usize, chrono::Duration), sqlx::Error> {
    let step = chrono::Duration::hours(i64::from(jobs.partition_hours.max(1)));
    let horizon = now + chrono::Duration::hours(i64::from(jobs.partitions_ahead_hours));
    let existing = partitions::list(pool).await?;
    let mut start = existing.last().map_or_else(
        || now.duration_trunc(step).unwrap_or(now),
        partitions::Partition::ends_at,
    );
    let mut made = 0;
    while start < horizon {
        partitions::create(pool, start, start + step).await?;
        start += step;
        made += 1;
    }
    Ok((made, start - now))
}

/// One pass as of `now`, if this replica gets the lock (`None`: another runs it).
pub async fn pass(
    pool: &PgPool,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Option<Pass>, sqlx::Error> {
    let mut lock = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Ok(None);
    }
    let done = run(pool, policy, now).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut *lock)
        .await;
    done.map(Some)
}

async fn run(pool: &PgPool, policy: &Policy, now: DateTime<Utc>) -> Result<Pass, sqlx::Error> {
    let jobs = &policy.jobs;
    let (partitions_made, ahead) = make_partitions(pool, jobs, now).await?;
    let mut pass = Pass {
        partitions_made,
        ahead,
        ..Pass::default()
    };
    let keep_jobs = chrono::Duration::from_std(jobs.partition_retention()).unwrap_or_default();
    let keep_dead = chrono::Duration::from_std(jobs.dead_retention()).unwrap_or_default();
    for partition in partitions::list(pool).await? {
        if partition.ends_at() + keep_jobs > now {
            continue;
        }
        let dead_within = partitions::last_death(pool, &partition)
            .await?
            .is_some_and(|died| died + keep_dead > now);
        if dead_within || partitions::has_open_jobs(pool, &partition).await? {
            pass.partitions_kept.push(partition.name);
            continue;
        }
        let rows = partitions::estimated_rows(pool, &partition).await?;
        pass.dead_listings += partitions::drop(pool, &partition).await?;
        pass.partitions_dropped.push((partition.name, rows));
    }
    let keys_cut = now - keep_jobs;
    pass.idempotency_keys = retention::idempotency_keys(pool, keys_cut).await?;
    pass.event_keys = retention::event_keys(pool, keys_cut).await?;
    let ago = |d: Duration| now - chrono::Duration::from_std(d).unwrap_or_default();
    pass.credentials = retention::credentials(pool, ago(policy.credential_grace)).await?;
    pass.login_flows = retention::login_flows(pool, ago(policy.flow_ttl)).await?;
    Ok(pass)
}

/// Runs passes until `stop`: at once, then every `interval_ms`.
pub async fn run_every(
    pool: PgPool,
    policy: Policy,
    every: Duration,
    metrics: std::sync::Arc<GatewayMetrics>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(every.max(Duration::from_secs(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.run_until_cancelled(every.tick()).await.is_some() {
        let started = std::time::Instant::now();
        match pass(&pool, &policy, Utc::now()).await {
            Ok(Some(done)) => {
                metrics.maintenance(&done);
                tracing::info!(
                    made = done.partitions_made,
                    dropped = ?done.partitions_dropped,
                    kept = ?done.partitions_kept,
                    keys = done.idempotency_keys + done.event_keys,
                    credentials = done.credentials,
                    flows = done.login_flows,
                    took = ?started.elapsed(),
                    "maintenance pass"
                );
            }
            Ok(None) => {}
            Err(e) => {
                metrics.maintenance_failed();
                tracing::error!(error = %e, "a maintenance pass failed: partitions may run out (see SurgeJobPartitionsRunningOut)");
            }
        }
    }
}
