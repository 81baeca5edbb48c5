//! `/settings`: every caller reads, platform operators write through the `settings` function,
//! stale writes get 412, and every replica (and its `/ws` subscribers) sees a change at once,
//! through the change's event rather than a timer (the harness sets the timer to an hour).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_contract::problem::Problem;
use surge_gateway::routes::settings::{NewSetting, SettingList, SettingValue, SettingView};
use surge_tests::{FunctionProcess, Replica, TestApp, TestAppBuilder, eventually, read_json};

use crate::ws::{Socket, connect_to, next_json, subscribe};

const GREETING: &str = "/settings/greeting";

/// A Surge whose development key is a platform operator (one tenant, `dev.admin`), with the
/// `settings` function running and a reader: a key of another tenant, not an admin.
struct Settings {
    app: TestApp,
    reader: String,
    _function: FunctionProcess,
}

async fn settings() -> Settings {
    let mut app = TestAppBuilder {
        dev_admin: true,
        ..Default::default()
    }
    .spawn()
    .await;
    let function = app.start_function("settings", &[]).await;
    let (reader, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    Settings {
        app,
        reader,
        _function: function,
    }
}

fn greeting(value: Value) -> NewSetting {
    NewSetting {
        name: "greeting".into(),
        value,
    }
}

/// The operator creates `greeting` (version 1).
async fn create_greeting(app: &TestApp) -> SettingView {
    app.post(
        "/settings",
        &greeting(json!({"text": "hi"})),
        StatusCode::CREATED,
    )
    .await
}

/// `PUT /settings/greeting` with `If-Match: "<version>"` as the operator; its raw answer.
async fn replace_greeting(app: &TestApp, version: i64, value: Value) -> reqwest::Response {
    app.header("if-match", format!("\"{version}\""))
        .exchange(Method::PUT, GREETING)
        .json(&SettingValue { value })
        .send()
        .await
}

/// A subscriber of the `settings` function's changes on `replica`, as `key`.
async fn subscriber(replica: &Replica, key: &str) -> Socket {
    let mut ws = connect_to(replica.addr, key, false).await;
    let ack = subscribe(
        &mut ws,
        json!({"type": "subscribe", "functions": ["settings"]}),
    )
    .await;
    assert_eq!(ack["functions"], json!(["settings"]), "{ack}");
    ws
}

/// Every settings job so far ran once and finished: `writes` of them.
async fn assert_writes_ran_once(app: &TestApp, writes: i64) {
    let (jobs, once): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE attempts = 1 AND state IN ('succeeded', 'failed'))
         FROM job WHERE function = 'settings'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((jobs, once), (writes, writes), "(jobs, run once)");
}

#[tokio::test]
async fn every_caller_reads_the_settings_and_there_are_none_at_first() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let list: SettingList = app.as_key(&reader).get("/settings", StatusCode::OK).await;
    assert!(list.settings.is_empty(), "{list:?}");
    let missing = app
        .as_key(&reader)
        .get_problem(GREETING, StatusCode::NOT_FOUND)
        .await;
    assert_eq!(missing.kind, "urn:surge:problem:not-found");
}

#[tokio::test]
async fn a_reader_cannot_write_a_setting_and_no_job_is_made() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let refused = app
        .as_key(&reader)
        .post_problem(
            "/settings",
            &greeting(json!({"text": "hi"})),
            StatusCode::FORBIDDEN,
        )
        .await;
    assert_eq!(refused.kind, "urn:surge:problem:forbidden");
    assert_writes_ran_once(&app, 0).await;
}

#[tokio::test]
async fn the_settings_function_is_not_served_to_clients_not_even_to_operators() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let change = json!({"op": "delete", "name": "greeting", "if_version": null});
    for caller in [app.api(), app.as_key(&reader)] {
        let refused = caller
            .post_problem("/jobs/settings", &change, StatusCode::NOT_FOUND)
            .await;
        assert_eq!(refused.kind, "urn:surge:problem:unknown-function");
    }
    assert_writes_ran_once(&app, 0).await;
}

