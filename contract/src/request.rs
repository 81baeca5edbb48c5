//! A job's request event: what a gateway (or a trusted producer) publishes to `surge.jobs`
//! and a function's runtime consumes. One type, its constructor and its parser side by side;
//! neither side reads the event field by field.
//!
//! On the wire (DESIGN.md "Event on the wire"): a CloudEvent in binary mode with `id`,
//! `source`, `type = dev.surge.fn.<function>`, `subject` and `time`, the input as JSON data,
//! the W3C trace context as extensions, the owner the gateway stamped (`surgetenant`,
//! `surgeentity`, and `surgepersona` when the owner's credential has a persona) and, when a caller waits, `surgereplyto` beside AMQP's `reply_to`. AMQP
//! `message_id` and `correlation_id` carry the job id when it is known.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader as _, Event, EventBuilder as _, EventBuilderV10};
use lapin::BasicProperties;
use lapin::types::ShortString;
use serde_json::Value;
use uuid::Uuid;

use crate::binding::{self, AmqpMessage, BindingError};
use crate::job::{EVENT_TYPE_PREFIX, FunctionName, GATEWAY_SOURCE, JobId, ext};

/// The entity a job belongs to, as the gateway stamped it. The runtime reads a job's owner
/// from its record, never from here: a message can claim anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub tenant: String,
    pub entity: Uuid,
}

/// A job's request event.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// The job's id, when the publisher knows it (always, for a gateway). A trusted
    /// producer's event gets its job id when the runtime first records it.
    pub job_id: Option<JobId>,
    /// `source` + `id`: the job's identity on the bus (exactly-once rests on it).
    pub source: String,
    pub event_id: String,
    pub function: FunctionName,
    /// When the job was accepted (a replay: when it was queued again).
    pub time: Option<DateTime<Utc>>,
    /// The function's input (the event's JSON data; no data is `null`).
    pub input: Value,
    pub owner: Option<Owner>,
    /// The persona of the owner's credential, when it has one.
    pub persona: Option<String>,
    /// `traceparent` and `tracestate`, when the publisher was traced.
    pub trace: HashMap<String, String>,
    /// The reply queue of a waiting caller (AMQP `reply_to`, or the `surgereplyto` extension
    /// for transports that drop message properties). Only the runtime decides whether to use
    /// it, and only for a queue named like Surge's reply queues.
    pub reply_to: Option<String>,
}

/// Why a message is not a job request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Binding(#[from] BindingError),
    #[error(
        "event type {0:?} names no function: request types are `{EVENT_TYPE_PREFIX}<function>`"
    )]
    NotARequest(String),
    #[error("the request event cannot be built: {0}")]
    Build(#[from] cloudevents::event::EventBuilderError),
}

impl JobRequest {
    /// A job a gateway accepted: its event is known by the job id, from the gateway's source.
    pub fn accepted(id: JobId, function: FunctionName, input: Value) -> Self {
        Self {
            job_id: Some(id),
            source: GATEWAY_SOURCE.to_owned(),
            event_id: id.to_string(),
            function,
            time: None,
            input,
            owner: None,
            persona: None,
            trace: HashMap::new(),
            reply_to: None,
        }
    }

    /// Whether a gateway published it (so the event id is the job id).
    pub fn from_gateway(&self) -> bool {
        self.source == GATEWAY_SOURCE
    }

    /// The event, as it travels.
    pub fn to_event(&self) -> Result<Event, RequestError> {
        let mut builder = EventBuilderV10::new()
            .id(self.event_id.clone())
            .source(self.source.clone())
            .ty(self.function.event_type())
            .data("application/json", self.input.clone());
        if let Some(id) = self.job_id {
            builder = builder.subject(id.to_string());
        }
        if let Some(time) = self.time {
            builder = builder.time(time);
        }
        if let Some(owner) = &self.owner {
            builder = builder
                .extension(ext::TENANT, owner.tenant.as_str())
                .extension(ext::ENTITY, owner.entity.to_string());
        }
        if let Some(persona) = &self.persona {
            builder = builder.extension(ext::PERSONA, persona.as_str());
        }
        for (name, value) in &self.trace {
            builder = builder.extension(name, value.as_str());
        }
        if let Some(queue) = &self.reply_to {
            builder = builder.extension(ext::REPLY_TO, queue.as_str());
        }
        Ok(builder.build()?)
    }

    /// The AMQP message: binary mode, the job id as `message_id` and `correlation_id`, the
    /// reply queue as `reply_to`.
    pub fn to_message(&self) -> Result<AmqpMessage, RequestError> {
        let mut message = binding::encode(self.to_event()?)?;
        if let Some(id) = &self.job_id {
            message = message.with_job_id(id);
        }
        if let Some(queue) = self.reply_to.as_deref().and_then(short) {
            message.properties = message.properties.with_reply_to(queue);
        }
        Ok(message)
    }

