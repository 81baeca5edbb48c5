//! The job service: accepting a job — one INSERT, a waiter registered before the publish when
//! the caller waits, one confirmed publish — and answering what came of it, for every way in
//! (`POST /jobs/{function}`, `POST /events`, `/settings` writes); and queueing a dead job
//! again ([`replay`]). No HTTP types: the routes turn requests into a [`Submission`] and an
//! [`Answer`] into a response.

mod confirmations;
mod publish;
mod reconcile;
mod recorder;
mod replay;

use std::time::Duration;

use serde_json::Value;
use surge_contract::completion::Completion;
use surge_contract::job::{FunctionName, JobId, JobState};
use surge_contract::request::{JobRequest, Owner};
use surge_contract::telemetry::trace_context;
use tracing::Instrument as _;

pub use confirmations::Confirmations;
pub use reconcile::{ReconcilerStatus, run as reconcile};
pub use recorder::Recorder;
pub use replay::replay;

use crate::auth::Caller;
use crate::bus::Waiter;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::jobs::{self, JobRow, Keyed, NewJob};
use crate::store::unconfirmed;
use crate::views::JobView;
use publish::PublishFailure;

/// What a caller asks to run.
pub struct Submission<'a> {
    pub function: &'a FunctionName,
    pub input: Value,
    pub idempotency_key: Option<&'a str>,
    pub wait: Wait,
    pub repeat: Repeat,
}

/// Whether, and how long, the caller waits for the job's completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Answer as soon as the job is queued.
    No,
    /// Up to `http.sync_timeout_ms`.
    Default,
    /// Up to this (capped by `http.max_wait_ms`).
    UpTo(Duration),
}

/// When a repeated idempotency key returns the first job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Only for the same function and input; another request with the key is refused.
    SameRequest,
    /// Always: the key names the event (a CloudEvent's `source` + `id`).
    SameKey,
}

/// What came of a submission.
#[derive(Debug)]
pub enum Answer {
    /// The job finished: while the caller waited (with the completion that said so), or
    /// before this repeat of its idempotency key.
    Finished {
        job: JobView,
        completion: Option<Completion>,
    },
    /// Queued or running: the caller reads it later at `/jobs/{id}`.
    Pending(JobView),
}

/// Records and publishes a job for `caller`, and waits for it as the submission asks.
pub async fn submit(
    state: &AppState,
    caller: &Caller,
    submission: Submission<'_>,
) -> Result<Answer, ApiError> {
    let Submission {
        function,
        input,
        idempotency_key,
        wait,
        repeat,
    } = submission;
    let id = JobId::new();
    // The job's own span: the function's spans are its children (its context travels in the
    // event), so a trace reads request → publish → consume → handle → completion → reply.
    let publish_span = tracing::info_span!(
        "publish",
        otel.name = %format!("publish {function}"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.destination.name = %function,
        job_id = %id,
    );
    let trace = trace_context(&publish_span);
    let new = NewJob {
        id,
        owner: caller.entity_id,
        function: function.to_string(),
        idempotency_key: idempotency_key.map(str::to_owned),
        input: serde_json::to_string(&input)
            .map_err(|e| ApiError::Internal(e.into()))?
            .into(),
        trace_parent: trace.get("traceparent").cloned(),
        persona: caller.persona.clone(),
    };
    // Twice at most: a key whose job is gone is freed once, then the job is new.
    let mut tries = 0;
    let created_at = loop {
        tries += 1;
        if let Some(created_at) = state.recorder.record(new.clone()).await? {
            break created_at;
        }
        if tries > 2 {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "an idempotency key stays taken without a job"
            )));
        }
        let key = idempotency_key.unwrap_or_default();
        match jobs::by_idempotency_key(&state.pool, caller.entity_id, key).await? {
            Keyed::Job(first) => {
                return repeated(state, caller, *first, function, input, repeat, wait).await;
            }
            // The key's job is past retention: the key names nothing any more; a new job.
            Keyed::Gone => jobs::forget_key(&state.pool, caller.entity_id, key).await?,
            // The first use failed meanwhile (its publish was refused): try again.
            Keyed::Unused => {}
        }
    };
    tracing::Span::current().record("job_id", tracing::field::display(id));
    // Registered before publishing: a fast completion must find its caller.
    let waiter = (wait != Wait::No)
        .then(|| state.bus.wait_for(id).ok())
        .flatten();
    let request = JobRequest {
        time: Some(created_at),
        owner: Some(Owner {
            tenant: caller.tenant.clone(),
            entity: caller.entity_id,
        }),
        persona: caller.persona.clone(),
        trace,
        reply_to: waiter.as_ref().map(|_| state.bus.reply_queue().to_owned()),
        ..JobRequest::accepted(id, function.clone(), input)
    };
    match publish::publish(state, &request)
        .instrument(publish_span)
        .await
    {
        Ok(()) => state.confirmations.confirmed(id),
        Err(PublishFailure::Unconfirmed) => {
            // It may run: keep its record, so a run counts for its owner and a retry with the
            // same Idempotency-Key finds it instead of running the work twice. The record
            // stays unconfirmed: a repeat, or else the reconciler, publishes it again.
            return Err(ApiError::Unavailable(format!(
                "job {id} was recorded but the broker did not confirm it; look it up at /jobs/{id}, \
                 or retry with the same Idempotency-Key"
            )));
        }
        Err(PublishFailure::Refused) => {
            if let Err(db) = jobs::delete_unpublished(&state.pool, caller.entity_id, id).await {
                tracing::error!(error = %db, %id, "an unpublished job could not be removed");
            }
            // The broker's own words stay in the log (error.rs: no broker text to clients).
            return Err(ApiError::Unavailable(
                "the job could not be queued; nothing was accepted, retry".into(),
            ));
        }
    }
    state.metrics.accepted(function);
    let view = JobView::queued(id, function.as_str(), created_at);
    Ok(answer(state, view, waiter, wait).await)
}

