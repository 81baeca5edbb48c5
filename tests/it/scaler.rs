//! The external push scaler, driven by a gRPC client playing KEDA.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use surge_gateway::scaler::proto::external_scaler_client::ExternalScalerClient;
use surge_gateway::scaler::proto::{GetMetricsRequest, ScaledObjectRef};
use surge_tests::{TestApp, eventually};
use tonic::transport::Channel;

fn object(function: &str) -> ScaledObjectRef {
    ScaledObjectRef {
        name: format!("surge-{function}"),
        namespace: "surge".into(),
        scaler_metadata: HashMap::from([("function".to_owned(), function.to_owned())]),
    }
}

async fn keda(app: &TestApp) -> ExternalScalerClient<Channel> {
    let addr = app.scaler_addr.expect("scaler on");
    ExternalScalerClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

async fn metric(client: &mut ExternalScalerClient<Channel>, function: &str) -> i64 {
    let response = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(object(function)),
            metric_name: format!("surge-{function}"),
        })
        .await
        .unwrap()
        .into_inner();
    response.metric_values[0].metric_value
}

#[tokio::test]
async fn a_published_job_pushes_active_to_keda_without_waiting_for_a_poll() {
    // Depths are never polled here: only the push can report the new job.
    let app = TestApp::with_scaler(3_600_000).await;
    let mut client = keda(&app).await;
    let mut stream = client
        .stream_is_active(object("sleep"))
        .await
        .unwrap()
        .into_inner();
    assert!(!next_push(&mut stream).await, "idle at first");
    assert!(
        !client
            .is_active(object("sleep"))
            .await
            .unwrap()
            .into_inner()
            .result
    );

    app.submit_async("sleep", &json!({})).await;
    let pushed = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
    assert!(
        pushed.expect("pushed in time").unwrap().unwrap().result,
        "active pushed"
    );
    assert_eq!(metric(&mut client, "sleep").await, 1);
    let spec = client
        .get_metric_spec(object("sleep"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs[0].metric_name, "surge-sleep");
    assert!(spec.metric_specs[0].target_size_float > 0.0);
}

#[tokio::test]
async fn metrics_count_queued_and_in_flight_jobs_and_go_idle_only_when_both_are_done() {
    let mut app = TestApp::with_scaler(200).await;
    let _sleep = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "1")])
        .await;
    let mut client = keda(&app).await;
    let mut stream = client
        .stream_is_active(object("sleep"))
        .await
        .unwrap()
        .into_inner();
    assert!(!next_push(&mut stream).await);
    for _ in 0..2 {
        app.submit_async("sleep", &json!({"ms": 6000})).await;
    }
    assert!(next_push(&mut stream).await);
    // One job checked out (unacknowledged) and one ready: both count, as KEDA's http protocol
    // counts them (the broker's statistics lag by a few seconds).
    eventually(
        "queued + in-flight to be 2",
        Duration::from_secs(20),
        || {
            let mut client = client.clone();
            async move { (metric(&mut client, "sleep").await == 2).then_some(()) }
        },
    )
    .await;
    // Still active while the last job runs; inactive once nothing is queued or in flight.
    let idle = tokio::time::timeout(Duration::from_secs(40), stream.message()).await;
    assert!(!idle.expect("idle in time").unwrap().unwrap().result);
    let done = app.count("job WHERE state = 'succeeded'").await;
    assert_eq!(done, 2, "inactive was pushed only after both jobs finished");
}

#[tokio::test]
async fn a_trigger_without_a_known_function_is_refused() {
    let app = TestApp::with_scaler(1_000).await;
    let mut client = keda(&app).await;
    let unknown = client.is_active(object("nope")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let mut no_metadata = object("echo");
    no_metadata.scaler_metadata.clear();
    let missing = client.is_active(no_metadata).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    assert!(missing.message().contains("function"));
}

/// The stream's next `IsActive` value; a push that does not come fails the test, not hangs it.
async fn next_push(
    stream: &mut tonic::Streaming<surge_gateway::scaler::proto::IsActiveResponse>,
) -> bool {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a push within 10 s")
        .expect("stream")
        .expect("open")
        .result
}
