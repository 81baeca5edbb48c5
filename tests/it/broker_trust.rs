//! A message on the broker is not trusted to say what a job's owner asked for: one that
//! names a recorded job runs that job's recorded input, on its own function's queue only.
//! With a broker user per part, only a function's completes a job and only a gateway's
//! claims the gateways' source (RabbitMQ's validated `user_id`).

use std::time::Duration;

use chrono::Utc;
use cloudevents::{EventBuilder, EventBuilderV10};
use reqwest::StatusCode;
use serde_json::{Value, json};
use surge_gateway::routes::login::Me;
use surge_tests::{BrokerProbe, BrokerUser, TEST_API_KEY, TestApp, TestAppBuilder, eventually};

use crate::ws::{connect_to, next_json, subscribe};

/// Records a job as a gateway does (owned by `dev`), without publishing it.
async fn recorded(app: &TestApp, function: &str, input: &Value) -> uuid::Uuid {
    app.record_job(function, input, None).await
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

/// A completion of a made-up job of `owner`'s, as a producer would forge it.
fn forged_completion(owner: &Me) -> surge_contract::binding::AmqpMessage {
    let completion = surge_contract::completion::Completion {
        job_id: surge_contract::job::JobId::new(),
        function: surge_contract::job::FunctionName::parse("echo").unwrap(),
        state: surge_contract::job::JobState::Succeeded,
        attempts: 1,
        finished_at: Utc::now(),
        data: Some(json!({"forged": true})),
        owner: Some(surge_contract::request::Owner {
            tenant: owner.tenant.clone(),
            entity: owner.entity_id,
        }),
        trace: Default::default(),
    };
    completion.to_message().unwrap()
}

#[tokio::test]
async fn only_a_functions_broker_user_completes_jobs_and_only_a_gateways_claims_its_source() {
    let name = surge_tests::unique_name();
    let any = [".*", ".*", ".*"];
    let gateway_user = BrokerUser::create(&format!("{name}-gateway"), any).await;
    let function_user = BrokerUser::create(&format!("{name}-function"), any).await;
    // Rights to publish anywhere: what a leaked broker credential may hold.
    let forger_user = BrokerUser::create(&format!("{name}-forger"), any).await;
    let mut app = TestAppBuilder {
        broker_url: Some(gateway_user.amqp_url()),
        function_users: Some(function_user.name.clone()),
        ..Default::default()
    }
    .spawn()
    .await;
    let _echo = app
        .start_function(
            "echo",
            &[
                ("SURGE_BROKER__URL", &function_user.amqp_url()),
                ("SURGE_BROKER__GATEWAY_USERS", &gateway_user.name),
            ],
        )
        .await;
    let me: Me = app.api().get("/me", StatusCode::OK).await;
    let mut socket = connect_to(app.addr, TEST_API_KEY, false).await;
    subscribe(
        &mut socket,
        json!({"type": "subscribe", "functions": ["echo"]}),
    )
    .await;
    // The real path works with a broker user per part.
    let first = app.api().call("echo", &json!({"n": 1})).await;
    assert_eq!(first.result, Some(json!({"n": 1})));
    assert_eq!(next_json(&mut socket).await["id"], first.id.to_string());

    // A producer's forged completion, with or without its own user_id, reaches nobody.
    let forger = BrokerProbe::connect_to(&forger_user.amqp_url()).await;
    let events = format!("{}surge.events", app.prefix);
    for stamp in [None, Some(forger_user.name.as_str())] {
        let forged = forged_completion(&me).sent_by(stamp);
        let key = format!("{}.{}.echo.completed", me.tenant, me.entity_id);
        forger
            .publish(&events, &key, forged.properties.clone(), &forged.body)
            .await;
    }
    // Nor can it pass for a function: RabbitMQ refuses a user_id that is not its own.
    let impostor = forged_completion(&me).sent_by(Some(&function_user.name));
    let impostor_probe = BrokerProbe::connect_to(&forger_user.amqp_url()).await;
    let channel = impostor_probe.channel.clone();
    let _ = channel
        .basic_publish(
            events.as_str().into(),
            "x".into(),
            lapin::options::BasicPublishOptions::default(),
            &impostor.body,
            impostor.properties.clone(),
        )
        .await;
    eventually(
        "the broker to refuse a user_id that is not the sender's",
        Duration::from_secs(5),
        || async { (!channel.status().connected()).then_some(()) },
    )
    .await;
    let second = app.api().call("echo", &json!({"n": 2})).await;
    let next = next_json(&mut socket).await;
    assert_eq!(
        next["id"],
        second.id.to_string(),
        "the forgeries never came: {next}"
    );

    // A producer with the rights docs/deploy.md gives one: it publishes job events and
    // nothing else; its own jobs run.
    let jobs_exchange = format!("{}surge.jobs", app.prefix);
    let producer_user = BrokerUser::create(
        &format!("{name}-producer"),
        [
            "^$",
            &format!("^{}$", jobs_exchange.replace('.', "\\.")),
            "^$",
        ],
    )
    .await;
    let producer = BrokerProbe::connect_to(&producer_user.amqp_url()).await;
    let order = EventBuilderV10::new()
        .id("order-1")
        .source("/shop/orders")
        .ty("dev.surge.fn.echo")
        .time(Utc::now())
        .data("application/json", json!({"order": 1}))
        .build()
        .unwrap();
    let order = surge_contract::binding::encode(order).unwrap();
    producer
        .publish(
            &jobs_exchange,
            "echo",
            order.properties.clone(),
            &order.body,
        )
        .await;
    eventually("the producer's job to run", Duration::from_secs(15), || async {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state::text FROM job WHERE event_source = '/shop/orders' AND event_id = 'order-1'",
        )
        .fetch_optional(&app.db.pool)
        .await
        .unwrap();
        (state.as_deref() == Some("succeeded")).then_some(())
    })
    .await;
    // A producer claiming a gateway's source is dead-lettered; the job it names untouched.
    let victim = recorded(&app, "echo", &json!({"asked": "by the owner"})).await;
    let request = EventBuilderV10::new()
        .id(victim.to_string())
        .source(surge_contract::job::GATEWAY_SOURCE)
        .ty("dev.surge.fn.echo")
        .time(Utc::now())
        .data("application/json", json!({"asked": "by a forger"}))
        .build()
        .unwrap();
    let message = surge_contract::binding::encode(request)
        .unwrap()
        .sent_by(Some(&producer_user.name));
    producer
        .publish(
            &jobs_exchange,
            "echo",
            message.properties.clone(),
            &message.body,
        )
        .await;
    let probe = BrokerProbe::connect().await;
    let dead = format!("{}fn.echo.dead", app.prefix);
    eventually(
        "the claim dead-lettered",
        Duration::from_secs(15),
        || async { (probe.queue_counts(&dead).await.0 == 1).then_some(()) },
    )
    .await;
    assert_eq!(result_of(&app, victim).await, ("queued".into(), 0, None));
}
