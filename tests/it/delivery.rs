//! The job record drives delivery: a job whose publish the broker never confirmed is
//! published again — at once by a repeat of its `Idempotency-Key`, else by a reconciler on any
//! gateway replica — while the jobs the broker confirmed are never published twice, however
//! long they wait.

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_tests::{FaultyProxy, TestApp, TestAppBuilder, eventually};

/// A Surge whose reconciler takes jobs `lease_ms` after they were recorded, looking every
/// 100 ms.
async fn with_lease(lease_ms: u64) -> TestApp {
    TestAppBuilder {
        delivery: Some((lease_ms, 100)),
        ..Default::default()
    }
    .spawn()
    .await
}

/// A job a gateway recorded and never published, due now.
async fn stranded(app: &TestApp, function: &str, input: &Value) -> String {
    stranded_due(app, function, input, 0.0).await
}

/// As [`stranded`], due `due_in` seconds from now, so that a test can change the job before
/// the reconciler may see it.
async fn stranded_due(app: &TestApp, function: &str, input: &Value, due_in: f64) -> String {
    app.record_job(function, input, Some(due_in))
        .await
        .to_string()
}

/// `surge_jobs_republished_total` of the in-process gateway, by outcome.
async fn republished(app: &TestApp, outcome: &str) -> u64 {
    app.metric("surge_jobs_republished_total", &[("outcome", outcome)])
        .await as u64
}

