//! The jobs API's happy paths: sync, async, timeout fallback, idempotency, reading jobs back.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_gateway::views::{JobPage, JobView};
use surge_tests::TestApp;

#[tokio::test]
async fn a_sync_call_returns_the_functions_result() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let body = json!({"hello": "world", "n": [1, 2, 3]});
    let job: JobView = app.post("/jobs/echo", &body, StatusCode::OK).await;
    assert_eq!(job.state.as_str(), "succeeded");
    assert_eq!(job.result, Some(body));
    assert_eq!(job.function, "echo");
    assert_eq!(job.attempts, Some(1));
    let stored = app.job_state(job.id).await;
    assert_eq!(stored.as_deref(), Some("succeeded"));
}

#[tokio::test]
async fn times_are_utc_rfc_3339_with_z() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    // As sent, not as a `DateTime` would read any offset.
    let job = app
        .exchange(Method::POST, "/jobs/echo")
        .json(&json!(1))
        .expect::<serde_json::Value>(StatusCode::OK)
        .await
        .body;
    for field in ["created_at", "finished_at"] {
        let t = job[field].as_str().unwrap();
        assert!(t.ends_with('Z'), "{field} = {t}");
        chrono::DateTime::parse_from_rfc3339(t).unwrap();
    }
}

#[tokio::test]
async fn respond_async_answers_202_with_location_and_the_job_completes() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let accepted = app
        .header("prefer", "respond-async")
        .exchange(Method::POST, "/jobs/echo")
        .json(&json!({"x": 1}))
        .expect::<JobView>(StatusCode::ACCEPTED)
        .await;
    assert_eq!(accepted.header("preference-applied"), "respond-async");
    let location = accepted.header("location");
    let job = &accepted.body;
    assert_eq!(location, format!("/jobs/{}", job.id));
    assert_eq!(job.state.as_str(), "queued");
    app.wait_for_state(job.id, "succeeded", Duration::from_secs(10))
        .await;
    let read: JobView = app.get(location, StatusCode::OK).await;
    assert_eq!(read.result, Some(json!({"x": 1})));
    assert_eq!(read.input, Some(json!({"x": 1})));
    assert!(read.started_at.is_some() && read.finished_at.is_some());
}

#[tokio::test]
async fn a_sync_call_past_its_wait_falls_back_to_202_and_the_job_still_completes() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let accepted = app
        .header("prefer", "wait=1")
        .exchange(Method::POST, "/jobs/sleep")
        .json(&json!({"ms": 2500}))
        .expect::<JobView>(StatusCode::ACCEPTED)
        .await;
    let id = accepted.body.id;
    assert_eq!(accepted.header("location"), format!("/jobs/{id}"));
    app.wait_for_state(id, "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(app.sleep_runs(id).await, 1);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_job_and_runs_it_once() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let keyed = app.header("idempotency-key", "order-42");
    let first: JobView = keyed
        .post("/jobs/sleep", &json!({"ms": 10}), StatusCode::OK)
        .await;
    let again: JobView = keyed
        .post("/jobs/sleep", &json!({"ms": 10}), StatusCode::OK)
        .await;
    assert_eq!(first.id, again.id);
    assert_eq!(again.state.as_str(), "succeeded");
    assert_eq!(app.sleep_runs(first.id).await, 1);
    let problem = keyed
        .post_problem(
            "/jobs/sleep",
            &json!({"ms": 11}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:idempotency-key-reused");
}

#[tokio::test]
async fn the_job_list_pages_through_the_callers_jobs_newest_first() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.call("echo", &json!(i)).await.id);
    }
    ids.reverse();
    let page: JobPage = app.get("/jobs?limit=3", StatusCode::OK).await;
    let got: Vec<_> = page.jobs.iter().map(|j| j.id).collect();
    assert_eq!(got, ids[..3]);
    let next = page.next_before.expect("a next page");
    let page: JobPage = app
        .get(&format!("/jobs?limit=3&before={next}"), StatusCode::OK)
        .await;
    let got: Vec<_> = page.jobs.iter().map(|j| j.id).collect();
    assert_eq!(got, ids[3..]);
    assert!(page.next_before.is_none());
}

#[tokio::test]
async fn a_permanent_failure_is_answered_with_its_problem() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let job = app.call("sleep", &json!({"fail": "permanent"})).await;
    assert_eq!(job.state.as_str(), "failed");
    assert_eq!(
        surge_tests::job_problem(&job).kind,
        "urn:surge:problem:job-failed"
    );
    assert_eq!(job.attempts, Some(1));
    assert_eq!(app.sleep_runs(job.id).await, 0);
}

#[tokio::test]
async fn input_of_the_wrong_shape_fails_the_job_without_retrying() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let job = app.call("sleep", &json!({"ms": "soon"})).await;
    assert_eq!(job.state.as_str(), "failed");
    assert_eq!(
        surge_tests::job_problem(&job).kind,
        "urn:surge:problem:job-invalid-input"
    );
    assert_eq!(job.attempts, Some(1));
}

#[tokio::test]
async fn a_retryable_failure_is_retried_until_it_succeeds() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let job = app.call("sleep", &json!({"succeed_on_attempt": 3})).await;
    assert_eq!(job.state.as_str(), "succeeded");
    assert_eq!(job.attempts, Some(3));
    assert_eq!(job.result.as_ref().unwrap()["attempt"], 3);
    let errors = app.attempt_errors(job.id).await;
    assert_eq!(errors.as_array().unwrap().len(), 2, "{errors}");
}
