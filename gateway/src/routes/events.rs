//! `POST /events`: CloudEvents from event producers, in the HTTP binding's binary, structured
//! or batched mode. The event's `type` (`dev.surge.fn.<name>`) selects the function, its data
//! is the job's input, and its `source` + `id` make it idempotent (a resent event returns the
//! first job). The authenticated entity is stamped on the job's event by the gateway; what the
//! client put in Surge's own extensions is never forwarded.
//!
//! Answers `202` with the job (or, for a batch, the jobs); with `Prefer: wait=<seconds>` a
//! single event is answered with its completion event in structured mode.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudevents::{AttributesReader, Event};
use sha2::{Digest, Sha256};
use surge_contract::binding;
use surge_contract::completion::Completion;
use surge_contract::job::{EVENT_TYPE_PREFIX, FunctionName};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::answer;
use super::prefer::Preferences;
use super::request::body_error;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::jobs::{self, Answer, Repeat, Submission, Wait};
use crate::openapi::Problem;
use crate::state::AppState;
use crate::views::JobView;

const BATCH: &str = "application/cloudevents-batch+json";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// A CloudEvent in structured mode (`application/cloudevents+json`), as Surge takes and
/// sends them. Extension attributes are further top-level members.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "specversion": "1.0", "id": "order-17", "source": "/shop/orders",
    "type": "dev.surge.fn.echo", "datacontenttype": "application/json", "data": {"order": 17}
}))]
pub struct CloudEvent {
    /// `1.0`.
    pub specversion: String,
    /// Unique within `source`: with it, makes the event idempotent.
    pub id: String,
    pub source: String,
    /// Requests: `dev.surge.fn.<function>`; completions: `<request type>.completed` or `.failed`.
    #[serde(rename = "type")]
    pub ty: String,
    pub datacontenttype: Option<String>,
    /// On completions: the job id.
    pub subject: Option<String>,
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// Requests: the function's input; completions: its result, or a problem document.
    pub data: Option<serde_json::Value>,
}

/// What `202` holds: the job of one event, or the jobs of a batch in order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum QueuedJobs {
    One(JobView),
    Batch(Vec<JobView>),
}

/// One validated event, ready to accept.
struct Incoming {
    function: FunctionName,
    input: serde_json::Value,
    key: String,
}

