//! Bad requests get problem+json with a stable type and a useful detail, never a 5xx.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_gateway::routes::health::Health;
use surge_gateway::views::JobPage;
use surge_tests::{TEST_API_KEY, TestApp, TestAppBuilder};

#[tokio::test]
async fn an_unknown_function_is_404() {
    let app = TestApp::spawn().await;
    let problem = app
        .post_problem("/jobs/nope", &json!({}), StatusCode::NOT_FOUND)
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:unknown-function");
    assert!(problem.detail.unwrap().contains("nope"));
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let app = TestApp::spawn().await;
    let big = json!({"blob": "x".repeat(app.options.body_limit_bytes + 1)});
    let problem = app
        .post_problem("/jobs/echo", &big, StatusCode::PAYLOAD_TOO_LARGE)
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:payload-too-large");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400() {
    let app = TestApp::spawn().await;
    let problem = app
        .exchange(Method::POST, "/jobs/echo")
        .body("application/json", "{\"unterminated\": ")
        .expect_problem(StatusCode::BAD_REQUEST)
        .await
        .body;
    assert_eq!(problem.kind, "urn:surge:problem:invalid-json");
    let count = app.count("job").await;
    assert_eq!(count, 0, "a rejected request is not a job");
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401() {
    let app = TestApp::spawn().await;
    let none = app
        .anonymous()
        .exchange(Method::POST, "/jobs/echo")
        .json(&json!({}))
        .expect_problem(StatusCode::UNAUTHORIZED)
        .await;
    assert_eq!(none.header("www-authenticate"), "Bearer");
    assert_eq!(none.body.kind, "urn:surge:problem:unauthorized");
    let wrong = app
        .as_bearer("not-the-key")
        .get_problem("/jobs", StatusCode::UNAUTHORIZED)
        .await;
    assert_eq!(wrong.kind, "urn:surge:problem:unauthorized");
}

#[tokio::test]
async fn the_bearer_header_is_accepted_too() {
    let app = TestApp::spawn().await;
    let page: JobPage = app
        .as_bearer(TEST_API_KEY)
        .get("/jobs", StatusCode::OK)
        .await;
    assert!(page.jobs.is_empty());
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400() {
    let app = TestApp::spawn().await;
    let problem = app
        .header("idempotency-key", "")
        .post_problem("/jobs/echo", &json!({}), StatusCode::BAD_REQUEST)
        .await;
    assert!(problem.detail.unwrap().contains("Idempotency-Key"));
}

#[tokio::test]
async fn an_unknown_or_malformed_job_id_is_404() {
    let app = TestApp::spawn().await;
    let missing = app
        .get_problem(
            &format!("/jobs/{}", uuid::Uuid::now_v7()),
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(missing.kind, "urn:surge:problem:not-found");
    let garbage = app
        .get_problem("/jobs/not-a-uuid", StatusCode::NOT_FOUND)
        .await;
    assert_eq!(garbage.kind, "urn:surge:problem:not-found");
}

#[tokio::test]
async fn an_unknown_route_is_404_and_a_wrong_method_405() {
    let app = TestApp::spawn().await;
    let method = app
        .get_problem("/events", StatusCode::METHOD_NOT_ALLOWED)
        .await;
    assert_eq!(method.kind, "urn:surge:problem:method-not-allowed");
    let route = app.get_problem("/nowhere", StatusCode::NOT_FOUND).await;
    assert_eq!(route.kind, "urn:surge:problem:not-found");
}

#[tokio::test]
async fn a_page_limit_of_zero_or_a_malformed_cursor_is_400() {
    let app = TestApp::spawn().await;
    for path in ["/jobs?limit=0", "/jobs?before=yesterday"] {
        let problem = app.get_problem(path, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem.kind, "urn:surge:problem:bad-request", "{path}");
    }
}

#[tokio::test]
async fn health_answers_without_a_key_and_readiness_reports_the_links() {
    let app = TestApp::spawn().await;
    let health: Health = app.anonymous().get("/healthz", StatusCode::OK).await;
    assert_eq!(health.status, "ok");
    let ready: Health = app.anonymous().get("/readyz", StatusCode::OK).await;
    assert_eq!(ready.status, "ready");
}

/// Found by schemathesis: Postgres hands a number near `f64::MAX` back as a 309-digit
/// integer that JSON parsers refuse, so such a job could be stored and never read again.
#[tokio::test]
async fn a_number_storage_cannot_give_back_is_422_naming_the_field_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let problem = app
        .post_problem(
            "/jobs/echo",
            &json!({"x": [1, f64::MAX]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:unstorable-value");
    let detail = problem.detail.unwrap();
    assert!(
        detail.contains("1e308") && detail.contains("/x/1"),
        "{detail}"
    );
    assert_eq!(app.count("job").await, 0);
    let listed: JobPage = app.get("/jobs", StatusCode::OK).await;
    assert!(listed.jobs.is_empty());
}

#[tokio::test]
async fn nul_in_an_input_is_422_naming_the_field_at_every_way_in_and_nothing_is_stored() {
    let app = TestAppBuilder {
        dev_admin: true,
        ..Default::default()
    }
    .spawn()
    .await;
    // POST /jobs: in a string, and in a member name.
    let problem = app
        .post_problem(
            "/jobs/echo",
            &json!({"order": {"note": "a\u{0}b"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:unstorable-value");
    assert!(problem.detail.unwrap().contains("/order/note"));
    let problem = app
        .post_problem(
            "/jobs/echo",
            &json!({"k\u{0}": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(problem.detail.unwrap().contains("member name"));
    // POST /events, a batch: the event is named, nothing of the batch is taken.
    let batch = json!([
        {"specversion": "1.0", "id": "fine", "source": "/nul", "type": "dev.surge.fn.echo", "data": {}},
        {"specversion": "1.0", "id": "bad", "source": "/nul", "type": "dev.surge.fn.echo",
         "data": {"text": "\u{0}"}},
    ]);
    let reply = app
        .exchange(reqwest::Method::POST, "/events")
        .body("application/cloudevents-batch+json", batch.to_string())
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    let detail = reply.body.detail.unwrap();
    assert!(
        detail.contains("\"bad\"") && detail.contains("/text"),
        "{detail}"
    );
    // A setting's value.
    let problem = app
        .post_problem(
            "/settings",
            &json!({"name": "greeting", "value": {"text": "\u{0}"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(problem.detail.unwrap().contains("/text"));
    assert_eq!(app.count("job").await, 0, "nothing was stored");
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestAppBuilder {
        http_timeouts: Some((500, 4_000)),
        ..Default::default()
    }
    .spawn()
    .await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // Half a request, never finished: a slowloris holding a connection.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: surge\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after 5 s (header_read_timeout_ms is 500)"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    // A client that sends its request in time is served as before.
    let healthy = app
        .request(reqwest::Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_is_answered_503_within_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestAppBuilder {
        http_timeouts: Some((5_000, 1_000)),
        ..Default::default()
    }
    .spawn()
    .await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /jobs/echo HTTP/1.1\r\nHost: surge\r\nX-Api-Key: {TEST_API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("no answer within 5 s (request_timeout_ms is 1000)")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("http.request_timeout_ms"), "{answer}");
    assert_eq!(app.count("job").await, 0);
}
