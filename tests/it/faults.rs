//! Faults: poison messages, SIGTERM with work in flight, the broker or the database dropping.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable};
use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_tests::{BrokerProbe, TestApp, TestAppBuilder, close_connections_named, job_problem};

#[tokio::test]
async fn a_poison_job_is_dead_after_its_attempts_and_other_jobs_are_unaffected() {
    let mut app = TestAppBuilder {
        max_attempts: 3,
        ..Default::default()
    }
    .spawn()
    .await;
    let sleep = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "2")])
        .await;
    let poison_body = json!({"panic": true});
    let poison = app.call("sleep", &poison_body);
    let fine = async {
        let mut ok = 0;
        for i in 0..5 {
            let job = app.call("sleep", &json!({"ms": i})).await;
            ok += i64::from(job.state.as_str() == "succeeded");
        }
        ok
    };
    let (job, ok) = tokio::join!(poison, fine);
    assert_eq!(ok, 5, "other jobs kept flowing");
    assert_eq!(job.state.as_str(), "dead");
    assert_eq!(job.attempts, Some(3));
    let problem = job_problem(&job);
    assert_eq!(problem.kind, "urn:surge:problem:job-dead");
    let detail = problem.detail.unwrap();
    assert!(detail.contains("panicked"), "{detail}");
    let errors = app.attempt_errors(job.id).await;
    assert_eq!(
        errors.as_array().unwrap().len(),
        3,
        "every attempt's reason is kept: {errors}"
    );
    // The panic's own words are the function's log's, never the job owner's to read.
    assert!(!errors.to_string().contains("asked to panic"), "{errors}");
    assert!(sleep.output().contains("asked to panic"));
}

/// Publishes a raw message to `sleep`'s queue, and returns the reason it was dead-lettered
/// with, once the function has refused it; then checks the function still works and still
/// drains and exits cleanly.
async fn dead_letter_reason(properties: BasicProperties, body: &[u8]) -> String {
    let mut app = TestApp::spawn().await;
    let mut sleep = app.start_function("sleep", &[]).await;
    let probe = BrokerProbe::connect().await;
    probe
        .publish(
            &format!("{}surge.jobs", app.prefix),
            "sleep",
            properties,
            body,
        )
        .await;
    let dead_queue = format!("{}fn.sleep.dead", app.prefix);
    surge_tests::eventually("a dead letter", Duration::from_secs(10), || async {
        (probe.queue_counts(&dead_queue).await.0 == 1).then_some(())
    })
    .await;
    let got = probe
        .channel
        .basic_get(dead_queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a dead letter");
    let reason =
        got.delivery.properties.headers().as_ref().unwrap().inner()["x-surge-dead-reason"].clone();
    let AMQPValue::LongString(reason) = reason else {
        panic!("reason is text")
    };

    let job = app.call("sleep", &json!({})).await;
    assert_eq!(
        job.state.as_str(),
        "succeeded",
        "the function is still consuming"
    );
    sleep.sigterm();
    assert!(sleep.wait(Duration::from_secs(10)).await.success());
    String::from_utf8(reason.as_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn an_event_with_a_malformed_attribute_is_dead_lettered_with_its_reason() {
    let mut headers = FieldTable::default();
    headers.insert("ce-specversion".into(), AMQPValue::LongString("1.0".into()));
    headers.insert("ce-id".into(), AMQPValue::LongString("m-1".into()));
    headers.insert(
        "ce-source".into(),
        AMQPValue::LongString("/producer".into()),
    );
    headers.insert(
        "ce-type".into(),
        AMQPValue::LongString("dev.surge.fn.sleep".into()),
    );
    headers.insert(
        "ce-time".into(),
        AMQPValue::LongString("last tuesday".into()),
    );
    let props = BasicProperties::default()
        .with_headers(headers)
        .with_content_type("application/json".into());
    let reason = dead_letter_reason(props, b"{}").await;
    assert!(reason.contains("time"), "{reason}");
}

#[tokio::test]
async fn a_message_that_is_not_a_cloud_event_is_dead_lettered_with_its_reason() {
    let not_an_event = BasicProperties::default().with_content_type("text/plain".into());
    let reason = dead_letter_reason(not_an_event, b"hello").await;
    assert!(reason.contains("not a CloudEvent"), "{reason}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_work_finish_and_exits_0() {
    let mut app = TestApp::spawn().await;
    let mut sleep = app.start_function("sleep", &[]).await;
    let id = app.submit_async("sleep", &json!({"ms": 1500})).await.id;
    app.wait_for_state(id, "running", Duration::from_secs(10))
        .await;
    sleep.sigterm();
    let status = sleep.wait(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        sleep.output()
    );
    assert_eq!(
        app.job_state(id).await.as_deref(),
        Some("succeeded"),
        "finished before exiting"
    );
    assert_eq!(app.sleep_runs(id).await, 1);
    let (ready, _) = BrokerProbe::connect()
        .await
        .queue_counts(&format!("{}fn.sleep", app.prefix))
        .await;
    assert_eq!(ready, 0, "nothing was handed back");
}

#[tokio::test]
async fn gateway_and_function_reconnect_after_the_broker_closes_their_connections() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    app.call("echo", &json!("before")).await;

    let closed = tokio::task::spawn_blocking({
        let prefix = app.prefix.clone();
        move || close_connections_named(&prefix)
    })
    .await
    .unwrap();
    assert_eq!(closed, 2, "the gateway's and the function's connections");

    // Readiness goes back to ready once the link is up again; then jobs flow end to end.
    surge_tests::eventually(
        "the gateway to be ready",
        Duration::from_secs(20),
        || async {
            (app.anonymous().status_of(Method::GET, "/readyz").await == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
    let probe = BrokerProbe::connect().await;
    surge_tests::eventually(
        "the function to consume again",
        Duration::from_secs(20),
        || async {
            (probe
                .queue_counts(&format!("{}fn.echo", app.prefix))
                .await
                .1
                == 1)
                .then_some(())
        },
    )
    .await;
    let job = app.call("echo", &json!("after")).await;
    assert_eq!(job.result, Some(json!("after")));
}

#[tokio::test]
async fn jobs_succeed_after_the_database_drops_every_connection() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    app.call("sleep", &json!({})).await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(
        killed >= 2,
        "the gateway's and the function's connections were cut ({killed})"
    );
    for i in 0..3 {
        let job = app.call("sleep", &json!({"ms": i})).await;
        assert_eq!(job.state.as_str(), "succeeded");
    }
}
