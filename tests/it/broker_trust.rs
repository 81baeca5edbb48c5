//! A message on the broker is not trusted to say what a job's owner asked for: one that
//! names a recorded job runs that job's recorded input, on its own function's queue only.

use std::time::Duration;

use chrono::Utc;
use cloudevents::{EventBuilder, EventBuilderV10};
use serde_json::{Value, json};
use surge_tests::{BrokerProbe, TestApp, eventually};

/// Records a job as a gateway does (owned by `dev`), without publishing it.
async fn recorded(app: &TestApp, function: &str, input: &Value) -> uuid::Uuid {
    let entity = surge_gateway::store::entities::ensure(&app.db.pool, "dev", "dev@localhost")
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO job (id, owner_id, function, event_source, event_id, input)
         VALUES ($1, $2, $3, '/surge/gateway', $1::text, $4)",
    )
    .bind(id)
    .bind(entity)
    .bind(function)
    .bind(input)
    .execute(&app.db.pool)
    .await
    .unwrap();
    id
}

/// Publishes, as anyone holding publish rights could, an event claiming to be a gateway's
/// request for job `id` of `function`, carrying `input`.
async fn forge(app: &TestApp, queue_of: &str, function: &str, id: uuid::Uuid, input: Value) {
    let event = EventBuilderV10::new()
        .id(id.to_string())
        .source(surge_contract::job::GATEWAY_SOURCE)
        .ty(format!("dev.surge.fn.{function}"))
        .time(Utc::now())
        .data("application/json", input)
        .build()
        .unwrap();
    let message = surge_contract::binding::encode(event).unwrap();
    BrokerProbe::connect()
        .await
        .publish(
            &format!("{}surge.jobs", app.prefix),
            queue_of,
            message.properties.clone(),
            &message.body,
        )
        .await;
}

async fn result_of(app: &TestApp, id: uuid::Uuid) -> (String, i32, Option<Value>) {
    sqlx::query_as("SELECT state::text, attempts, result FROM job WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_forged_request_runs_the_recorded_input_never_its_own() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let id = recorded(&app, "echo", &json!({"asked": "by the owner"})).await;
    forge(&app, "echo", "echo", id, json!({"asked": "by a forger"})).await;
    let (state, _, result) = eventually("the job to finish", Duration::from_secs(15), || async {
        let row = result_of(&app, id).await;
        (row.0 == "succeeded").then_some(row)
    })
    .await;
    assert_eq!(state, "succeeded");
    assert_eq!(result, Some(json!({"asked": "by the owner"})));
}

#[tokio::test]
async fn a_request_naming_another_functions_job_is_dead_lettered_and_the_job_untouched() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let victim = recorded(&app, "sleep", &json!({"ms": 1})).await;
    forge(&app, "echo", "echo", victim, json!({"anything": true})).await;
    let probe = BrokerProbe::connect().await;
    let dead = format!("{}fn.echo.dead", app.prefix);
    eventually(
        "the forgery dead-lettered",
        Duration::from_secs(15),
        || async { (probe.queue_counts(&dead).await.0 == 1).then_some(()) },
    )
    .await;
    let (state, attempts, result) = result_of(&app, victim).await;
    assert_eq!(
        (state.as_str(), attempts, result),
        ("queued", 0, None),
        "the sleep job was not claimed, counted or finished by echo"
    );
}
