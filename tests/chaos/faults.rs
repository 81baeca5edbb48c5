//! The faults, each as it happens in production, and the wait until jobs flow again.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::env::Services;
use crate::system::System;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// A function replica SIGKILLed mid-job, started again a second later.
    WorkerKill,
    /// Every broker connection closed at once.
    ConnectionsClosed,
    /// RabbitMQ stopped for 3 s (`rabbitmqctl stop_app`, `start_app`).
    BrokerRestart,
    /// PostgreSQL restarted (fast shutdown).
    PostgresRestart,
    /// A gateway replica SIGKILLed, started again a second later.
    GatewayKill,
    /// A function replica scaled down mid-job (SIGTERM, drain), started again.
    ScaleDown,
    /// The broker node leading the function's queue SIGKILLed (a cluster only), started again
    /// once jobs flow.
    LeaderKill,
}

impl Fault {
    pub fn all(cluster: bool) -> Vec<Self> {
        let mut all = vec![
            Self::WorkerKill,
            Self::ConnectionsClosed,
            Self::BrokerRestart,
            Self::PostgresRestart,
            Self::GatewayKill,
            Self::ScaleDown,
        ];
        if cluster {
            all.push(Self::LeaderKill);
        }
        all
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::WorkerKill => "worker SIGKILLed mid-job",
            Self::ConnectionsClosed => "broker connections closed",
            Self::BrokerRestart => "RabbitMQ stopped 3 s and started",
            Self::PostgresRestart => "PostgreSQL restarted",
            Self::GatewayKill => "gateway SIGKILLed",
            Self::ScaleDown => "function scaled down mid-job",
            Self::LeaderKill => "queue leader node SIGKILLed",
        }
    }
}

/// Injects `fault`; returns what must be undone once jobs flow again (a killed node).
pub async fn inject(
    fault: Fault,
    services: &Services,
    system: &mut System,
    queue: &str,
) -> anyhow::Result<Option<usize>> {
    match fault {
        Fault::WorkerKill => {
            system.kill_worker(0);
            tokio::time::sleep(Duration::from_secs(1)).await;
            system.start_worker(0).await?;
        }
        Fault::ConnectionsClosed => services.close_connections()?,
        Fault::BrokerRestart => {
            services.stop_app(0)?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            services.start_app(0)?;
        }
        Fault::PostgresRestart => services.restart_postgres()?,
        Fault::GatewayKill => {
            system.kill_gateway(0);
            tokio::time::sleep(Duration::from_secs(1)).await;
            system.start_gateway(0).await?;
        }
        Fault::ScaleDown => {
            system.scale_down_worker(1).await?;
            system.start_worker(1).await?;
        }
        Fault::LeaderKill => {
            let leader = services.leader_of(queue).await?;
            services.kill_node(leader)?;
            return Ok(Some(leader));
        }
    }
    Ok(None)
}

/// How long after `since` a job accepted after `since` finished: jobs flow again. `None`
/// past `limit`.
pub async fn healed(
    pool: &PgPool,
    since: Instant,
    at: DateTime<Utc>,
    limit: Duration,
) -> Option<Duration> {
    while since.elapsed() < limit {
        let flowing: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM job WHERE created_at > $1 AND state = 'succeeded' LIMIT 1",
        )
        .bind(at)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
        if flowing.is_some() {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
