//! A job's completion event: what a function's runtime publishes to `surge.events` (and to a
//! waiting caller's reply queue) once a job is finished, and what gateways read to answer
//! callers, push to websockets and reload server settings. One type, its constructor and its
//! parser side by side.
//!
//! On the wire: `id` = `subject` = the job id (consumers can deduplicate), `source` =
//! `/surge/functions/<function>`, `type` = `<request type>.completed` with the result as data
//! or `.failed` with a problem document, `time` = when the job finished, the final state and
//! attempts in `surgestate` / `surgeattempts`, the owner in `surgetenant` / `surgeentity`,
//! the trace context as extensions. The routing key on `surge.events` is
//! `<tenant>.<entity>.<function>.<outcome>`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader as _, Event, EventBuilder as _, EventBuilderV10};
use lapin::BasicProperties;
use serde_json::Value;

use crate::binding::{self, AmqpMessage, BindingError};
use crate::job::{EVENT_TYPE_PREFIX, FunctionName, JobId, JobState, Outcome, ext};
use crate::request::Owner;

/// A finished job, as its completion event reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub job_id: JobId,
    pub function: FunctionName,
    /// `succeeded`, `failed` or `dead`.
    pub state: JobState,
    /// Runs of the job, counting every one that started.
    pub attempts: i32,
    pub finished_at: DateTime<Utc>,
    /// The result (succeeded) or the problem (failed, dead); `None` in a [`redacted`] copy.
    ///
    /// [`redacted`]: Completion::redacted
    pub data: Option<Value>,
    /// `None` for a job a trusted producer published straight to the broker.
    pub owner: Option<Owner>,
    /// `traceparent` and `tracestate` of the span that published it.
    pub trace: HashMap<String, String>,
}

