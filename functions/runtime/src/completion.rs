//! Completion events: `<request type>.completed` with the result, or `.failed` with a problem,
//! built from the job's record (never from the handler's memory), so a redelivery republishes
//! exactly what was first sent. The event id is the job id: consumers can deduplicate.

use chrono::Utc;
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use lapin::Channel;
use surge_contract::binding;
use surge_contract::broker::{PublishError, publish_confirmed};
use surge_contract::job::{FunctionName, completion_routing_key, completion_type, ext};
use surge_contract::telemetry::trace_context;
use surge_contract::topology::Topology;

use tracing::Instrument as _;

use crate::store::JobRecord;

/// Where a completion goes besides `surge.events`.
pub struct ReplyTo {
    pub queue: String,
}

/// Publishes a finished job's completion to `surge.events` and, when a caller waits, to its
/// replica's reply queue; returns once the broker confirmed both.
pub async fn publish(
    channel: &Channel,
    topology: &Topology,
    function: &FunctionName,
    request: &Event,
    job: &JobRecord,
    reply_to: Option<&ReplyTo>,
    timeout: std::time::Duration,
) -> Result<(), PublishError> {
    let Some(outcome) = job.state.outcome() else {
        return Ok(());
    };
    let span = tracing::info_span!(
        "completion",
        otel.name = %format!("publish {function} completion"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
    );
    // Built inside its span, so the completion carries the span's context to the reply.
    let event = span.in_scope(|| build(function, request, job))?;
    let entity = job.owner_id.map(|id| id.to_string());
    let key = completion_routing_key(job.tenant.as_deref(), entity.as_deref(), function, outcome);
    let message = binding::encode(event)
        .map_err(|e| PublishError::Encode(e.to_string()))?
        .with_job_id(&job.id);
    let exchange = topology.events_exchange();
    let to_events = publish_confirmed(channel, &exchange, &key, &message, false, timeout);
    match reply_to {
        // The reply queue may be gone (its gateway died): not mandatory, the caller can poll.
        Some(reply) => {
            let to_reply = publish_confirmed(channel, "", &reply.queue, &message, false, timeout);
            let (a, b) = async { tokio::join!(to_events, to_reply) }
                .instrument(span)
                .await;
            a.and(b)
        }
        None => to_events.instrument(span).await,
    }
}

fn build(function: &FunctionName, request: &Event, job: &JobRecord) -> Result<Event, PublishError> {
    let outcome = job
        .state
        .outcome()
        .unwrap_or(surge_contract::job::Outcome::Failed);
    let data = match (&job.result, &job.error) {
        (Some(result), _) if outcome == surge_contract::job::Outcome::Completed => result.clone(),
        (_, Some(error)) => error.clone(),
        _ => serde_json::Value::Null,
    };
    let mut builder = EventBuilderV10::new()
        .id(job.id.to_string())
        .source(function.completion_source())
        .ty(completion_type(request.ty(), outcome))
        .subject(job.id.to_string())
        .time(job.finished_at.unwrap_or_else(Utc::now))
        .extension(ext::STATE, job.state.as_str())
        .extension(ext::ATTEMPTS, i64::from(job.attempts))
        .data("application/json", data);
    if let (Some(tenant), Some(owner)) = (&job.tenant, job.owner_id) {
        builder = builder
            .extension(ext::TENANT, tenant.as_str())
            .extension(ext::ENTITY, owner.to_string());
    }
    for (name, value) in trace_context(&tracing::Span::current()) {
        builder = builder.extension(&name, value);
    }
    builder
        .build()
        .map_err(|e| PublishError::Encode(e.to_string()))
}
