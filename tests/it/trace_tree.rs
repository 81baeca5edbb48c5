//! One trace per job, as an operator's tracing backend receives it: the gateway and the
//! function run as the processes they are in production, export over OTLP/gRPC to a receiver
//! inside the test, and the job's spans form one tree with the right parents, kinds and
//! services, from the HTTP request to the reply.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use surge_gateway::views::JobView;
use surge_tests::{OtlpReceiver, ReceivedSpan, SpanKind, TestApp, tree};

#[tokio::test]
async fn a_jobs_spans_form_one_tree_from_request_to_reply() {
    let mut app = TestApp::spawn().await;
    let otlp = OtlpReceiver::start().await;
    let endpoint = otlp.endpoint();
    let export = [
        ("SURGE_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        // The batch exporter sends every 5 s by default.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let _echo = app.start_function("echo", &export).await;
    // The gateway as its own process (the in-process one shares the test's subscriber).
    let (_gateway, url) = app.start_gateway_process(&export).await;

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let caller_span = "00f067aa0ba902b7";
    let job: JobView = app
        .api()
        .on(&url)
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .post("/jobs/echo", &json!({"traced": true}), StatusCode::OK)
        .await;
    let job_id = job.id.to_string();
    let job_id = job_id.as_str();

    let spans = otlp
        .wait_for_trace(&trace_id, 6, Duration::from_secs(20))
        .await;
    let shown = tree(&spans);
    let http = one(&spans, "POST /jobs/echo", &shown);
    assert_eq!(
        http.parent_span_id, caller_span,
        "continues the caller's trace\n{shown}"
    );
    assert_eq!(
        (http.kind, http.service_name.as_str()),
        (SpanKind::Server, "surge-gateway"),
        "{shown}"
    );
    let publish = child(
        &spans,
        http,
        "publish echo",
        SpanKind::Producer,
        "surge-gateway",
    );
    assert_eq!(publish.attribute("job_id"), Some(job_id), "{shown}");
    let process = child(
        &spans,
        publish,
        "process echo",
        SpanKind::Consumer,
        "surge-echo",
    );
    assert_eq!(process.attribute("job_id"), Some(job_id), "{shown}");
    child(
        &spans,
        process,
        "handle echo",
        SpanKind::Internal,
        "surge-echo",
    );
    let done = child(
        &spans,
        process,
        "publish echo completion",
        SpanKind::Producer,
        "surge-echo",
    );
    child(
        &spans,
        done,
        "receive completion",
        SpanKind::Consumer,
        "surge-gateway",
    );
    assert_eq!(spans.len(), 6, "nothing else in the job's trace\n{shown}");
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str, shown: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span {name:?} in\n{shown}");
    found[0]
}

/// The span `name`, checked to be a child of `parent`, of this kind and service.
fn child<'a>(
    spans: &'a [ReceivedSpan],
    parent: &ReceivedSpan,
    name: &str,
    kind: SpanKind,
    service: &str,
) -> &'a ReceivedSpan {
    let shown = tree(spans);
    let span = one(spans, name, &shown);
    assert_eq!(
        span.parent_span_id, parent.span_id,
        "{name} under {}\n{shown}",
        parent.name
    );
    assert_eq!(
        (span.kind, span.service_name.as_str()),
        (kind, service),
        "{name}\n{shown}"
    );
    span
}
