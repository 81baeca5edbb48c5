//! The runtime's group commits (`contract::group`): the claims of deliveries that arrive
//! together share one statement, and so do the results of handlers that wrote nothing else.
//! Each delivery is answered on its own: a group the database refuses is written again one by
//! one, so one bad job fails only itself.

use std::collections::HashSet;

use sqlx::PgPool;
use surge_contract::group::{GroupLimits, GroupWriter};
use surge_contract::job::JobId;

use crate::store::{self, Delivered, EventKey, Finished, JobRecord};

/// A delivery's claim, owned (it crosses to the writer's task).
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: EventKey,
    pub function: String,
    pub input: std::sync::Arc<serde_json::Value>,
    pub trace_parent: Option<String>,
}

pub type Claimed = Result<JobRecord, sqlx::Error>;
pub type Succeeded = Result<Finished, sqlx::Error>;

/// The two writers of one function process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Groups {
    claims: GroupWriter<Claim, Claimed>,
    results: GroupWriter<(JobId, String), Succeeded>,
}

impl Groups {
    /// At most `in_flight` statements of each kind at once, groups of at most `max_group`
    /// (the function's concurrency: no more deliveries can be waiting).
    pub fn start(
        pool: &PgPool,
        in_flight: usize,
        max_group: usize,
        metrics: &surge_contract::metrics::ProcessMetrics,
    ) -> Self {
        let limits = GroupLimits {
            queue: max_group.max(1) * 2,
            max_group,
            in_flight,
        };
        let claim_pool = pool.clone();
        let claims = GroupWriter::start(
            limits,
            Some(metrics.group_sizes("claims")),
            move |group: Vec<Claim>| {
                let pool = claim_pool.clone();
                async move { claim_group(&pool, group).await }
            },
        );
        let result_pool = pool.clone();
        let results = GroupWriter::start(
            limits,
            Some(metrics.group_sizes("results")),
            move |group: Vec<(JobId, String)>| {
                let pool = result_pool.clone();
                async move { succeed_group(&pool, group).await }
            },
        );
        Self { claims, results }
    }

    /// Claims a delivery's job (see `store::claim`).
    pub async fn claim(&self, claim: Claim) -> Claimed {
        self.claims
            .write(claim)
            .await
            .unwrap_or(Err(sqlx::Error::PoolClosed))
    }

    /// Records the result of a handler that wrote nothing else (see `store::succeed`).
    pub async fn succeed(&self, job: JobId, result: String) -> Succeeded {
        self.results
            .write((job, result))
            .await
            .unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

async fn claim_group(pool: &PgPool, group: Vec<Claim>) -> Vec<Claimed> {
    // Two deliveries of one job in one group (a duplicate publish) are claimed one after the
    // other, so each counts its attempt.
    let mut seen = HashSet::new();
    let grouped: Vec<bool> = group.iter().map(|c| seen.insert(c.key.clone())).collect();
    let keys: Vec<EventKey> = group
        .iter()
        .zip(&grouped)
        .filter(|(_, g)| **g)
        .map(|(c, _)| c.key.clone())
        .collect();
    let mut found = if keys.len() > 1 {
        store::claim_recorded_group(pool, &keys)
            .await
            .map(|records| records.into_iter())
            .ok()
    } else {
        None
    };
    let mut answers = Vec::with_capacity(group.len());
    for (claim, in_group) in group.iter().zip(grouped) {
        let recorded = match (&mut found, in_group) {
            (Some(records), true) => records.next().flatten(),
            _ => None,
        };
        answers.push(match recorded {
            Some(job) => Ok(job),
            // Not in the statement (a single delivery, a duplicate, a failed group) or not
            // recorded yet: the claim that also records a trusted producer's event.
            None => {
                let delivered = Delivered {
                    function: &claim.function,
                    event_source: &claim.key.source,
                    event_id: &claim.key.id,
                    input: &claim.input,
                    trace_parent: claim.trace_parent.as_deref(),
                };
                store::claim(pool, &delivered).await
            }
        });
    }
    answers
}

async fn succeed_group(pool: &PgPool, group: Vec<(JobId, String)>) -> Vec<Succeeded> {
    if group.len() > 1
        && let Ok(finished) = store::succeed_group(pool, &group).await
    {
        return finished.into_iter().map(Ok).collect();
    }
    let mut answers = Vec::with_capacity(group.len());
    for result in &group {
        answers.push(
            store::succeed_group(pool, std::slice::from_ref(result))
                .await
                .map(|mut f| f.pop().flatten()),
        );
    }
    answers
}
