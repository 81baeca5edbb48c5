//! The one way a job's request reaches the broker: encoded from the contract's
//! `JobRequest`, published mandatory with a confirm, and sent once more when the first
//! attempt's fate is unknown.

use surge_contract::request::JobRequest;

use crate::state::AppState;

/// Why a request is not known to be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishFailure {
    /// The broker did not take it (not connected, refused, unroutable): nothing is queued.
    Refused,
    /// The broker may hold it (no confirm came, the connection dropped after the send),
    /// even after a second try: it may run.
    Unconfirmed,
}

/// Publishes `request`, waiting up to the publish timeout for a link that is reconnecting.
/// An unconfirmed first try is sent again once the link is back: that is safe, since the
/// runtime runs a job id once.
pub async fn publish(state: &AppState, request: &JobRequest) -> Result<(), PublishFailure> {
    let id = request.event_id.as_str();
    let message = request
        .to_message()
        .map_err(|e| {
            tracing::error!(error = %e, %id, "a job's request could not be encoded");
            PublishFailure::Refused
        })?
        .sent_by(state.bus.sender());
    let started = std::time::Instant::now();
    if !state.bus.is_connected() {
        // Reconnecting (a broker restart, a dropped connection): worth a short wait rather
        // than a refusal.
        state.bus.wait_connected(state.bus.publish_timeout()).await;
    }
    let mut published = state.bus.publish_job(&request.function, &message).await;
    let mut unconfirmed = false;
    if let Err(e) = &published
        && e.may_have_been_queued()
    {
        tracing::warn!(error = %e, %id, "a job's publish is unconfirmed; sending it again");
        unconfirmed = true;
        state.bus.wait_connected(state.bus.publish_timeout()).await;
        published = state.bus.publish_job(&request.function, &message).await;
    }
    match published {
        Ok(()) => {
            state.activity.published(&request.function);
            state.metrics.process.confirmed("jobs", started.elapsed());
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, %id, "publishing a job failed");
            Err(if unconfirmed || e.may_have_been_queued() {
                PublishFailure::Unconfirmed
            } else {
                PublishFailure::Refused
            })
        }
    }
}
