//! Metrics, as an operator sees them: a real Prometheus scrapes the gateway (on its own
//! metrics port) and two functions, and PromQL over its HTTP API returns what the test caused.

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_tests::{Prometheus, TestAppBuilder, free_addr};

#[tokio::test]
async fn prometheus_scrapes_the_gateway_and_functions_and_counts_what_happened() {
    let mut app = TestAppBuilder {
        metrics_port: true,
        scaler_poll_ms: Some(200),
        max_attempts: 2,
        ..Default::default()
    }
    .spawn()
    .await;
    let gateway_metrics = app.settings.http.metrics_addr.expect("metrics port");
    let (echo_addr, sleep_addr) = (free_addr().to_string(), free_addr().to_string());
    let _echo = app
        .start_function("echo", &[("SURGE_FUNCTION__HTTP_ADDR", &echo_addr)])
        .await;
    let _sleep = app
        .start_function("sleep", &[("SURGE_FUNCTION__HTTP_ADDR", &sleep_addr)])
        .await;

    // The public port does not serve metrics when they have a port of their own.
    let public = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);

    for i in 0..3 {
        let done = app.call("echo", &json!({"i": i})).await;
        assert_eq!(done["state"], "succeeded");
    }
    // A job that fails every attempt dies after two.
    let dead = app.call("sleep", &json!({"fail": "retryable"})).await;
    assert_eq!(dead["state"], "dead", "{dead}");
    for _ in 0..2 {
        let anonymous = app.client.get(app.url("/jobs")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    }
    let forged = app
        .request_as("surge_not-a-key", Method::GET, "/jobs")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    let prometheus = Prometheus::start(
        &app.prefix,
        &[
            ("gateway", gateway_metrics.to_string()),
            ("echo", echo_addr.clone()),
            ("sleep", sleep_addr.clone()),
        ],
    )
    .await;
    prometheus.wait_for("count(up == 1)", 3.0).await;
    let checks = [
        (
            r#"surge_http_requests_total{route="/jobs/{id}",method="POST",status="200"}"#,
            4.0,
        ),
        (r#"surge_jobs_accepted_total{function="echo"}"#, 3.0),
        (r#"surge_auth_rejections_total{reason="missing"}"#, 2.0),
        (r#"surge_auth_rejections_total{reason="invalid"}"#, 1.0),
        (
            r#"surge_jobs_finished_total{function="echo",state="succeeded"}"#,
            3.0,
        ),
        (
            r#"surge_job_end_to_end_seconds_count{function="echo",state="succeeded"}"#,
            3.0,
        ),
        (
            r#"surge_job_queue_wait_seconds_count{function="echo"}"#,
            3.0,
        ),
        (
            r#"surge_job_handler_seconds_count{function="sleep",outcome="retry"}"#,
            2.0,
        ),
        (r#"surge_jobs_dead_total{function="sleep"}"#, 1.0),
        (r#"surge_job_redeliveries_total{function="sleep"}"#, 1.0),
        (r#"surge_jobs_in_flight{function="echo"}"#, 0.0),
        (
            r#"surge_jobs_finished_total{function="sleep",state="dead"}"#,
            1.0,
        ),
        (
            r#"sum(surge_publish_confirm_seconds_count{job="gateway",target="jobs"})"#,
            4.0,
        ),
        (r#"surge_queue_consumers{function="echo"}"#, 1.0),
        ("count(surge_ready == 1)", 3.0),
    ];
    for (promql, expected) in checks {
        prometheus.wait_for(promql, expected).await;
    }
    // A job in flight is counted while it runs, and no longer after.
    let running = app.submit_async("sleep", &json!({"ms": 3000})).await;
    prometheus
        .wait_for(r#"surge_jobs_in_flight{function="sleep"}"#, 1.0)
        .await;
    app.wait_for_state(
        running["id"].as_str().unwrap(),
        "succeeded",
        std::time::Duration::from_secs(20),
    )
    .await;
    prometheus
        .wait_for(r#"surge_jobs_in_flight{function="sleep"}"#, 0.0)
        .await;
    // Requests whose paths hold ids, one matching no route, and an invented method: their
    // series are labelled by route template and a fixed method set, never by what was sent.
    let id = running["id"].as_str().unwrap();
    for path in [format!("/jobs/{id}"), format!("/nope/{id}")] {
        app.request(Method::GET, &path).send().await.unwrap();
    }
    app.request(Method::from_bytes(b"PURGE").unwrap(), "/jobs")
        .send()
        .await
        .unwrap();
    prometheus
        .wait_for(
            r#"sum(surge_http_requests_total{route="/jobs/{id}",method="GET"})"#,
            1.0,
        )
        .await;
    // `/nope/<id>`, and `/metrics` asked on the API port at the start.
    prometheus
        .wait_for(
            r#"sum(surge_http_requests_total{route="unmatched",method="GET"})"#,
            2.0,
        )
        .await;
    prometheus
        .wait_for(r#"sum(surge_http_requests_total{method="other"})"#, 1.0)
        .await;
    // No series carries an id: no function or route label value holds a UUID.
    for label in ["function", "route"] {
        let promql = format!(
            r#"count({{__name__=~"surge_.*", {label}=~".*[0-9a-f]{{8}}-[0-9a-f]{{4}}-.*"}})"#
        );
        let ids = prometheus.query(&promql).await;
        assert!(
            ids.is_empty(),
            "{ids:?}; targets: {}",
            prometheus.targets().await
        );
    }
}
