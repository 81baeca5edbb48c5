//! Events published straight to `surge.jobs` by a producer holding broker credentials are jobs
//! too: recorded on first sight by `source` + `id`, with no owner, and never run twice.

use std::time::Duration;

use chrono::Utc;
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use serde_json::json;
use surge_tests::{BrokerProbe, TestApp};

fn order_event(id: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("/shop/orders")
        .ty("dev.surge.fn.sleep")
        .time(Utc::now())
        .data("application/json", json!({"ms": 50}))
        .build()
        .unwrap()
}

async fn next_completion(consumer: &mut lapin::Consumer) -> Event {
    let delivery = BrokerProbe::next(consumer, Duration::from_secs(10)).await;
    surge_contract::binding::decode(&delivery.properties, &delivery.data).unwrap()
}

/// Publishes the encoded event to the jobs exchange as a trusted producer does.
async fn send(probe: &BrokerProbe, exchange: &str, message: &surge_contract::binding::AmqpMessage) {
    probe
        .publish(exchange, "sleep", message.properties.clone(), &message.body)
        .await;
}

async fn job_record(app: &TestApp, id: &str) -> (Option<uuid::Uuid>, i32, i64) {
    sqlx::query_as(
        "SELECT owner_id, attempts, (SELECT count(*) FROM sleep_run r WHERE r.job_id = job.id) \
         FROM job WHERE event_source = '/shop/orders' AND event_id = $1",
    )
    .bind(id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_redelivered_finished_job_is_answered_from_its_record_not_rerun() {
    let mut app = TestApp::spawn().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let (probe, mut completions) = app.completions("-.-.sleep.*").await;
    let message = surge_contract::binding::encode(order_event("order-7")).unwrap();
    let exchange = format!("{}surge.jobs", app.prefix);

    send(&probe, &exchange, &message).await;
    let first = next_completion(&mut completions).await;
    assert_eq!(first.ty(), "dev.surge.fn.sleep.completed");
    send(&probe, &exchange, &message).await;
    let again = next_completion(&mut completions).await;

    assert_eq!(first.id(), again.id(), "the same completion, republished");
    assert_eq!(first.time(), again.time());
    assert_eq!(
        surge_contract::binding::json_data(&first).unwrap(),
        surge_contract::binding::json_data(&again).unwrap()
    );
    let (owner, attempts, runs) = job_record(&app, "order-7").await;
    assert_eq!(owner, None, "no owner entity");
    assert_eq!(attempts, 1, "the redelivery did not run it");
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn duplicates_delivered_at_once_run_the_handler_once() {
    let mut app = TestApp::spawn().await;
    let _sleep = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "4")])
        .await;
    let (probe, mut completions) = app.completions("-.-.sleep.*").await;
    let message = surge_contract::binding::encode(order_event("order-8")).unwrap();
    let exchange = format!("{}surge.jobs", app.prefix);
    for _ in 0..3 {
        probe
            .publish(
                &exchange,
                "sleep",
                message.properties.clone(),
                &message.body,
            )
            .await;
    }
    let mut results = Vec::new();
    for _ in 0..3 {
        let completion = next_completion(&mut completions).await;
        assert_eq!(completion.ty(), "dev.surge.fn.sleep.completed");
        results.push(surge_contract::binding::json_data(&completion).unwrap());
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "one result for all: {results:?}"
    );
    let (_, _, runs) = job_record(&app, "order-8").await;
    assert_eq!(runs, 1, "the effect happened once");
    let log = std::fs::read_to_string(&_sleep.log).unwrap();
    assert!(
        !log.contains("another delivery finished this job first"),
        "no handler ran alongside another: {log}"
    );
}
