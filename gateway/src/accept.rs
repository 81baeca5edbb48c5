//! Accepting a job: the one path every way in (`POST /jobs/{function}`, `POST /events`) takes.
//! One INSERT, a waiter registered before the publish when the caller waits, one confirmed
//! publish; a job whose publish fails is removed again, so nothing half-accepted remains.

use std::time::Duration;

use serde_json::Value;
use surge_contract::job::{FunctionName, GATEWAY_SOURCE, JobId};
use surge_contract::telemetry::trace_context;

use crate::auth::Caller;
use crate::bus::{Completion, JobRequest, Waiter, job_message};
use crate::error::ApiError;
use crate::routes::views::JobView;
use crate::state::AppState;
use crate::store::jobs::{self, JobRow, NewJob};

/// What a caller asks to run.
pub struct Submission<'a> {
    pub function: &'a FunctionName,
    pub input: Value,
    pub idempotency_key: Option<&'a str>,
    /// Whether the caller will wait for the completion (registers a waiter).
    pub wait: bool,
}

/// What came of a submission.
pub enum Accepted {
    /// A new job, queued; with a waiter when the caller waits and the map had room.
    New {
        view: JobView,
        waiter: Option<Waiter>,
    },
    /// The idempotency key was used before: the first job, and the submitted input handed
    /// back so the caller can compare the two without having cloned it up front.
    Repeat { first: JobRow, input: Value },
}

/// Records and publishes a job for `caller`.
pub async fn accept(
    state: &AppState,
    caller: &Caller,
    submission: Submission<'_>,
) -> Result<Accepted, ApiError> {
    let Submission {
        function,
        input,
        idempotency_key,
        wait,
    } = submission;
    let id = JobId::new();
    let trace = trace_context(&tracing::Span::current());
    let new = NewJob {
        id,
        owner: caller.entity_id,
        function: function.as_str(),
        idempotency_key,
        event_source: GATEWAY_SOURCE,
        input: &input,
        trace_parent: trace.get("traceparent").map(String::as_str),
    };
    let Some(created_at) = jobs::insert(&state.pool, &new).await? else {
        let key = idempotency_key.unwrap_or_default();
        let first = jobs::by_idempotency_key(&state.pool, caller.entity_id, key)
            .await?
            .ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("idempotency conflict without a job"))
            })?;
        return Ok(Accepted::Repeat { first, input });
    };
    tracing::Span::current().record("job_id", tracing::field::display(id));
    // Registered before publishing: a fast completion must find its caller.
    let waiter = wait.then(|| state.bus.wait_for(id).ok()).flatten();
    let message = job_message(JobRequest {
        id,
        function,
        tenant: &caller.tenant,
        entity: caller.entity_id,
        created_at,
        input,
        trace,
        reply_to: waiter.as_ref().map(|_| state.bus.reply_queue()),
    })
    .map_err(|e| ApiError::Internal(e.into()))?;
    if let Err(e) = state.bus.publish_job(function, message).await {
        drop(waiter);
        if let Err(db) = jobs::delete_unpublished(&state.pool, caller.entity_id, id).await {
            tracing::error!(error = %db, %id, "an unpublished job could not be removed");
        }
        tracing::warn!(error = %e, "publishing a job failed");
        return Err(ApiError::Unavailable(format!(
            "the job could not be queued ({e}); nothing was accepted, retry"
        )));
    }
    state.activity.published(function);
    Ok(Accepted::New {
        view: JobView::queued(id, function.as_str(), created_at),
        waiter,
    })
}

/// Waits for a completion, at most `asked` (or the configured default) capped by
/// `http.max_wait_ms`; `None` past it, or when the gateway starts shutting down.
pub async fn wait(state: &AppState, waiter: Waiter, asked: Option<Duration>) -> Option<Completion> {
    let timeout = asked
        .unwrap_or(state.http.sync_timeout())
        .min(Duration::from_millis(state.http.max_wait_ms));
    tokio::select! {
        completion = waiter.wait(timeout) => completion,
        // Shutting down: nobody will deliver the completion here; the caller can poll.
        _ = state.shutdown.cancelled() => None,
    }
}
