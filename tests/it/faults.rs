//! Faults: poison messages, SIGTERM with work in flight, the broker or the database dropping.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable};
use reqwest::StatusCode;
use serde_json::json;
use surge_tests::{BrokerProbe, TestApp, TestAppBuilder, close_connections_named};

#[tokio::test]
async fn a_poison_job_is_dead_after_its_attempts_and_other_jobs_are_unaffected() {
    let mut app = TestAppBuilder {
        max_attempts: 3,
        ..Default::default()
    }
    .spawn()
    .await;
    let _sleep = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "2")])
        .await;
    let poison_body = json!({"panic": true});
    let poison = app.post_job("sleep", &poison_body);
    let fine = async {
        let mut ok = 0;
        for i in 0..5 {
            let job = app.call("sleep", &json!({"ms": i})).await;
            ok += i64::from(job["state"] == "succeeded");
        }
        ok
    };
    let (poison, ok) = tokio::join!(poison, fine);
    assert_eq!(ok, 5, "other jobs kept flowing");
    let job = TestApp::expect_json(poison, StatusCode::OK).await;
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["error"]["type"], "urn:surge:problem:job-dead");
    assert!(
        job["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{job}"
    );
    let errors = app.attempt_errors(job["id"].as_str().unwrap()).await;
    assert_eq!(
        errors.as_array().unwrap().len(),
        3,
        "every attempt's reason is kept: {errors}"
    );
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_with_its_reason_and_the_function_keeps_working() {
    let mut app = TestApp::spawn().await;
    let mut sleep = app.start_function("sleep", &[]).await;
    let probe = BrokerProbe::connect().await;
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
    probe
        .publish(&format!("{}surge.jobs", app.prefix), "sleep", props, b"{}")
        .await;
    let not_an_event = BasicProperties::default().with_content_type("text/plain".into());
    probe
        .publish(
            &format!("{}surge.jobs", app.prefix),
            "sleep",
            not_an_event,
            b"hello",
        )
        .await;

    let dead_queue = format!("{}fn.sleep.dead", app.prefix);
    surge_tests::eventually("two dead letters", Duration::from_secs(10), || async {
        (probe.queue_counts(&dead_queue).await.0 == 2).then_some(())
    })
    .await;
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let got = probe
            .channel
            .basic_get(dead_queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a dead letter");
        let reason =
            got.delivery.properties.headers().as_ref().unwrap().inner()["x-surge-dead-reason"]
                .clone();
        let AMQPValue::LongString(reason) = reason else {
            panic!("reason is text")
        };
        reasons.push(String::from_utf8(reason.as_bytes().to_vec()).unwrap());
    }
    reasons.sort();
    assert!(reasons[0].contains("time"), "{reasons:?}");
    assert!(reasons[1].contains("not a CloudEvent"), "{reasons:?}");

    let job = app.call("sleep", &json!({})).await;
    assert_eq!(job["state"], "succeeded", "the function is still consuming");
    sleep.sigterm();
    assert!(sleep.wait(Duration::from_secs(10)).await.success());
}

#[tokio::test]
async fn sigterm_lets_in_flight_work_finish_and_exits_0() {
    let mut app = TestApp::spawn().await;
    let mut sleep = app.start_function("sleep", &[]).await;
    let id = app.submit_async("sleep", &json!({"ms": 1500})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_state(&id, "running", Duration::from_secs(10))
        .await;
    sleep.sigterm();
    let status = sleep.wait(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "exit status {status}; output:\n{}",
        sleep.output()
    );
    assert_eq!(
        app.job_state(&id).await.as_deref(),
        Some("succeeded"),
        "finished before exiting"
    );
    assert_eq!(app.sleep_runs(&id).await, 1);
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
            let r = app.client.get(app.url("/readyz")).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(())
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
    assert_eq!(job["result"], "after");
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
        assert_eq!(job["state"], "succeeded");
    }
}
