//! Metrics, as an operator sees them: a real Prometheus scrapes the gateway (on its own
//! metrics port) and two functions, and PromQL over its HTTP API returns what the test caused.

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_gateway::views::JobView;
use surge_tests::{FunctionProcess, Prometheus, TestApp, TestAppBuilder, free_addr};

/// A Surge serving metrics on a port of their own, `echo` and `sleep` serving theirs, and
/// the gateway's metrics address with the functions'.
struct Scraped {
    app: TestApp,
    targets: [(&'static str, String); 3],
    _functions: [FunctionProcess; 2],
}

async fn scraped() -> Scraped {
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
    let echo = app
        .start_function("echo", &[("SURGE_FUNCTION__HTTP_ADDR", &echo_addr)])
        .await;
    let sleep = app
        .start_function("sleep", &[("SURGE_FUNCTION__HTTP_ADDR", &sleep_addr)])
        .await;
    Scraped {
        app,
        targets: [
            ("gateway", gateway_metrics.to_string()),
            ("echo", echo_addr),
            ("sleep", sleep_addr),
        ],
        _functions: [echo, sleep],
    }
}

/// Prometheus scraping the three targets, once it has scraped each of them.
async fn prometheus(scraped: &Scraped) -> Prometheus {
    let prometheus = Prometheus::start(&scraped.app.prefix, &scraped.targets).await;
    prometheus.wait_for("count(up == 1)", 3.0).await;
    prometheus
}

#[tokio::test]
async fn the_public_port_does_not_serve_metrics_when_they_have_a_port_of_their_own() {
    let scraped = scraped().await;
    scraped
        .app
        .get_problem("/metrics", StatusCode::NOT_FOUND)
        .await;
}

#[tokio::test]
async fn prometheus_scrapes_the_gateway_and_functions_and_counts_what_happened() {
    let scraped = scraped().await;
    let app = &scraped.app;
    for i in 0..3 {
        let done = app.call("echo", &json!({"i": i})).await;
        assert_eq!(done.state.as_str(), "succeeded");
    }
    // A job that fails every attempt dies after two.
    let dead = app.call("sleep", &json!({"fail": "retryable"})).await;
    assert_eq!(dead.state.as_str(), "dead", "{dead:?}");
    for _ in 0..2 {
        app.anonymous()
            .get_problem("/jobs", StatusCode::UNAUTHORIZED)
            .await;
    }
    app.as_key("surge_not-a-key")
        .get_problem("/jobs", StatusCode::UNAUTHORIZED)
        .await;

    let prometheus = prometheus(&scraped).await;
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
}

#[tokio::test]
async fn a_job_in_flight_is_counted_while_it_runs_and_no_longer_after() {
    let scraped = scraped().await;
    let app = &scraped.app;
    let prometheus = prometheus(&scraped).await;
    let running = app.submit_async("sleep", &json!({"ms": 3000})).await;
    prometheus
        .wait_for(r#"surge_jobs_in_flight{function="sleep"}"#, 1.0)
        .await;
    app.wait_for_state(running.id, "succeeded", std::time::Duration::from_secs(20))
        .await;
    prometheus
        .wait_for(r#"surge_jobs_in_flight{function="sleep"}"#, 0.0)
        .await;
}

/// Requests whose paths hold ids, unmatched ones and an invented method: their series are
/// labelled by route template and a fixed method set, never by what was sent.
#[tokio::test]
async fn no_series_is_labelled_with_an_id_or_a_method_a_caller_invented() {
    let scraped = scraped().await;
    let app = &scraped.app;
    let job = app.call("echo", &json!({})).await;
    let id = job.id;
    app.get::<JobView>(&format!("/jobs/{id}"), StatusCode::OK)
        .await;
    for path in [format!("/nope/{id}"), "/metrics".to_owned()] {
        app.get_problem(&path, StatusCode::NOT_FOUND).await;
    }
    let purge = app
        .exchange(Method::from_bytes(b"PURGE").unwrap(), "/jobs")
        .send()
        .await;
    assert!(
        purge.status().is_client_error(),
        "an invented method is refused: {}",
        purge.status()
    );

    let prometheus = prometheus(&scraped).await;
    prometheus
        .wait_for(
            r#"sum(surge_http_requests_total{route="/jobs/{id}",method="GET"})"#,
            1.0,
        )
        .await;
    // `/nope/<id>`, and `/metrics` asked on the API port.
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
