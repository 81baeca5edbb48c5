//! Bad requests get problem+json with a stable type and a useful detail, never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_tests::TestApp;

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    TestApp::expect_problem(response, status).await
}

#[tokio::test]
async fn an_unknown_function_is_404() {
    let app = TestApp::spawn().await;
    let body = problem(
        app.post_job("nope", &json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "urn:surge:problem:unknown-function");
    assert!(body["detail"].as_str().unwrap().contains("nope"));
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let app = TestApp::spawn().await;
    let big = json!({"blob": "x".repeat(app.options.body_limit_bytes + 1)});
    let body = problem(
        app.post_job("echo", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(body["type"], "urn:surge:problem:payload-too-large");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/jobs/echo")
        .header("content-type", "application/json")
        .body("{\"unterminated\": ")
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "urn:surge:problem:invalid-json");
    let count = app.count("job").await;
    assert_eq!(count, 0, "a rejected request is not a job");
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401() {
    let app = TestApp::spawn().await;
    let none = app
        .client
        .post(app.url("/jobs/echo"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let body = problem(none, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["type"], "urn:surge:problem:unauthorized");
    let wrong = app
        .client
        .get(app.url("/jobs"))
        .header("authorization", "Bearer not-the-key")
        .send()
        .await
        .unwrap();
    problem(wrong, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn the_bearer_header_is_accepted_too() {
    let app = TestApp::spawn().await;
    let ok = app
        .client
        .get(app.url("/jobs"))
        .header(
            "authorization",
            format!("Bearer {}", surge_tests::TEST_API_KEY),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/jobs/echo")
        .header("idempotency-key", "")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
}

#[tokio::test]
async fn unknown_jobs_and_routes_are_404_and_bad_paging_is_400() {
    let app = TestApp::spawn().await;
    let missing = app
        .request(Method::GET, &format!("/jobs/{}", uuid::Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(missing, StatusCode::NOT_FOUND).await["type"],
        "urn:surge:problem:not-found"
    );
    let garbage = app
        .request(Method::GET, "/jobs/not-a-uuid")
        .send()
        .await
        .unwrap();
    problem(garbage, StatusCode::NOT_FOUND).await;
    let method = app.request(Method::GET, "/events").send().await.unwrap();
    assert_eq!(
        problem(method, StatusCode::METHOD_NOT_ALLOWED).await["type"],
        "urn:surge:problem:method-not-allowed"
    );
    let route = app.request(Method::GET, "/nowhere").send().await.unwrap();
    problem(route, StatusCode::NOT_FOUND).await;
    let limit = app
        .request(Method::GET, "/jobs?limit=0")
        .send()
        .await
        .unwrap();
    problem(limit, StatusCode::BAD_REQUEST).await;
    let before = app
        .request(Method::GET, "/jobs?before=yesterday")
        .send()
        .await
        .unwrap();
    problem(before, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn health_answers_without_a_key_and_readiness_reports_the_links() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        TestApp::expect_json(ready, StatusCode::OK).await["status"],
        "ready"
    );
}

/// Found by schemathesis: Postgres hands a number near `f64::MAX` back as a 309-digit
/// integer that JSON parsers refuse, so such a job could be stored and never read again.
#[tokio::test]
async fn a_number_storage_cannot_give_back_is_400_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let body = problem(
        app.post_job("echo", &json!({"x": [1, f64::MAX]})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["type"], "urn:surge:problem:invalid-json");
    assert!(body["detail"].as_str().unwrap().contains("1e308"), "{body}");
    assert_eq!(app.count("job").await, 0);
    let listed = app.request(Method::GET, "/jobs").send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
}
