//! Publishing a finished job's completion (`surge_contract::completion::Completion`), built
//! from the job's record — never from the handler's memory — so a redelivery republishes
//! exactly what was first sent.

use chrono::Utc;
use lapin::Channel;
use surge_contract::broker::{PublishError, publish_confirmed, publish_transient};
use surge_contract::completion::Completion;
use surge_contract::job::{FunctionName, JobState};
use surge_contract::request::Owner;
use surge_contract::telemetry::trace_context;
use surge_contract::topology::Topology;

use tracing::Instrument as _;

use crate::store::JobRecord;

/// Publishes a finished job's completion to `surge.events` (persistent; returns once the
/// broker confirmed it: the durable announcement) and, when a caller waits, to its replica's
/// reply queue — transient and not waited for: it only wakes the caller, who reads the record
/// if it is lost.
pub async fn publish(
    channel: &Channel,
    topology: &Topology,
    function: &FunctionName,
    job: &JobRecord,
    reply_to: Option<&str>,
    sender: Option<&str>,
    timeout: std::time::Duration,
) -> Result<(), PublishError> {
    if !job.state.is_terminal() {
        return Ok(());
    }
    let span = tracing::info_span!(
        "completion",
        otel.name = %format!("publish {function} completion"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
    );
    // Built inside its span, so the completion carries the span's context to the reply.
    let completion = span.in_scope(|| of_record(function, job));
    let message = completion
        .to_message()
        .map_err(|e| PublishError::Encode(e.to_string()))?
        .sent_by(sender);
    let exchange = topology.events_exchange();
    let key = completion.routing_key();
    async {
        // The reply queue may be gone (its gateway died): not mandatory, the caller can poll.
        if let Some(queue) = reply_to
            && let Err(e) = publish_transient(channel, "", queue, &message).await
        {
            tracing::debug!(error = %e, "a reply was not sent; its caller reads the record");
        }
        publish_confirmed(channel, &exchange, &key, &message, false, timeout).await
    }
    .instrument(span)
    .await
}

/// The completion of a finished job, from its record.
fn of_record(function: &FunctionName, job: &JobRecord) -> Completion {
    let data = match job.state {
        JobState::Succeeded => job.result.clone(),
        _ => job.error.clone(),
    };
    Completion {
        job_id: job.id,
        function: function.clone(),
        state: job.state,
        attempts: job.attempts,
        finished_at: job.finished_at.unwrap_or_else(Utc::now),
        data: Some(data.unwrap_or_default()),
        owner: job
            .tenant
            .clone()
            .zip(job.owner_id)
            .map(|(tenant, entity)| Owner { tenant, entity }),
        trace: trace_context(&tracing::Span::current()),
    }
}
