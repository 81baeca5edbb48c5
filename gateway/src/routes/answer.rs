//! A job as an HTTP answer: `200` with the finished job, `202` with the queued one and its
//! `Location`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::jobs::Answer;
use crate::views::JobView;

/// `200` for a finished job, `202` otherwise; `respond_async` says the caller asked for
/// `Prefer: respond-async` (answered with `Preference-Applied`).
pub fn job(answer: Answer, respond_async: bool) -> Response {
    match answer {
        Answer::Finished { job, .. } => (StatusCode::OK, Json(job)).into_response(),
        Answer::Pending(job) => accepted(job, respond_async),
    }
}

/// `202` with the job and its `Location`.
pub fn accepted(job: JobView, respond_async: bool) -> Response {
    let location = format!("/jobs/{}", job.id);
    let mut response = (StatusCode::ACCEPTED, Json(job)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, location);
    }
    if respond_async {
        headers.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
    }
    response
}