#[tokio::test]
async fn a_repeat_of_a_job_whose_publish_was_never_confirmed_publishes_it_again_at_once() {
    let proxy = FaultyProxy::broker().await;
    // A lease far longer than the test: only the repeat can make the job run.
    let mut app = TestAppBuilder {
        broker_url: Some(proxy.amqp_url()),
        delivery: Some((120_000, 100)),
        ..Default::default()
    }
    .spawn()
    .await;
    let _echo = app.start_function("echo", &[]).await;
    let submit = || {
        app.request(Method::POST, "/jobs/echo")
            .header("idempotency-key", "order-7")
            .header("prefer", "respond-async")
            .json(&json!({"order": 7}))
            .send()
    };
    // The broker takes the bytes nowhere: no confirm comes for the publish or its resend.
    proxy.freeze();
    let refused = submit().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused: Value = refused.json().await.unwrap();
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{refused}"
    );
    // The connection drops with what it held: the broker never got the job.
    proxy.cut();
    proxy.thaw();
    assert_eq!(app.count("job").await, 1, "the record stayed");
    // As a careful client does: the same key again, until it is accepted.
    let again: Value = eventually("the repeat accepted", Duration::from_secs(10), || async {
        let r = submit().await.ok()?;
        (r.status() == StatusCode::ACCEPTED).then_some(())?;
        r.json().await.ok()
    })
    .await;
    let id = again["id"].as_str().unwrap().to_owned();
    app.wait_for_state(&id, "succeeded", Duration::from_secs(10))
        .await;
    // Confirms are written a tenth of a second at a time.
    eventually("its confirm recorded", Duration::from_secs(5), || async {
        (app.count("job_unconfirmed").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_whose_gateway_died_before_the_confirm_is_published_by_another_replica() {
    let proxy = FaultyProxy::broker().await;
    // This test's in-process gateway is the replica that survives.
    let mut app = with_lease(2_000).await;
    let _sleep = app.start_function("sleep", &[]).await;
    let (doomed, url) = app
        .start_gateway_process(&[
            ("SURGE_BROKER__URL", &proxy.amqp_url()),
            ("SURGE_BROKER__PUBLISH_TIMEOUT_MS", "3000"),
            ("SURGE_BROKER__RECONNECT_MAX_MS", "500"),
            ("SURGE_DELIVERY__LEASE_MS", "7000"),
        ])
        .await;
    proxy.freeze();
    let client = app.client.clone();
    let request = tokio::spawn(
        client
            .post(format!("{url}/jobs/sleep"))
            .header("x-api-key", surge_tests::TEST_API_KEY)
            .header("prefer", "respond-async")
            .json(&json!({"ms": 1}))
            .send(),
    );
    // Recorded, its publish waiting for a confirm that does not come: kill the gateway.
    let id: String = eventually("the job recorded", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, String>("SELECT id::text FROM job")
            .fetch_optional(&app.db.pool)
            .await
            .unwrap()
    })
    .await;
    doomed.sigkill();
    assert!(request.await.unwrap().is_err(), "the caller got no answer");
    proxy.cut();
    assert_eq!(app.job_state(&id).await.as_deref(), Some("queued"));
    // Due 7 s after it was recorded; the other replica looks every 100 ms.
    app.wait_for_state(&id, "succeeded", Duration::from_secs(20))
        .await;
    assert_eq!(app.sleep_runs(&id).await, 1);
    eventually(
        "the republish counted and settled",
        Duration::from_secs(5),
        || async {
            (republished(&app, "confirmed").await == 1 && app.count("job_unconfirmed").await == 0)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_backlog_the_broker_holds_is_never_published_twice_however_long_it_waits() {
    // 10,000 in `just chaos` (release binaries); here what a debug build drains in seconds.
    const JOBS: usize = 2_000;
    // Every job is due 1 s after it was recorded: the whole backlog waits far longer.
    let mut app = with_lease(1_000).await;
    let queue = format!("{}fn.sleep", app.prefix);
    let submitted = futures_util::stream::iter(0..JOBS)
        .map(|_| {
            let request = app
                .request(Method::POST, "/jobs/sleep")
                .header("prefer", "respond-async")
                .json(&json!({"ms": 0}));
            async move { request.send().await.unwrap().status() }
        })
        .buffer_unordered(32)
        .filter(|status| std::future::ready(*status == StatusCode::ACCEPTED))
        .count()
        .await;
    assert_eq!(submitted, JOBS);
    // Several leases and many passes later, nothing was in doubt and nothing was sent twice.
    let probe = surge_tests::BrokerProbe::connect().await;
    eventually(
        "every confirm recorded",
        Duration::from_secs(10),
        || async { (app.count("job_unconfirmed").await == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(probe.queue_counts(&queue).await.0 as usize, JOBS);
    assert_eq!(republished(&app, "confirmed").await, 0);
    assert_eq!(republished(&app, "failed").await, 0);
    let _sleep = app
        .start_function(
            "sleep",
            &[
                ("SURGE_FUNCTION__CONCURRENCY", "32"),
                ("SURGE_DATABASE__MAX_CONNECTIONS", "16"),
            ],
        )
        .await;
    eventually("the backlog drained", Duration::from_secs(100), || async {
        (app.count("job WHERE state = 'succeeded'").await == JOBS as i64).then_some(())
    })
    .await;
    assert_eq!(app.count("sleep_run").await, JOBS as i64);
    assert_eq!(
        app.count("(SELECT job_id FROM sleep_run GROUP BY job_id HAVING count(*) > 1) twice")
            .await,
        0
    );
}

#[tokio::test]
async fn a_job_no_queue_takes_is_tried_again_at_the_backoffs_pace_not_in_a_loop() {
    let app = with_lease(200).await;
    // `nope` has no queue: every publish of it comes back unroutable.
    let id = stranded(&app, "nope", &json!({})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Due at 0, then 0.2, 0.4, 0.8, 1.6 s after each try: four or five tries in 3 s, where a
    // pass every 100 ms would have made thirty.
    let tries: i32 =
        sqlx::query_scalar("SELECT republished FROM job_unconfirmed WHERE job_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!((3..=6).contains(&tries), "{tries} tries");
    assert_eq!(republished(&app, "failed").await, tries as u64);
    assert_eq!(app.job_state(&id).await.as_deref(), Some("queued"));
}

#[tokio::test]
async fn a_job_finished_or_deleted_meanwhile_is_never_published_again() {
    let app = with_lease(200).await;
    // Not due until both are changed: a pass between the INSERT and the change would rightly
    // publish a job that was then still queued.
    let later = 3600.0;
    let finished = stranded_due(&app, "echo", &json!({}), later).await;
    sqlx::query(
        "UPDATE job SET state = 'succeeded', result = '1', finished_at = now() WHERE id = $1::uuid",
    )
    .bind(&finished)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let deleted = stranded_due(&app, "echo", &json!({}), later).await;
    sqlx::query("DELETE FROM job WHERE id = $1::uuid")
        .bind(&deleted)
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE job_unconfirmed SET due_at = now()")
        .execute(&app.db.pool)
        .await
        .unwrap();
    eventually("both forgotten", Duration::from_secs(5), || async {
        (app.count("job_unconfirmed").await == 0).then_some(())
    })
    .await;
    let probe = surge_tests::BrokerProbe::connect().await;
    assert_eq!(
        probe
            .queue_counts(&format!("{}fn.echo", app.prefix))
            .await
            .0,
        0,
        "nothing was published"
    );
    assert_eq!(republished(&app, "confirmed").await, 0);
}

#[tokio::test]
async fn the_reconciler_outlives_a_broker_outage_says_so_and_then_publishes() {
    let proxy = FaultyProxy::broker().await;
    let mut app = TestAppBuilder {
        broker_url: Some(proxy.amqp_url()),
        delivery: Some((400, 100)),
        ..Default::default()
    }
    .spawn()
    .await;
    let _echo = app.start_function("echo", &[]).await;
    proxy.freeze();
    proxy.cut();
    let ready = app.url("/readyz");
    let down: Value = eventually("readiness to say so", Duration::from_secs(10), || async {
        let r = app.client.get(&ready).send().await.ok()?;
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(())?;
        r.json().await.ok()
    })
    .await;
    assert!(
        down["detail"].as_str().unwrap().contains("broker"),
        "{down}"
    );
    let id = stranded(&app, "echo", &json!({"after": "the outage"})).await;
    eventually("a failed republish", Duration::from_secs(10), || async {
        (republished(&app, "failed").await > 0).then_some(())
    })
    .await;
    assert_eq!(app.job_state(&id).await.as_deref(), Some("queued"));
    proxy.thaw();
    app.wait_for_state(&id, "succeeded", Duration::from_secs(20))
        .await;
    eventually("ready again", Duration::from_secs(10), || async {
        let r = app.client.get(&ready).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}
