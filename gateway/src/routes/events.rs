//! `POST /events`: CloudEvents from event producers, in the HTTP binding's binary, structured
//! or batched mode. The event's `type` (`dev.surge.fn.<name>`) selects the function, its data
//! is the job's input, and its `source` + `id` make it idempotent (a resent event returns the
//! first job). The authenticated entity is stamped on the job's event by the gateway; what the
//! client put in Surge's own extensions is never forwarded.
//!
//! Answers `202` with the job (or, for a batch, the jobs); with `Prefer: wait=<seconds>` a
//! single event is answered with its completion event in structured mode.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cloudevents::{AttributesReader, Event};
use sha2::{Digest, Sha256};
use surge_contract::binding;
use surge_contract::job::{EVENT_TYPE_PREFIX, FunctionName};

use crate::accept::{Accepted, Submission, accept, wait};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::jobs::{Preferences, accepted, body_error, known_function};
use crate::routes::views::JobView;
use crate::state::AppState;

const BATCH: &str = "application/cloudevents-batch+json";

pub fn router() -> Router<AppState> {
    Router::new().route("/events", post(receive))
}

/// One validated event, ready to accept.
struct Incoming {
    function: FunctionName,
    input: serde_json::Value,
    key: String,
}

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
        .limiter
        .check_more(caller.entity_id, events.len() - 1)?;
    // Every event is checked before any is accepted: a batch is taken whole or not at all.
    let incoming = events
        .iter()
        .map(|event| incoming(&state, event))
        .collect::<Result<Vec<_>, _>>()?;
    let prefer = Preferences::parse(&headers);
    let waits = !batch && prefer.wait.is_some();
    let mut views = Vec::with_capacity(incoming.len());
    for item in incoming {
        let submission = Submission {
            function: &item.function,
            input: item.input,
            idempotency_key: Some(&item.key),
            wait: waits,
        };
        match accept(&state, &caller, submission).await? {
            Accepted::New {
                view,
                waiter: Some(waiter),
            } => {
                return Ok(match wait(&state, waiter, prefer.wait).await {
                    Some(completion) => structured(completion),
                    None => accepted(view, false),
                });
            }
            Accepted::New { view, waiter: None } => views.push(view),
            Accepted::Repeat { first, .. } => views.push(JobView::from(first)),
        }
    }
    Ok(if batch {
        (StatusCode::ACCEPTED, Json(views)).into_response()
    } else {
        let view = views.remove(0);
        accepted(view, false)
    })
}

fn incoming(state: &AppState, event: &Event) -> Result<Incoming, ApiError> {
    let name = event.ty().strip_prefix(EVENT_TYPE_PREFIX).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "event type {:?} selects no function: types are `{EVENT_TYPE_PREFIX}<function>`",
            event.ty()
        ))
    })?;
    let function = known_function(state, name)?;
    let input = binding::json_data(event).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
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
fn structured(completion: Event) -> Response {
    match binding::structured_json(completion) {
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