    /// A request from a received event. Its data must be JSON Surge can store
    /// (`binding::json_input`).
    pub fn from_event(event: &Event) -> Result<Self, RequestError> {
        let function = event
            .ty()
            .strip_prefix(EVENT_TYPE_PREFIX)
            .and_then(|name| FunctionName::parse(name).ok())
            .ok_or_else(|| RequestError::NotARequest(event.ty().to_owned()))?;
        let input = binding::json_input(event)?;
        let source = event.source().to_string();
        let job_id = (source == GATEWAY_SOURCE)
            .then(|| event.id().parse().ok())
            .flatten();
        let text = |name: &str| event.extension(name).map(|v| v.to_string());
        let owner = text(ext::TENANT)
            .zip(text(ext::ENTITY).and_then(|e| e.parse().ok()))
            .map(|(tenant, entity)| Owner { tenant, entity });
        let trace = [ext::TRACEPARENT, ext::TRACESTATE]
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), text(name)?)))
            .collect();
        Ok(Self {
            job_id,
            source,
            event_id: event.id().to_owned(),
            function,
            time: event.time().copied(),
            input,
            owner,
            persona: text(ext::PERSONA),
            trace,
            reply_to: text(ext::REPLY_TO),
        })
    }

    /// A request from a delivered AMQP message (binary or structured mode); AMQP's
    /// `reply_to` comes before the extension.
    pub fn decode(properties: &BasicProperties, body: &[u8]) -> Result<Self, RequestError> {
        let mut request = Self::from_event(&binding::decode(properties, body)?)?;
        if let Some(queue) = properties.reply_to() {
            request.reply_to = Some(queue.to_string());
        }
        Ok(request)
    }

    /// `traceparent`, when the publisher was traced.
    pub fn traceparent(&self) -> Option<&str> {
        self.trace.get(ext::TRACEPARENT).map(String::as_str)
    }
}

/// An AMQP short string (at most 255 bytes); a longer reply queue name is no queue of ours.
fn short(text: &str) -> Option<ShortString> {
    ShortString::try_new(text.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepted() -> JobRequest {
        let id = JobId::new();
        let mut request = JobRequest::accepted(
            id,
            FunctionName::parse("echo").unwrap(),
            json!({"n": [1, 2.5, "three"], "nested": {"ok": true}}),
        );
        request.time = Some("2026-12-06T10:00:00.123Z".parse().unwrap());
        request.owner = Some(Owner {
            tenant: "acme".into(),
            entity: Uuid::new_v4(),
        });
        request.trace.insert(
            ext::TRACEPARENT.into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        request.reply_to = Some("t-surge.reply.abc".into());
        request.persona = Some("mobile".into());
        request
    }

    #[test]
    fn a_request_survives_the_broker_whole() {
        let request = accepted();
        let message = request.to_message().unwrap();
        let id = request.job_id.unwrap().to_string();
        assert_eq!(
            message.properties.message_id().as_ref().unwrap().as_str(),
            id
        );
        assert_eq!(
            message
                .properties
                .correlation_id()
                .as_ref()
                .unwrap()
                .as_str(),
            id
        );
        assert_eq!(
            message.properties.reply_to().as_ref().unwrap().as_str(),
            "t-surge.reply.abc"
        );
        let decoded = JobRequest::decode(&message.properties, &message.body).unwrap();
        assert_eq!(decoded, request);
        assert!(decoded.from_gateway());
    }

    #[test]
    fn a_trusted_producers_event_is_a_request_without_a_job_id_or_owner() {
        // As a producer with the official SDKs makes it: only the required attributes.
        let event = EventBuilderV10::new()
            .id("order-17")
            .source("/shop/orders")
            .ty("dev.surge.fn.sleep")
            .data("application/json", json!({"ms": 1}))
            .build()
            .unwrap();
        let message = binding::encode(event).unwrap();
        let request = JobRequest::decode(&message.properties, &message.body).unwrap();
        assert_eq!(request.function.as_str(), "sleep");
        assert_eq!(
            (request.source.as_str(), request.event_id.as_str()),
            ("/shop/orders", "order-17")
        );
        assert_eq!(request.job_id, None);
        assert_eq!((&request.owner, &request.persona), (&None, &None));
        assert_eq!(request.input, json!({"ms": 1}));
        assert!(!request.from_gateway());
    }

    #[test]
    fn an_event_of_another_type_is_not_a_request() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/x")
            .ty("com.example.other")
            .build()
            .unwrap();
        assert!(matches!(
            JobRequest::from_event(&event),
            Err(RequestError::NotARequest(_))
        ));
    }

    #[test]
    fn data_that_is_not_json_is_refused() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/x")
            .ty("dev.surge.fn.echo")
            .data("text/plain", "hello")
            .build()
            .unwrap();
        assert!(matches!(
            JobRequest::from_event(&event),
            Err(RequestError::Binding(BindingError::DataNotJson { .. }))
        ));
    }
}