/// Why a message is not a completion.
#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    #[error(transparent)]
    Binding(#[from] BindingError),
    #[error("not a completion: {0}")]
    Malformed(String),
    #[error("the completion event cannot be built: {0}")]
    Build(#[from] cloudevents::event::EventBuilderError),
}

impl Completion {
    /// How the event reports the job: `completed` or `failed`.
    pub fn outcome(&self) -> Outcome {
        self.state.outcome().unwrap_or(Outcome::Failed)
    }

    /// The result, when the job succeeded.
    pub fn result(&self) -> Option<&Value> {
        (self.state == JobState::Succeeded)
            .then_some(self.data.as_ref())
            .flatten()
    }

    /// The problem document, when the job failed or died.
    pub fn problem(&self) -> Option<&Value> {
        (self.state != JobState::Succeeded)
            .then_some(self.data.as_ref())
            .flatten()
    }

    /// Its routing key on `surge.events`.
    pub fn routing_key(&self) -> String {
        let entity = self.owner.as_ref().map(|o| o.entity.to_string());
        crate::job::completion_routing_key(
            self.owner.as_ref().map(|o| o.tenant.as_str()),
            entity.as_deref(),
            &self.function,
            self.outcome(),
        )
    }

    /// The same completion without its data: what another entity's tenant-wide watcher is
    /// shown of a success (as `/admin/jobs` lists it).
    pub fn redacted(&self) -> Self {
        Self {
            data: None,
            ..self.clone()
        }
    }

    /// The event, as it travels.
    pub fn to_event(&self) -> Result<Event, CompletionError> {
        let id = self.job_id.to_string();
        let mut builder = EventBuilderV10::new()
            .id(id.clone())
            .source(self.function.completion_source())
            .ty(crate::job::completion_type(
                &self.function.event_type(),
                self.outcome(),
            ))
            .subject(id)
            .time(self.finished_at)
            .extension(ext::STATE, self.state.as_str())
            .extension(ext::ATTEMPTS, i64::from(self.attempts));
        if let Some(data) = &self.data {
            builder = builder.data("application/json", data.clone());
        }
        if let Some(owner) = &self.owner {
            builder = builder
                .extension(ext::TENANT, owner.tenant.as_str())
                .extension(ext::ENTITY, owner.entity.to_string());
        }
        for (name, value) in &self.trace {
            builder = builder.extension(name, value.as_str());
        }
        Ok(builder.build()?)
    }

    /// The AMQP message (binary mode; the job id as `message_id` and `correlation_id`).
    pub fn to_message(&self) -> Result<AmqpMessage, CompletionError> {
        Ok(binding::encode(self.to_event()?)?.with_job_id(&self.job_id))
    }

    /// Structured mode (JSON), as `/ws` pushes it and `POST /events` answers with it.
    pub fn to_structured_json(&self) -> Result<String, CompletionError> {
        serde_json::to_string(&self.to_event()?)
            .map_err(|e| CompletionError::Malformed(format!("cannot be rendered as JSON: {e}")))
    }

    /// A completion from a received event.
    pub fn from_event(event: &Event) -> Result<Self, CompletionError> {
        let malformed = |what: String| CompletionError::Malformed(what);
        let (function, outcome) = event
            .ty()
            .strip_prefix(EVENT_TYPE_PREFIX)
            .and_then(|rest| rest.rsplit_once('.'))
            .and_then(|(name, outcome)| {
                let outcome = match outcome {
                    "completed" => Outcome::Completed,
                    "failed" => Outcome::Failed,
                    _ => return None,
                };
                Some((FunctionName::parse(name).ok()?, outcome))
            })
            .ok_or_else(|| malformed(format!("type {:?} is no completion type", event.ty())))?;
        let job_id: JobId = event
            .id()
            .parse()
            .map_err(|_| malformed(format!("id {:?} is not a job id", event.id())))?;
        let text = |name: &str| event.extension(name).map(|v| v.to_string());
        let state = match text(ext::STATE).as_deref() {
            Some("succeeded") => JobState::Succeeded,
            Some("failed") => JobState::Failed,
            Some("dead") => JobState::Dead,
            Some(other) => return Err(malformed(format!("{} {other:?}", ext::STATE))),
            None if outcome == Outcome::Completed => JobState::Succeeded,
            None => JobState::Failed,
        };
        if state.outcome() != Some(outcome) {
            return Err(malformed(format!(
                "state {} does not match type {:?}",
                state.as_str(),
                event.ty()
            )));
        }
        let attempts = text(ext::ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1);
        let finished_at = *event.time().ok_or_else(|| malformed("no time".into()))?;
        let data = match event.data() {
            None => None,
            Some(_) => Some(binding::json_data(event)?),
        };
        let owner = text(ext::TENANT)
            .zip(text(ext::ENTITY).and_then(|e| e.parse().ok()))
            .map(|(tenant, entity)| Owner { tenant, entity });
        let trace = [ext::TRACEPARENT, ext::TRACESTATE]
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), text(name)?)))
            .collect();
        Ok(Self {
            job_id,
            function,
            state,
            attempts,
            finished_at,
            data,
            owner,
            trace,
        })
    }

    /// A completion from a delivered AMQP message.
    pub fn decode(properties: &BasicProperties, body: &[u8]) -> Result<Self, CompletionError> {
        Self::from_event(&binding::decode(properties, body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn completion(state: JobState, data: Value) -> Completion {
        Completion {
            job_id: JobId::new(),
            function: FunctionName::parse("resize-image").unwrap(),
            state,
            attempts: 2,
            finished_at: "2026-12-06T10:00:01.5Z".parse().unwrap(),
            data: Some(data),
            owner: Some(Owner {
                tenant: "acme.eu".into(),
                entity: Uuid::new_v4(),
            }),
            trace: HashMap::from([(
                ext::TRACEPARENT.to_owned(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
            )]),
        }
    }

    #[test]
    fn a_completion_survives_the_broker_whole() {
        for c in [
            completion(JobState::Succeeded, json!({"width": 640})),
            completion(JobState::Failed, json!({"type": "urn:x", "title": "no"})),
            completion(JobState::Dead, json!({"type": "urn:y", "title": "dead"})),
        ] {
            let message = c.to_message().unwrap();
            assert_eq!(
                message
                    .properties
                    .correlation_id()
                    .as_ref()
                    .unwrap()
                    .as_str(),
                c.job_id.to_string()
            );
            assert_eq!(
                Completion::decode(&message.properties, &message.body).unwrap(),
                c
            );
        }
    }

    #[test]
    fn the_routing_key_and_type_name_owner_function_and_outcome() {
        let c = completion(JobState::Dead, json!(null));
        let owner = c.owner.clone().unwrap();
        assert_eq!(
            c.routing_key(),
            format!("acme_eu.{}.resize-image.failed", owner.entity)
        );
        assert_eq!(
            c.to_event().unwrap().ty(),
            "dev.surge.fn.resize-image.failed"
        );
        let ownerless = Completion {
            owner: None,
            ..completion(JobState::Succeeded, json!(1))
        };
        assert_eq!(ownerless.routing_key(), "-.-.resize-image.completed");
    }

    #[test]
    fn a_redacted_completion_has_no_data_and_says_so() {
        let c = completion(JobState::Succeeded, json!({"secret": 1}));
        let event = c.redacted().to_event().unwrap();
        assert!(event.data().is_none());
        let back = Completion::from_event(&event).unwrap();
        assert_eq!(back.data, None);
        assert_eq!(back.result(), None);
        assert_eq!(back.state, JobState::Succeeded);
    }

    #[test]
    fn result_and_problem_follow_the_state() {
        let ok = completion(JobState::Succeeded, json!(7));
        assert_eq!((ok.result(), ok.problem()), (Some(&json!(7)), None));
        let failed = completion(JobState::Failed, json!({"title": "x"}));
        assert_eq!(failed.result(), None);
        assert!(failed.problem().is_some());
    }

    #[test]
    fn a_completion_whose_state_contradicts_its_type_is_refused() {
        let event = completion(JobState::Succeeded, json!(1))
            .to_event()
            .unwrap();
        let mut event = event;
        event.set_extension(ext::STATE, "failed");
        assert!(matches!(
            Completion::from_event(&event),
            Err(CompletionError::Malformed(_))
        ));
    }
}