#[tokio::test]
async fn an_operator_tenants_admin_writes_settings_and_other_callers_may_not() {
    let mut app = TestAppBuilder {
        identity: true,
        ..Default::default()
    }
    .spawn()
    .await;
    let _function = app.start_function("settings", &[]).await;
    // alice is in the admin group of both tenants; only tenant a's admins are operators.
    let operator = app.login_key("a", "alice").await;
    let other_admin = app.login_key("b", "alice").await;
    let body = greeting(json!({"text": "hi"}));
    for key in [other_admin.as_str(), surge_tests::TEST_API_KEY] {
        app.as_key(key)
            .post_problem("/settings", &body, StatusCode::FORBIDDEN)
            .await;
    }
    let created: SettingView = app
        .as_key(&operator)
        .post("/settings", &body, StatusCode::CREATED)
        .await;
    assert_eq!(created.version, 1);
}

#[tokio::test]
async fn creating_a_setting_answers_201_with_its_location_version_and_value() {
    let Settings { app, _function, .. } = settings().await;
    let created = app
        .exchange(Method::POST, "/settings")
        .json(&greeting(json!({"text": "hi"})))
        .expect::<SettingView>(StatusCode::CREATED)
        .await;
    assert_eq!(created.header("location"), GREETING);
    assert_eq!(created.header("etag"), "\"1\"");
    assert_eq!(
        (created.body.name.as_str(), created.body.version),
        ("greeting", 1)
    );
    assert_eq!(created.body.value, json!({"text": "hi"}));
    let read: SettingView = app.get(GREETING, StatusCode::OK).await;
    assert_eq!(read, created.body, "the writer reads its own write at once");
    assert_writes_ran_once(&app, 1).await;
}

#[tokio::test]
async fn a_change_is_announced_to_another_replicas_subscribers_without_who_made_it() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let replica = app.spawn_replica().await;
    let mut ws = subscriber(&replica, &reader).await;
    create_greeting(&app).await;
    let event = next_json(&mut ws).await;
    assert_eq!(event["type"], "dev.surge.settings.changed");
    assert_eq!(event["subject"], "greeting");
    assert_eq!(event["data"]["op"], "create");
    assert_eq!(event["data"]["version"], 1);
    assert!(
        event.get("surgeentity").is_none(),
        "who changed it is not broadcast: {event}"
    );
}

#[tokio::test]
async fn another_replica_serves_a_new_setting_at_once_through_its_event() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let replica = app.spawn_replica().await;
    let on_replica = app.as_key(&reader).on(&replica.url(""));
    create_greeting(&app).await;
    let seen = eventually("the replica to reload", Duration::from_secs(5), || async {
        let response = on_replica.exchange(Method::GET, GREETING).send().await;
        (response.status() == StatusCode::OK).then_some(response)
    })
    .await;
    assert_eq!(seen.headers()["etag"], "\"1\"");
    let seen: SettingView = read_json(seen, StatusCode::OK).await;
    assert_eq!(seen.value, json!({"text": "hi"}));
}

