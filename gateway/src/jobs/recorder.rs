//! Recording accepted jobs in groups: the accepts a gateway takes at the same moment share
//! one `INSERT` statement and one commit (`contract::group`: no timer, a lone accept is
//! written at once). Each caller is answered only once its own row is committed, exactly as
//! with one statement per job; a group the database refuses (a value Postgres cannot store in
//! one row, say) is written again row by row, so only the bad row's job fails.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use surge_contract::group::{GroupLimits, GroupWriter};

use crate::store::jobs::{self, NewJob};

/// Accepts waiting to be recorded, at most; past it an accept waits its turn.
const QUEUE: usize = 4_096;
/// Jobs in one statement, at most.
const MAX_GROUP: usize = 256;

/// What recording a job said.
pub type Recorded = Result<Option<DateTime<Utc>>, sqlx::Error>;

/// The handle the job service uses; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    writer: GroupWriter<NewJob, Recorded>,
}

impl Recorder {
    /// Starts the writer: at most `in_flight` statements at once (a share of the pool).
    pub fn start(
        pool: PgPool,
        lease: std::time::Duration,
        in_flight: usize,
        sizes: prometheus_client::metrics::histogram::Histogram,
    ) -> Self {
        let limits = GroupLimits {
            queue: QUEUE,
            max_group: MAX_GROUP,
            in_flight,
        };
        let writer = GroupWriter::start(limits, Some(sizes), move |group: Vec<NewJob>| {
            let pool = pool.clone();
            async move { record(&pool, group, lease).await }
        });
        Self { writer }
    }

    /// Records `job`: its creation time, or `None` when its owner already has a job with its
    /// idempotency key.
    pub async fn record(&self, job: NewJob) -> Recorded {
        self.writer
            .write(job)
            .await
            .unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn record(pool: &PgPool, group: Vec<NewJob>, lease: std::time::Duration) -> Vec<Recorded> {
    if group.len() > 1 {
        match jobs::insert_group(pool, &group, lease).await {
            Ok(created) => return created.into_iter().map(Ok).collect(),
            Err(e) => {
                tracing::debug!(error = %e, jobs = group.len(), "a group insert failed; recording its jobs one by one");
            }
        }
    }
    let mut answers = Vec::with_capacity(group.len());
    for job in &group {
        answers.push(jobs::insert_one(pool, job, lease).await);
    }
    answers
}
