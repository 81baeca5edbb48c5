//! Queueing a dead job again under its own id: its record is `queued` again with its attempts
//! reset and its errors kept, so the runtime's exactly-once rules still hold, and a replayed
//! job that dies again is listed again with both deaths in `attempt_errors`.

use serde_json::Value;
use surge_contract::job::{FunctionName, JobId};
use surge_contract::request::{JobRequest, Owner};
use surge_contract::telemetry::trace_context;

use super::publish;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::dead_jobs;

/// Queues one dead job of `function` (one the caller may see) again: its record first (in a
/// transaction whose row lock keeps a worker from seeing it before the commit), then the
/// confirmed publish, then the commit. A failed publish rolls back: the job stays dead and
/// listed (a copy the broker took after all is answered from the dead record, never run).
/// `false`: no such dead job.
pub async fn replay(
    state: &AppState,
    caller: &Caller,
    function: &FunctionName,
    id: JobId,
) -> Result<bool, ApiError> {
    let mut tx = state.pool.begin().await?;
    let Some(job) = dead_jobs::revive(&mut tx, state.viewer(caller), function.as_str(), id).await?
    else {
        return Ok(false);
    };
    let request = JobRequest {
        job_id: Some(job.id),
        // A trusted producer's job keeps the identity the runtime finds it by.
        source: job.event_source,
        event_id: job.event_id,
        function: function.clone(),
        // The event's time is the replay's: the time the job lay dead is not queue wait.
        time: Some(chrono::Utc::now()),
        input: job.input.unwrap_or(Value::Null),
        owner: job
            .tenant
            .zip(job.owner_id)
            .map(|(tenant, entity)| Owner { tenant, entity }),
        persona: job.persona,
        trace: trace_context(&tracing::Span::current()),
        reply_to: None,
    };
    if let Err(failure) = publish::publish(state, &request).await {
        tracing::warn!(?failure, %id, "publishing a replay failed; the job stays dead");
        return Err(ApiError::Unavailable(format!(
            "job {id} could not be queued again; it is still dead, retry"
        )));
    }
    tx.commit().await?;
    tracing::info!(%id, %function, admin = %caller.entity_id, "dead job replayed");
    Ok(true)
}
