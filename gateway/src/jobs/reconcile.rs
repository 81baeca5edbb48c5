//! The reconciler: the job record drives delivery. Every gateway replica, every
//! `delivery.reconcile_interval_ms`, takes the jobs whose publish is still unconfirmed past
//! their due time (`store::unconfirmed::take_due`: one replica per job, at most
//! `delivery.batch` per pass) and publishes each again from its record — a lost confirm, a
//! broker restart or a gateway killed between the INSERT and the confirm strands nothing. A
//! job that is no longer `queued` (claimed, finished, deleted) is never published again; one
//! that cannot be published is due again after a backoff, never in a loop. The runtime runs a
//! job id once, so a second copy of a job the broker did hold is harmless.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use serde_json::Value;
use surge_contract::job::{FunctionName, GATEWAY_SOURCE, JobState};
use surge_contract::request::{JobRequest, Owner};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::publish;
use crate::state::AppState;
use crate::store::unconfirmed::{self, DueJob};

/// Publishes of one pass in flight at once.
const CONCURRENCY: usize = 16;
/// Failed passes in a row after which the replica says it is not ready.
const FAILING_PASSES: u32 = 3;

/// How the reconciler is doing, for `/readyz` and the logs.
#[derive(Debug, Default)]
pub struct ReconcilerStatus {
    inner: Mutex<Health>,
}

#[derive(Debug, Default, Clone)]
struct Health {
    failed_in_a_row: u32,
    failing_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl ReconcilerStatus {
    /// Why the replica should not take traffic, when its passes keep failing.
    pub fn failing(&self) -> Option<String> {
        let health = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (health.failed_in_a_row >= FAILING_PASSES).then(|| {
            format!(
                "the reconciler has failed {} passes in a row since {}: {}",
                health.failed_in_a_row,
                health
                    .failing_since
                    .map(|t| surge_contract::binding::format_time(&t))
                    .unwrap_or_default(),
                health.last_error.unwrap_or_default()
            )
        })
    }

    fn passed(&self) {
        let mut health = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if health.failed_in_a_row > 0 {
            tracing::info!(
                failed_passes = health.failed_in_a_row,
                "the reconciler works again"
            );
        }
        *health = Health::default();
    }

    fn failed(&self, error: String) {
        let mut health = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        health.failed_in_a_row += 1;
        health.failing_since.get_or_insert_with(Utc::now);
        tracing::warn!(%error, failed_passes = health.failed_in_a_row, "a reconciler pass failed; jobs in doubt wait for the next");
        health.last_error = Some(error);
    }
}

/// Runs passes until `stop`.
pub async fn run(state: AppState, stop: CancellationToken) {
    let settings = state.delivery.clone();
    let mut every = tokio::time::interval(settings.reconcile_interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.run_until_cancelled(every.tick()).await.is_some() {
        let pass = pass(&state).instrument(tracing::info_span!("reconcile"));
        match stop.run_until_cancelled(pass).await {
            None => return,
            Some(Ok(())) => state.reconciler.passed(),
            Some(Err(e)) => state.reconciler.failed(e),
        }
    }
}

/// One pass: takes the due jobs, publishes those still queued, forgets the rest.
async fn pass(state: &AppState) -> Result<(), String> {
    let settings = &state.delivery;
    let timeout = Duration::from_secs(30);
    let due = tokio::time::timeout(
        timeout,
        unconfirmed::take_due(
            &state.pool,
            settings.batch,
            settings.lease(),
            settings.max_backoff(),
        ),
    )
    .await
    .map_err(|_| "taking due jobs timed out".to_owned())?
    .map_err(|e| format!("taking due jobs failed: {e}"))?;
    if due.is_empty() {
        return count(state).await;
    }
    let settled: Vec<uuid::Uuid> = futures_util::stream::iter(due)
        .map(|job| settle(state, job))
        .buffer_unordered(CONCURRENCY)
        .filter_map(|settled| async move { settled })
        .collect()
        .await;
    if !settled.is_empty() {
        tokio::time::timeout(timeout, unconfirmed::forget(&state.pool, &settled))
            .await
            .map_err(|_| "forgetting settled jobs timed out".to_owned())?
            .map_err(|e| format!("forgetting settled jobs failed: {e}"))?;
    }
    count(state).await
}

/// Counts the jobs still in doubt, for the metrics.
async fn count(state: &AppState) -> Result<(), String> {
    let (all, _due) =
        tokio::time::timeout(Duration::from_secs(30), unconfirmed::counts(&state.pool))
            .await
            .map_err(|_| "counting unconfirmed jobs timed out".to_owned())?
            .map_err(|e| format!("counting unconfirmed jobs failed: {e}"))?;
    state.metrics.unconfirmed.set(all);
    Ok(())
}

/// Publishes a due job again if it is still queued. `Some(id)`: nothing is in doubt any
/// more (confirmed now, or no longer queued); `None`: due again later.
async fn settle(state: &AppState, job: DueJob) -> Option<uuid::Uuid> {
    let id = job.id;
    if job.state != Some(JobState::Queued) {
        return Some(id.0);
    }
    let Some((function, request)) = request_of(job) else {
        tracing::warn!(%id, "an unconfirmed job's record cannot make a request; it is not published");
        return Some(id.0);
    };
    let span = tracing::info_span!(
        "republish",
        otel.name = %format!("republish {function}"),
        otel.kind = "producer",
        job_id = %id,
    );
    surge_contract::telemetry::set_parent(&span, &request.trace);
    match publish::publish(state, &request).instrument(span).await {
        Ok(()) => {
            tracing::info!(%id, %function, "a job whose publish was never confirmed was published again");
            state.metrics.republished(&function, true);
            Some(id.0)
        }
        Err(failure) => {
            tracing::warn!(%id, %function, ?failure, "publishing an unconfirmed job again failed; it is due again after the backoff");
            state.metrics.republished(&function, false);
            None
        }
    }
}

/// A due job's request, from its record.
fn request_of(job: DueJob) -> Option<(FunctionName, JobRequest)> {
    let function = FunctionName::parse(job.function.as_deref()?).ok()?;
    let trace = job
        .trace_parent
        .map(|tp| [(surge_contract::job::ext::TRACEPARENT.to_owned(), tp)].into())
        .unwrap_or_default();
    let request = JobRequest {
        job_id: Some(job.id),
        // Only a gateway's jobs are in doubt (a trusted producer's are recorded when the
        // runtime takes them), but the record says.
        source: job
            .event_source
            .unwrap_or_else(|| GATEWAY_SOURCE.to_owned()),
        event_id: job.event_id.unwrap_or_else(|| job.id.to_string()),
        function: function.clone(),
        time: job.created_at,
        input: job.input.unwrap_or(Value::Null),
        owner: job
            .tenant
            .zip(job.owner_id)
            .map(|(tenant, entity)| Owner { tenant, entity }),
        persona: job.persona,
        trace,
        reply_to: None,
    };
    Some((function, request))
}
