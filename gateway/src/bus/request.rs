//! The request event of a job, as the gateway publishes it: id = job id, the function's event
//! type, the caller's tenant and entity stamped as extensions (never taken from the client),
//! the trace context, and `reply_to` when a caller waits.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use lapin::types::ShortString;
use surge_contract::binding::{self, AmqpMessage, BindingError};
use surge_contract::job::{FunctionName, GATEWAY_SOURCE, JobId, ext};

/// What a job's request event is made of.
pub struct JobRequest<'a> {
    pub id: JobId,
    pub function: &'a FunctionName,
    /// The owner's tenant and entity; `None` for a job a trusted producer published (replayed).
    pub owner: Option<(&'a str, uuid::Uuid)>,
    /// The event's `source` and `id` when they are not the gateway's (a trusted producer's
    /// job, replayed): the runtime finds the job by them.
    pub origin: Option<(&'a str, &'a str)>,
    pub created_at: DateTime<Utc>,
    pub input: serde_json::Value,
    pub trace: HashMap<String, String>,
    pub reply_to: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the request event cannot be built: {0}")]
    Build(#[from] cloudevents::event::EventBuilderError),
    #[error(transparent)]
    Encode(#[from] BindingError),
}

/// Builds the AMQP message of a job's request event.
pub fn job_message(request: JobRequest<'_>) -> Result<AmqpMessage, RequestError> {
    let id = request.id.to_string();
    let (source, event_id) = request.origin.unwrap_or((GATEWAY_SOURCE, &id));
    let mut builder = EventBuilderV10::new()
        .id(event_id)
        .source(source)
        .ty(request.function.event_type())
        .subject(id.clone())
        .time(request.created_at)
        .data("application/json", request.input);
    if let Some((tenant, entity)) = request.owner {
        builder = builder
            .extension(ext::TENANT, tenant)
            .extension(ext::ENTITY, entity.to_string());
    }
    for (name, value) in request.trace {
        builder = builder.extension(&name, value);
    }
    if let Some(queue) = request.reply_to {
        builder = builder.extension(ext::REPLY_TO, queue);
    }
    let mut message = binding::encode(builder.build()?)?.with_job_id(&request.id);
    if let Some(queue) = request.reply_to {
        // The reply queue name was declared as a short string.
        message.properties = message.properties.with_reply_to(ShortString::from(queue));
    }
    Ok(message)
}
