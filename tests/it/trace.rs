//! A job is one trace: `traceparent` travels in the CloudEvent from the gateway's request span
//! to the function's span and back on the completion.

use std::time::Duration;

use cloudevents::AttributesReader;
use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_contract::telemetry::trace_id_of;
use surge_gateway::views::JobView;
use surge_tests::{BrokerProbe, TestApp};

#[tokio::test]
async fn the_gateways_and_the_functions_spans_share_one_trace_id() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let (_probe, mut completions) = app.completions("#").await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let reply = app
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .exchange(Method::POST, "/jobs/echo")
        .json(&json!({"traced": true}))
        .expect::<JobView>(StatusCode::OK)
        .await;
    let gateway_tp = reply.header("traceparent").to_owned();
    let job = reply.body;
    assert_eq!(
        trace_id_of(&gateway_tp),
        Some(trace_id),
        "the gateway continued the caller's trace"
    );

    // The request event carried the gateway's context; the job record keeps it.
    let recorded: String = sqlx::query_scalar("SELECT trace_parent FROM job WHERE id = $1")
        .bind(job.id.0)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(trace_id_of(&recorded), Some(trace_id));

    // The completion was published from the function's span: same trace, its own span id.
    let delivery = BrokerProbe::next(&mut completions, Duration::from_secs(10)).await;
    let event = surge_contract::binding::decode(&delivery.properties, &delivery.data).unwrap();
    assert_eq!(event.subject(), Some(job.id.to_string().as_str()));
    let function_tp = event
        .extension("traceparent")
        .expect("traceparent on the completion")
        .to_string();
    assert_eq!(
        trace_id_of(&function_tp),
        Some(trace_id),
        "one trace id end to end"
    );
    let span_of = |tp: &str| tp.split('-').nth(2).unwrap().to_owned();
    assert_ne!(
        span_of(&function_tp),
        span_of(&gateway_tp),
        "the function's span is its own"
    );
    assert_ne!(span_of(&function_tp), caller_span);
}
