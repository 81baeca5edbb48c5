//! Logs as production writes them (JSON): every line inside a job names its job and its trace,
//! so "where did my job go?" is one search; no key or broker secret is ever written.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use surge_gateway::views::JobView;
use surge_tests::{FunctionProcess, TEST_API_KEY, TestApp, eventually};

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

/// `sleep` and a gateway process, both logging JSON at `debug`, and a job that failed in
/// `sleep` (the runtime logs it, inside the job's span), called with a trace of its own.
struct Logged {
    _app: TestApp,
    sleep: FunctionProcess,
    gateway: FunctionProcess,
    job_id: String,
    trace_id: String,
}

async fn a_failed_job_logged_as_json() -> Logged {
    let mut app = TestApp::spawn().await;
    let json_logs = [
        ("SURGE_TELEMETRY__LOG_FORMAT", "json"),
        ("SURGE_TELEMETRY__LOG_FILTER", "debug"),
    ];
    let sleep = app.start_function("sleep", &json_logs).await;
    let (gateway, url) = app.start_gateway_process(&json_logs).await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let job: JobView = app
        .as_bearer(TEST_API_KEY)
        .on(&url)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .post("/jobs/sleep", &json!({"fail": "permanent"}), StatusCode::OK)
        .await;
    assert_eq!(job.state.as_str(), "failed");
    Logged {
        _app: app,
        sleep,
        gateway,
        job_id: job.id.to_string(),
        trace_id,
    }
}

#[tokio::test]
async fn every_line_a_function_writes_inside_a_job_names_the_job_and_its_trace() {
    let logged = a_failed_job_logged_as_json().await;
    let function_lines = eventually(
        "the function's log of the job",
        Duration::from_secs(10),
        || async {
            let lines = lines(&logged.sleep.output());
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
        assert_eq!(job_span["job_id"], logged.job_id.as_str(), "{line}");
        assert_eq!(job_span["trace_id"], logged.trace_id.as_str(), "{line}");
    }
    assert!(
        function_lines
            .iter()
            .any(|l| l["message"] == "job finished without a result"),
        "{function_lines:?}"
    );
}

#[tokio::test]
async fn the_gateways_line_closing_a_request_names_its_job_and_trace() {
    let logged = a_failed_job_logged_as_json().await;
    let job_id = logged.job_id.as_str();
    let gateway_lines = eventually(
        "the gateway's log of the request",
        Duration::from_secs(10),
        || async {
            let lines = lines(&logged.gateway.output());
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
            .all(|s| s["trace_id"] == logged.trace_id.as_str()),
        "{gateway_lines:?}"
    );
}

#[tokio::test]
async fn neither_the_gateway_nor_a_function_logs_the_api_key_or_the_brokers_password() {
    let logged = a_failed_job_logged_as_json().await;
    // Both have logged the job by the time it is in their logs; then look at everything.
    for (who, process) in [("function", &logged.sleep), ("gateway", &logged.gateway)] {
        eventually(
            &format!("the {who}'s log of the job"),
            Duration::from_secs(10),
            || async { process.output().contains(&logged.job_id).then_some(()) },
        )
        .await;
        let log = process.output();
        assert!(!log.contains(TEST_API_KEY), "the {who} logged the API key");
        assert!(
            !log.contains("guest:guest"),
            "the {who} logged the broker URL's password"
        );
    }
}
