//! Logs as production writes them (JSON): every line inside a job names its job and its trace,
//! so "where did my job go?" is one search; no key or broker secret is ever written.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_tests::{TEST_API_KEY, TestApp, eventually};

/// The JSON lines of a log, each parsed (a line that is not JSON fails the test).
fn lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The fields of the span named `name` a line was written in, if any.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

#[tokio::test]
async fn json_logs_name_the_job_and_trace_on_every_line_and_hold_no_secret() {
    let mut app = TestApp::spawn().await;
    let json_logs = [
        ("SURGE_TELEMETRY__LOG_FORMAT", "json"),
        ("SURGE_TELEMETRY__LOG_FILTER", "debug"),
    ];
    let sleep = app.start_function("sleep", &json_logs).await;
    let (gateway, url) = app.start_gateway_process(&json_logs).await;

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    // A job that fails: the runtime logs it, inside the job's span.
    let response = app
        .client
        .request(Method::POST, format!("{url}/jobs/sleep"))
        .header("authorization", format!("Bearer {TEST_API_KEY}"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"fail": "permanent"}))
        .send()
        .await
        .unwrap();
    let job = TestApp::expect_json(response, StatusCode::OK).await;
    assert_eq!(job["state"], "failed");
    let job_id = job["id"].as_str().unwrap();

    // The function: every line written inside the job names it and its trace.
    let function_lines = eventually(
        "the function's log of the job",
        Duration::from_secs(10),
        || async {
            let lines = lines(&sleep.output());
            let in_job: Vec<Value> = lines
                .into_iter()
                .filter(|l| span(l, "job").is_some())
                .collect();
            (!in_job.is_empty()).then_some(in_job)
        },
    )
    .await;
    for line in &function_lines {
        let job_span = span(line, "job").unwrap();
        assert_eq!(job_span["job_id"], job_id, "{line}");
        assert_eq!(job_span["trace_id"], trace_id.as_str(), "{line}");
    }
    assert!(
        function_lines
            .iter()
            .any(|l| l["message"] == "job finished without a result"),
        "{function_lines:?}"
    );

    // The gateway: the request's closing line names the job and the trace.
    let gateway_lines = eventually(
        "the gateway's log of the request",
        Duration::from_secs(10),
        || async {
            let lines = lines(&gateway.output());
            let done: Vec<Value> = lines
                .into_iter()
                .filter(|l| span(l, "http").is_some_and(|s| s["path"] == "/jobs/sleep"))
                .collect();
            done.iter()
                .any(|l| span(l, "http").unwrap()["job_id"] == job_id)
                .then_some(done)
        },
    )
    .await;
    assert!(
        gateway_lines
            .iter()
            .filter_map(|l| span(l, "http"))
            .filter(|s| s["job_id"] == job_id)
            .all(|s| s["trace_id"] == trace_id.as_str()),
        "{gateway_lines:?}"
    );

    // No secret in either log: the key, the broker's password.
    for (who, log) in [("function", sleep.output()), ("gateway", gateway.output())] {
        assert!(!log.contains(TEST_API_KEY), "the {who} logged the API key");
        assert!(
            !log.contains("guest:guest"),
            "the {who} logged the broker URL's password"
        );
    }
}
