//! `POST /events`: CloudEvents from a producer built on the official Python SDK, in binary,
//! structured and batched mode; the caller's entity is stamped by the gateway.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_gateway::views::JobView;
use surge_tests::{BrokerProbe, TEST_API_KEY, TestApp, python_ce_client};

fn event(id: &str, ty: &str, data: Value) -> Value {
    json!({
        "attributes": {
            "id": id,
            "source": "/tests/producer",
            "type": ty,
            "datacontenttype": "application/json",
            // A client's attempt to pose as another entity; the gateway must ignore it.
            "surgeentity": "00000000-0000-0000-0000-000000000000",
        },
        "data": data,
    })
}

async fn send(app: &TestApp, mode: &str, event: &Value, prefer: Option<&str>) -> Value {
    let url = app.url("/events");
    let key = format!("X-API-Key: {TEST_API_KEY}");
    let mut args = vec![
        "http-send",
        url.as_str(),
        "--mode",
        mode,
        "--header",
        key.as_str(),
    ];
    let prefer = prefer.map(|p| format!("Prefer: {p}"));
    if let Some(p) = &prefer {
        args.extend(["--header", p.as_str()]);
    }
    python_ce_client(&args, event).await
}

#[tokio::test]
async fn a_python_producers_event_becomes_a_job_stamped_with_the_callers_entity() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let (_probe, mut completions) = app.completions("#").await;

    let sent = send(
        &app,
        "binary",
        &event("e-1", "dev.surge.fn.echo", json!({"n": 1})),
        None,
    )
    .await;
    assert_eq!(sent["status"], 202, "{sent}");
    let job: JobView = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    let id = job.id;
    assert_eq!(sent["headers"]["location"], format!("/jobs/{id}"));
    app.wait_for_state(id, "succeeded", Duration::from_secs(10))
        .await;

    let delivery = BrokerProbe::next(&mut completions, Duration::from_secs(10)).await;
    let completion = surge_contract::binding::decode(&delivery.properties, &delivery.data).unwrap();
    let owner: uuid::Uuid = sqlx::query_scalar("SELECT owner_id FROM job WHERE id = $1")
        .bind(id.0)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        completion.extension("surgeentity").map(ToString::to_string),
        Some(owner.to_string()),
        "the gateway's entity, not the client's"
    );

    // The same event again (same source and id): the first job, not a second one.
    let again = send(
        &app,
        "structured",
        &event("e-1", "dev.surge.fn.echo", json!({"n": 1})),
        None,
    )
    .await;
    assert_eq!(again["status"], 202, "{again}");
    let again: JobView = serde_json::from_str(again["body"].as_str().unwrap()).unwrap();
    assert_eq!(again.id, id);
}

#[tokio::test]
async fn prefer_wait_answers_with_the_completion_in_structured_mode() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let sent = send(
        &app,
        "structured",
        &event("e-2", "dev.surge.fn.echo", json!({"hi": "there"})),
        Some("wait=10"),
    )
    .await;
    assert_eq!(sent["status"], 200, "{sent}");
    assert!(
        sent["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/cloudevents+json")
    );
    let completion: Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(completion["type"], "dev.surge.fn.echo.completed");
    assert_eq!(completion["data"], json!({"hi": "there"}));
    assert_eq!(completion["surgestate"], "succeeded");
}

#[tokio::test]
async fn a_batch_is_accepted_whole_or_refused_whole() {
    let app = TestApp::spawn().await;
    let item = |id: &str, ty: &str| {
        json!({"specversion": "1.0", "id": id, "source": "/tests/batch", "type": ty,
               "datacontenttype": "application/json", "data": {"id": id}})
    };
    let post = |batch: Value| {
        app.exchange(Method::POST, "/events")
            .body("application/cloudevents-batch+json", batch.to_string())
    };
    let jobs: Vec<JobView> = post(json!([
        item("b-1", "dev.surge.fn.echo"),
        item("b-2", "dev.surge.fn.sleep")
    ]))
    .expect(StatusCode::ACCEPTED)
    .await
    .body;
    let functions: Vec<&str> = jobs.iter().map(|j| j.function.as_str()).collect();
    assert_eq!(functions, ["echo", "sleep"], "in order");

    let problem = post(json!([
        item("b-3", "dev.surge.fn.echo"),
        item("b-4", "com.example.unknown")
    ]))
    .expect_problem(StatusCode::BAD_REQUEST)
    .await
    .body;
    let detail = problem.detail.unwrap();
    assert!(detail.contains("com.example.unknown"), "{detail}");
    let count = app.count("job").await;
    assert_eq!(count, 2, "nothing of the refused batch was accepted");
}

#[tokio::test]
async fn a_body_that_is_not_a_cloud_event_is_400() {
    let app = TestApp::spawn().await;
    let problem = app
        .exchange(Method::POST, "/events")
        .body("application/json", "{}")
        .expect_problem(StatusCode::BAD_REQUEST)
        .await
        .body;
    let detail = problem.detail.unwrap();
    assert!(detail.contains("not a CloudEvent"), "{detail}");
}