#[tokio::test]
async fn creating_a_setting_that_exists_is_409_and_keeps_the_first() {
    let Settings { app, _function, .. } = settings().await;
    create_greeting(&app).await;
    let again = app
        .post_problem(
            "/settings",
            &greeting(json!("second")),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(again.kind, "urn:surge:problem:conflict");
    let kept: SettingView = app.get(GREETING, StatusCode::OK).await;
    assert_eq!((kept.version, kept.value), (1, json!({"text": "hi"})));
    assert_writes_ran_once(&app, 2).await;
}

#[tokio::test]
async fn replacing_without_if_match_is_428_before_any_job() {
    let Settings { app, _function, .. } = settings().await;
    create_greeting(&app).await;
    let blind = app
        .api()
        .put_problem(
            GREETING,
            &SettingValue { value: json!(1) },
            StatusCode::PRECONDITION_REQUIRED,
        )
        .await;
    assert_eq!(blind.kind, "urn:surge:problem:precondition-required");
    assert_writes_ran_once(&app, 1).await;
}

#[tokio::test]
async fn replacing_with_the_current_version_answers_the_next_version() {
    let Settings { app, _function, .. } = settings().await;
    create_greeting(&app).await;
    let response = replace_greeting(&app, 1, json!("first")).await;
    assert_eq!(response.headers()["etag"], "\"2\"");
    let replaced: SettingView = read_json(response, StatusCode::OK).await;
    assert_eq!((replaced.version, replaced.value), (2, json!("first")));
    assert_writes_ran_once(&app, 2).await;
}

#[tokio::test]
async fn a_stale_if_match_is_refused_with_412_and_the_current_version() {
    let Settings { app, _function, .. } = settings().await;
    create_greeting(&app).await;
    read_json::<SettingView>(
        replace_greeting(&app, 1, json!("first")).await,
        StatusCode::OK,
    )
    .await;
    let stale = surge_tests::read_problem(
        replace_greeting(&app, 1, json!("lost")).await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert_eq!(stale.kind, "urn:surge:problem:precondition-failed");
    assert_eq!(stale.extensions["current_version"], 2);
    let stored: Value = sqlx::query_scalar("SELECT value FROM settings WHERE name = 'greeting'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, json!("first"), "the stale value is not stored");
    assert_writes_ran_once(&app, 3).await;
}

#[tokio::test]
async fn of_two_operators_replacing_from_the_same_version_exactly_one_wins() {
    let Settings { app, _function, .. } = settings().await;
    create_greeting(&app).await;
    let (a, b) = tokio::join!(
        replace_greeting(&app, 1, json!("a")),
        replace_greeting(&app, 1, json!("b")),
    );
    let (winner, loser) = if a.status() == StatusCode::OK {
        ((a, "a"), b)
    } else {
        ((b, "b"), a)
    };
    let lost: Problem = surge_tests::read_problem(loser, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(lost.extensions["current_version"], 2);
    let won: SettingView = read_json(winner.0, StatusCode::OK).await;
    assert_eq!((won.version, &won.value), (2, &json!(winner.1)));
    let stored: SettingView = app.get(GREETING, StatusCode::OK).await;
    assert_eq!(stored, won, "the winner's value is stored");
    assert_writes_ran_once(&app, 3).await;
}

#[tokio::test]
async fn subscribers_see_each_successful_change_once_in_order_and_no_refusal() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let replica = app.spawn_replica().await;
    let mut ws = subscriber(&replica, &reader).await;
    create_greeting(&app).await;
    // Refused by the function: a second create, a stale replace.
    app.post_problem("/settings", &greeting(json!("again")), StatusCode::CONFLICT)
        .await;
    read_json::<SettingView>(
        replace_greeting(&app, 1, json!("first")).await,
        StatusCode::OK,
    )
    .await;
    surge_tests::read_problem(
        replace_greeting(&app, 1, json!("lost")).await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    app.header("if-match", "\"2\"")
        .delete::<()>(GREETING, StatusCode::NO_CONTENT)
        .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next_json(&mut ws).await;
        assert_eq!(event["subject"], "greeting", "{event}");
        seen.push((
            event["data"]["op"].clone(),
            event["data"]["version"].clone(),
        ));
    }
    assert_eq!(
        seen,
        [
            (json!("create"), json!(1)),
            (json!("update"), json!(2)),
            (json!("delete"), json!(2)),
        ]
    );
    assert_writes_ran_once(&app, 5).await;
}

#[tokio::test]
async fn a_bad_name_or_rate_limit_value_is_refused_with_422_before_any_job() {
    let Settings { app, _function, .. } = settings().await;
    let bad_name = NewSetting {
        name: "Bad Name".into(),
        value: json!(1),
    };
    let bad_limit = NewSetting {
        name: "rate_limit".into(),
        value: json!({"per_second": "fast"}),
    };
    for body in [bad_name, bad_limit] {
        let refused = app
            .post_problem("/settings", &body, StatusCode::UNPROCESSABLE_ENTITY)
            .await;
        assert_eq!(
            refused.kind, "urn:surge:problem:invalid-setting",
            "{body:?}"
        );
    }
    assert_writes_ran_once(&app, 0).await;
}

#[tokio::test]
async fn deleting_with_the_current_version_removes_it_from_every_replica() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let replica = app.spawn_replica().await;
    let on_replica = app.as_key(&reader).on(&replica.url(""));
    create_greeting(&app).await;
    eventually("the replica to have it", Duration::from_secs(5), || async {
        (on_replica.status_of(Method::GET, GREETING).await == StatusCode::OK).then_some(())
    })
    .await;
    app.header("if-match", "\"1\"")
        .delete::<()>(GREETING, StatusCode::NO_CONTENT)
        .await;
    app.get_problem(GREETING, StatusCode::NOT_FOUND).await;
    eventually(
        "the replica to forget it",
        Duration::from_secs(5),
        || async {
            (on_replica.status_of(Method::GET, GREETING).await == StatusCode::NOT_FOUND)
                .then_some(())
        },
    )
    .await;
    assert_writes_ran_once(&app, 2).await;
}

#[tokio::test]
async fn deleting_a_setting_that_does_not_exist_is_404() {
    let Settings { app, _function, .. } = settings().await;
    let missing = app
        .header("if-match", "*")
        .delete_problem(GREETING, StatusCode::NOT_FOUND)
        .await;
    assert_eq!(missing.kind, "urn:surge:problem:not-found");
    assert_writes_ran_once(&app, 1).await;
}

/// The statuses of `n` calls to `GET /jobs` as `key` on `replica`; a 429 must carry the
/// policy the `rate_limit` setting names (1 a second, a burst of 2).
async fn statuses(app: &TestApp, replica: &Replica, key: &str, n: usize) -> Vec<StatusCode> {
    let on_replica = app.as_key(key).on(&replica.url(""));
    let mut statuses = Vec::new();
    for _ in 0..n {
        let response = on_replica.exchange(Method::GET, "/jobs").send().await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["ratelimit-policy"], "1;w=1;burst=2");
        }
    }
    statuses
}