/// Send CloudEvents
///
/// One event in binary mode (attributes in `ce-*` headers, data as the body) or structured
/// mode (`application/cloudevents+json`), or a batch (`application/cloudevents-batch+json`).
/// The event's `type` (`dev.surge.fn.<function>`) selects the function and its data is the
/// input; `source` + `id` make it idempotent (a resent event returns the first job). The
/// caller's entity is stamped by the gateway; client values of Surge's own extensions are
/// ignored. Answers `202` with the job (a batch: the jobs); one event with
/// `Prefer: wait=<seconds>` is answered with its completion event.
#[utoipa::path(
    post,
    path = "/events",
    tag = "events",
    operation_id = "send_events",
    params(
        ("Prefer" = Option<String>, Header, description = "`wait=<seconds>`: answer one event with its completion"),
        ("ce-specversion" = Option<String>, Header, description = "Binary mode: `1.0`"),
        ("ce-id" = Option<String>, Header, description = "Binary mode: the event id"),
        ("ce-source" = Option<String>, Header, description = "Binary mode: the event source"),
        ("ce-type" = Option<String>, Header, description = "Binary mode: `dev.surge.fn.<function>`"),
    ),
    request_body(
        description = "A CloudEvent (binary: the data as `application/json` with `ce-*` headers; structured) or a batch",
        content(
            (serde_json::Value = "application/json"),
            (CloudEvent = "application/cloudevents+json"),
            (Vec<CloudEvent> = "application/cloudevents-batch+json"),
        ),
    ),
    responses(
        (status = 200, description = "The completion event (one event with `Prefer: wait`)", body = CloudEvent, content_type = "application/cloudevents+json"),
        (status = 202, description = "Queued: the job, or for a batch the jobs in order", content(
            (QueuedJobs = "application/json"),
        ), headers(("Location" = Option<String>, description = "`/jobs/{id}` of a single event's job"))),
        (status = 400, description = "Not a CloudEvent, an empty batch, a type that selects no function, a batch above the rate limit's burst", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The type names a function not served here", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the gateway accepts", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An event's data holds a value Surge cannot store (NUL, a number beyond ±1e308); nothing of the batch is accepted", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn receive(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| body_error(&e, state.http.body_limit_bytes))?;
    let batch = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(BATCH));
    let events: Vec<Event> = if batch {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("not a CloudEvents batch: {e}")))?
    } else {
        vec![
            cloudevents::binding::http::to_event(&headers, body.to_vec())
                .map_err(|e| ApiError::BadRequest(format!("not a CloudEvent: {e}")))?,
        ]
    };
    if events.is_empty() {
        return Err(ApiError::BadRequest("the batch is empty".into()));
    }
    // A batch counts as its events against the caller's rate limit (the request itself
    // was counted as one when the caller was authenticated).
    state
        .auth
        .charge(caller.entity_id, events.len() - 1, &state.metrics)
        .await?;
    // Every event is checked before any is accepted: a batch is taken whole or not at all.
    let incoming = events
        .iter()
        .map(|event| incoming(&state, event))
        .collect::<Result<Vec<_>, _>>()?;
    let prefer = Preferences::parse(&headers);
    // Only a single event is answered with its completion, and only when asked to wait.
    let wait = match prefer.wait {
        Some(wait) if !batch => Wait::UpTo(wait),
        _ => Wait::No,
    };
    let mut views = Vec::with_capacity(incoming.len());
    for item in incoming {
        let submission = Submission {
            function: &item.function,
            input: item.input,
            idempotency_key: Some(&item.key),
            wait,
            repeat: Repeat::SameKey,
        };
        match jobs::submit(&state, &caller, submission).await? {
            Answer::Finished {
                completion: Some(completion),
                ..
            } => return Ok(structured(&completion)),
            Answer::Finished { job, .. } | Answer::Pending(job) => views.push(job),
        }
    }
    Ok(if batch {
        (StatusCode::ACCEPTED, Json(views)).into_response()
    } else {
        let view = views.remove(0);
        answer::accepted(view, false)
    })
}

fn incoming(state: &AppState, event: &Event) -> Result<Incoming, ApiError> {
    let name = event.ty().strip_prefix(EVENT_TYPE_PREFIX).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "event type {:?} selects no function: types are `{EVENT_TYPE_PREFIX}<function>`",
            event.ty()
        ))
    })?;
    let function = state.function(name)?;
    let input = binding::json_input(event).map_err(|e| match e {
        binding::BindingError::Unstorable(why) => ApiError::Unstorable(format!(
            "event {:?} of {:?}: {why}",
            event.id(),
            event.source().to_string()
        )),
        e => ApiError::InvalidJson(e.to_string()),
    })?;
    // `source` + `id` identify an event (CloudEvents spec): hashed to a bounded key.
    let digest = Sha256::new()
        .chain_update(event.source().to_string().as_bytes())
        .chain_update([0])
        .chain_update(event.id().as_bytes())
        .finalize();
    let key = format!(
        "ce:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Ok(Incoming {
        function,
        input,
        key,
    })
}

/// A completion event as an HTTP response in structured mode, its data as JSON.
fn structured(completion: &Completion) -> Response {
    match completion.to_structured_json() {
        Ok(body) => {
            let mut response = (StatusCode::OK, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(binding::STRUCTURED_JSON),
            );
            response
        }
        Err(e) => ApiError::Internal(anyhow::Error::new(e).context("encoding the completion"))
            .into_response(),
    }
}
