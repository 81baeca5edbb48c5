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
    // A gateway's job is claimed by its id (its event's id), in one statement with the
    // others; a second delivery of one job in the group, one by one after it, so each counts
    // its attempt; a trusted producer's event by its key, recording it on first sight.
    let mut seen = HashSet::new();
    let by_id: Vec<Option<JobId>> = group
        .iter()
        .map(|c| gateway_job(&c.key).flatten().filter(|id| seen.insert(*id)))
        .collect();
    let ids: Vec<JobId> = by_id.iter().flatten().copied().collect();
    // A runtime serves one function: every claim of the group names it.
    let function = group
        .first()
        .map(|c| c.function.clone())
        .unwrap_or_default();
    let mut claimed = if ids.len() > 1 {
        store::claim_group(pool, &ids, &function)
            .await
            .ok()
            .map(Vec::into_iter)
    } else {
        None
    };
    let mut answers = Vec::with_capacity(group.len());
    for (claim, id) in group.iter().zip(by_id) {
        let in_group = match (&mut claimed, id) {
            (Some(records), Some(_)) => Some(records.next().flatten()),
            _ => None,
        };
        answers.push(match (in_group, gateway_job(&claim.key)) {
            (Some(Some(job)), _) => Ok(job),
            // A gateway's event whose job is not recorded for this function (a forged one, or
            // one older than the job's retention): no job of a gateway is ever recorded by
            // its delivery.
            (Some(None), _) | (None, Some(None)) => Err(sqlx::Error::RowNotFound),
            (None, Some(Some(id))) => store::claim_group(pool, &[id], &claim.function)
                .await
                .and_then(|mut jobs| jobs.pop().flatten().ok_or(sqlx::Error::RowNotFound)),
            (None, None) => {
                let delivered = Delivered {
                    function: &claim.function,
                    event_source: &claim.key.source,
                    event_id: &claim.key.id,
                    input: &claim.input,
                    trace_parent: claim.trace_parent.as_deref(),
                };
                store::claim_produced(pool, &delivered).await
            }
        });
    }
    answers
}

/// For an event from a gateway's source, its job id (`None` inside when its id is none);
/// `None` for a trusted producer's event.
fn gateway_job(key: &EventKey) -> Option<Option<JobId>> {
    (key.source == surge_contract::job::GATEWAY_SOURCE).then(|| key.id.parse().ok())
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
