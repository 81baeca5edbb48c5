//! Where the reads that tolerate lag go: the replica (`database.replica_url`) while it answers
//! and is at most `database.replica_max_lag_ms` behind, else the primary. A watcher measures the
//! replica every two seconds; a read the replica fails (it went away since) is run again on
//! the primary at once. Reads of one's own writes (a job just submitted, idempotency,
//! authentication) never come here: they use the primary pool directly.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Reads {
    primary: PgPool,
    replica: Option<PgPool>,
    max_lag: Duration,
    /// Why the replica does not serve now; `None` while it does.
    down: Mutex<Option<String>>,
}

impl Reads {
    pub fn new(primary: PgPool, replica: Option<PgPool>, max_lag: Duration) -> Self {
        let down = replica.as_ref().map(|_| "not measured yet".to_owned());
        Self {
            primary,
            replica,
            max_lag,
            down: Mutex::new(down),
        }
    }

    fn serving(&self) -> Option<&PgPool> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        self.replica.as_ref().filter(|_| down.is_none())
    }

    /// Why reads are on the primary although a replica is configured (for `/readyz`).
    pub fn replica_down(&self) -> Option<String> {
        self.replica.as_ref()?;
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn mark(&self, why: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match (&*down, &why) {
            (None, Some(why)) => {
                tracing::warn!(%why, "the replica does not serve: reads go to the primary")
            }
            (Some(_), None) => {
                tracing::info!("the replica serves the reads that tolerate lag again")
            }
            _ => {}
        }
        *down = why;
    }

    /// Runs a lag-tolerant read on the replica when it serves, else (or when it fails to
    /// answer) on the primary.
    pub async fn run<T, F, Fut>(&self, read: F) -> Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        if let Some(replica) = self.serving() {
            match read(replica.clone()).await {
                Err(e) if unreachable(&e) => self.mark(Some(format!("a read failed: {e}"))),
                done => return done,
            }
        }
        read(self.primary.clone()).await
    }

    /// Measures the replica every two seconds until `stop`.
    pub async fn watch(self: std::sync::Arc<Self>, stop: CancellationToken) {
        let Some(replica) = self.replica.clone() else {
            return;
        };
        let mut every = tokio::time::interval(Duration::from_secs(2));
        while stop.run_until_cancelled(every.tick()).await.is_some() {
            let lag = tokio::time::timeout(Duration::from_secs(2), lag(&replica)).await;
            self.mark(match lag {
                Ok(Ok(Some(lag))) if lag <= self.max_lag => None,
                Ok(Ok(Some(lag))) => Some(format!("{} ms behind", lag.as_millis())),
                Ok(Ok(None)) => Some("it is not a replica (not in recovery)".into()),
                Ok(Err(e)) => Some(format!("it does not answer: {e}")),
                Err(_) => Some("it does not answer within 2 s".into()),
            });
        }
    }
}

/// How far the replica is behind its primary (nothing to replay: none); `None` when it is
/// not a replica at all.
async fn lag(replica: &PgPool) -> Result<Option<Duration>, sqlx::Error> {
    let (recovering, seconds): (bool, Option<f64>) = sqlx::query_as(
        "SELECT pg_is_in_recovery(),
                CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END",
    )
    .fetch_one(replica)
    .await?;
    Ok(recovering.then(|| Duration::from_secs_f64(seconds.unwrap_or_default().max(0.0))))
}

/// Errors that say the replica is gone, not that the statement is wrong.
fn unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")))
}