/// A repeated idempotency key: the first job, if the repeat may have it. A first job whose
/// publish was never confirmed (its request got a `503`, or its gateway died before the
/// confirm) is published again at once, and waited for as the repeat asks.
async fn repeated(
    state: &AppState,
    caller: &Caller,
    first: JobRow,
    function: &FunctionName,
    input: Value,
    repeat: Repeat,
    wait: Wait,
) -> Result<Answer, ApiError> {
    let same = first.function == function.as_str() && first.input.as_ref() == Some(&input);
    if repeat == Repeat::SameRequest && !same {
        return Err(ApiError::IdempotencyKeyReused(format!(
            "job {} of function {}",
            first.id, first.function
        )));
    }
    let job = JobView::from(first);
    if job.state != JobState::Queued {
        // It started, so the broker had it: a publish that looked unconfirmed was delivered.
        // Its record says so now, rather than when the reconciler next looks.
        state.confirmations.confirmed(job.id);
    }
    if job.state.is_terminal() {
        return Ok(Answer::Finished {
            job,
            completion: None,
        });
    }
    if job.state != JobState::Queued || !unconfirmed::is_unconfirmed(&state.pool, job.id).await? {
        return Ok(Answer::Pending(job));
    }
    let waiter = (wait != Wait::No)
        .then(|| state.bus.wait_for(job.id).ok())
        .flatten();
    let request = JobRequest {
        time: Some(job.created_at),
        owner: Some(Owner {
            tenant: caller.tenant.clone(),
            entity: caller.entity_id,
        }),
        persona: caller.persona.clone(),
        trace: trace_context(&tracing::Span::current()),
        reply_to: waiter.as_ref().map(|_| state.bus.reply_queue().to_owned()),
        ..JobRequest::accepted(job.id, function.clone(), input)
    };
    tracing::info!(id = %job.id, "a repeat of a job whose publish was never confirmed publishes it again");
    match publish::publish(state, &request).await {
        Ok(()) => state.confirmations.confirmed(job.id),
        // Still in doubt: the reconciler keeps trying; the caller may repeat again.
        Err(_) => {
            return Err(ApiError::Unavailable(format!(
                "job {} is recorded but the broker did not take it yet; retry with the same Idempotency-Key",
                job.id
            )));
        }
    }
    Ok(answer(state, job, waiter, wait).await)
}

/// A queued job's answer: its completion when the caller waits for it in time.
async fn answer(state: &AppState, job: JobView, waiter: Option<Waiter>, wait: Wait) -> Answer {
    let Some(waiter) = waiter else {
        return Answer::Pending(job);
    };
    match wait_for(state, waiter, wait).await {
        Some(completion) => Answer::Finished {
            job: job.completed(&completion),
            completion: Some(completion),
        },
        None => Answer::Pending(job),
    }
}

/// Waits for a completion, at most what `wait` says capped by `http.max_wait_ms`; `None`
/// past it, or when the gateway starts shutting down.
async fn wait_for(state: &AppState, waiter: Waiter, wait: Wait) -> Option<Completion> {
    let asked = match wait {
        Wait::UpTo(asked) => asked,
        Wait::No | Wait::Default => state.http.sync_timeout(),
    };
    let timeout = asked.min(Duration::from_millis(state.http.max_wait_ms));
    tokio::select! {
        completion = waiter.wait(timeout) => completion,
        // Shutting down: nobody will deliver the completion here; the caller can poll.
        _ = state.shutdown.cancelled() => None,
    }
}