/// The `rate_limit` setting created by the operator, and in force on `replica`.
async fn limit_in_force(app: &TestApp, replica: &Replica, key: &str) {
    let limit = NewSetting {
        name: "rate_limit".into(),
        value: json!({"per_second": 1, "burst": 2}),
    };
    app.post::<_, SettingView>("/settings", &limit, StatusCode::CREATED)
        .await;
    eventually("the replica to limit", Duration::from_secs(5), || async {
        statuses(app, replica, key, 3)
            .await
            .contains(&StatusCode::TOO_MANY_REQUESTS)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_rate_limit_setting_is_put_in_force_by_every_replica() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let replica = app.spawn_replica().await;
    assert!(
        statuses(&app, &replica, &reader, 10)
            .await
            .iter()
            .all(|s| *s == StatusCode::OK),
        "off as configured"
    );
    limit_in_force(&app, &replica, &reader).await;
}

#[tokio::test]
async fn deleting_the_rate_limit_setting_lifts_it_on_every_replica() {
    let Settings {
        app,
        reader,
        _function,
    } = settings().await;
    let replica = app.spawn_replica().await;
    limit_in_force(&app, &replica, &reader).await;
    app.header("if-match", "*")
        .delete::<()>("/settings/rate_limit", StatusCode::NO_CONTENT)
        .await;
    eventually(
        "the replica to stop limiting",
        Duration::from_secs(5),
        || async {
            statuses(&app, &replica, &reader, 10)
                .await
                .iter()
                .all(|s| *s == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
}
