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
    let response = app.post_job("echo", &body).await;
    let job: JobView =
        serde_json::from_value(TestApp::expect_json(response, StatusCode::OK).await).unwrap();
    assert_eq!(job.state.as_str(), "succeeded");
    assert_eq!(job.result, Some(body));
    assert_eq!(job.function, "echo");
    assert_eq!(job.attempts, Some(1));
    let stored = app.job_state(&job.id.to_string()).await;
    assert_eq!(stored.as_deref(), Some("succeeded"));
}

#[tokio::test]
async fn times_are_utc_rfc_3339_with_z() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let job = app.call("echo", &json!(1)).await;
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
    let response = app
        .request(Method::POST, "/jobs/echo")
        .header("prefer", "respond-async")
        .json(&json!({"x": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["preference-applied"], "respond-async");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: JobView =
        serde_json::from_value(TestApp::expect_json(response, StatusCode::ACCEPTED).await).unwrap();
    assert_eq!(location, format!("/jobs/{}", job.id));
    assert_eq!(job.state.as_str(), "queued");
    app.wait_for_state(&job.id.to_string(), "succeeded", Duration::from_secs(10))
        .await;
    let read = app.request(Method::GET, &location).send().await.unwrap();
    let read: JobView =
        serde_json::from_value(TestApp::expect_json(read, StatusCode::OK).await).unwrap();
    assert_eq!(read.result, Some(json!({"x": 1})));
    assert_eq!(read.input, Some(json!({"x": 1})));
    assert!(read.started_at.is_some() && read.finished_at.is_some());
}

#[tokio::test]
async fn a_sync_call_past_its_wait_falls_back_to_202_and_the_job_still_completes() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let response = app
        .request(Method::POST, "/jobs/sleep")
        .header("prefer", "wait=1")
        .json(&json!({"ms": 2500}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("location"));
    let job = TestApp::expect_json(response, StatusCode::ACCEPTED).await;
    let id = job["id"].as_str().unwrap().to_owned();
    app.wait_for_state(&id, "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(app.sleep_runs(&id).await, 1);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_job_and_runs_it_once() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let send = |body: serde_json::Value| {
        app.request(Method::POST, "/jobs/sleep")
            .header("idempotency-key", "order-42")
            .json(&body)
            .send()
    };
    let first = TestApp::expect_json(send(json!({"ms": 10})).await.unwrap(), StatusCode::OK).await;
    let again = TestApp::expect_json(send(json!({"ms": 10})).await.unwrap(), StatusCode::OK).await;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(again["state"], "succeeded");
    assert_eq!(app.sleep_runs(first["id"].as_str().unwrap()).await, 1);
    let other = send(json!({"ms": 11})).await.unwrap();
    let problem = TestApp::expect_json(other, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["type"], "urn:surge:problem:idempotency-key-reused");
}

#[tokio::test]
async fn the_job_list_pages_through_the_callers_jobs_newest_first() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let job = app.call("echo", &json!(i)).await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let page = app
        .request(Method::GET, "/jobs?limit=3")
        .send()
        .await
        .unwrap();
    let page: JobPage =
        serde_json::from_value(TestApp::expect_json(page, StatusCode::OK).await).unwrap();
    let got: Vec<String> = page.jobs.iter().map(|j| j.id.to_string()).collect();
    assert_eq!(got, ids[..3]);
    let next = page.next_before.expect("a next page");
    let page = app
        .request(Method::GET, &format!("/jobs?limit=3&before={next}"))
        .send()
        .await
        .unwrap();
    let page: JobPage =
        serde_json::from_value(TestApp::expect_json(page, StatusCode::OK).await).unwrap();
    let got: Vec<String> = page.jobs.iter().map(|j| j.id.to_string()).collect();
    assert_eq!(got, ids[3..]);
    assert!(page.next_before.is_none());
}

#[tokio::test]
async fn a_permanent_failure_is_answered_with_its_problem() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let job = app.call("sleep", &json!({"fail": "permanent"})).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["error"]["type"], "urn:surge:problem:job-failed");
    assert_eq!(job["attempts"], 1);
    let id = job["id"].as_str().unwrap();
    assert_eq!(app.sleep_runs(id).await, 0);
}

#[tokio::test]
async fn input_of_the_wrong_shape_fails_the_job_without_retrying() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let job = app.call("sleep", &json!({"ms": "soon"})).await;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["error"]["type"], "urn:surge:problem:job-invalid-input");
    assert_eq!(job["attempts"], 1);
}

#[tokio::test]
async fn a_retryable_failure_is_retried_until_it_succeeds() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let job = TestApp::expect_json(
        app.post_job("sleep", &json!({"succeed_on_attempt": 3}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["result"]["attempt"], 3);
    let errors = app.attempt_errors(job["id"].as_str().unwrap()).await;
    assert_eq!(errors.as_array().unwrap().len(), 2, "{errors}");
}
