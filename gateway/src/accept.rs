//! Accepting a job: the one path every way in (`POST /jobs/{function}`, `POST /events`) takes.
//! One INSERT, a waiter registered before the publish when the caller waits, one confirmed
//! publish; a job whose publish fails is removed again, so nothing half-accepted remains.

use std::time::Duration;

use serde_json::Value;
use surge_contract::job::{FunctionName, GATEWAY_SOURCE, JobId};
use surge_contract::telemetry::trace_context;

use tracing::Instrument as _;

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
    // The job's own span: the function's spans are its children (its context travels in the
    // event), so a trace reads request → publish → consume → handle → completion → reply.
    let publish = tracing::info_span!(
        "publish",
        otel.name = %format!("publish {function}"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.destination.name = %function,
        job_id = %id,
    );
    let trace = trace_context(&publish);
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
        owner: Some((&caller.tenant, caller.entity_id)),
        origin: None,
        created_at,
        input,
        trace,
        reply_to: waiter.as_ref().map(|_| state.bus.reply_queue()),
    })
    .map_err(|e| ApiError::Internal(e.into()))?;
    let started = std::time::Instant::now();
    let mut published = state
        .bus
        .publish_job(function, &message)
        .instrument(publish.clone())
        .await;
    let mut unconfirmed = false;
    if let Err(e) = &published
        && e.may_have_been_queued()
    {
        // The broker may hold the job (a confirm that timed out, a connection lost after the
        // send). Sending it again is safe: the runtime runs a job id once.
        tracing::warn!(error = %e, %id, "a job's publish is unconfirmed; sending it again");
        unconfirmed = true;
        state.bus.wait_connected(state.bus.publish_timeout()).await;
        published = state
            .bus
            .publish_job(function, &message)
            .instrument(publish.clone())
            .await;
    }
    if let Err(e) = published {
        drop(waiter);
        tracing::warn!(error = %e, %id, "publishing a job failed");
        if unconfirmed {
            // It may run: keep its record, so a run counts for its owner and a retry with the
            // same Idempotency-Key finds it instead of running the work twice.
            return Err(ApiError::Unavailable(format!(
                "job {id} was recorded but the broker did not confirm it; look it up at /jobs/{id}, \
                 or retry with the same Idempotency-Key"
            )));
        }
        if let Err(db) = jobs::delete_unpublished(&state.pool, caller.entity_id, id).await {
            tracing::error!(error = %db, %id, "an unpublished job could not be removed");
        }
        // The broker's own words stay in the log (error.rs: no broker text to clients).
        return Err(ApiError::Unavailable(
            "the job could not be queued; nothing was accepted, retry".into(),
        ));
    }
    state.activity.published(function);
    state.metrics.process.confirmed("jobs", started.elapsed());
    state.metrics.accepted(function);
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
