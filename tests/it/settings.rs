//! `/settings`: every caller reads, admins write through the `settings` function, stale
//! writes get 412, and every replica (and its `/ws` subscribers) sees a change at once,
//! through the change's event rather than a timer (the harness sets the timer to an hour).

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use surge_tests::{TEST_API_KEY, TestApp, TestAppBuilder, eventually};

use crate::ws::{connect_to, next_json, subscribe};

async fn write(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app.request_as(key, method, path);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("settings request")
}

fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn settings_jobs(app: &TestApp) -> i64 {
    app.count("job WHERE function = 'settings'").await
}

#[tokio::test]
async fn admins_write_through_the_function_and_every_replica_sees_the_change() {
    let mut app = TestAppBuilder {
        identity: true,
        ..Default::default()
    }
    .spawn()
    .await;
    let _function = app.start_function("settings", &[]).await;
    let replica = app.spawn_replica().await;
    // alice is in tenant a's admin group; the development key is not an admin.
    let admin = app.login_key("a", "alice").await;
    let reader = TEST_API_KEY;

    let mut ws = connect_to(replica.addr, reader, false).await;
    let ack = subscribe(
        &mut ws,
        json!({"type": "subscribe", "functions": ["settings"]}),
    )
    .await;
    assert_eq!(ack["functions"], json!(["settings"]));

    let list = app.request(Method::GET, "/settings").send().await.unwrap();
    assert_eq!(
        TestApp::expect_json(list, StatusCode::OK).await,
        json!({"settings": []})
    );

    // Readers cannot write, and no job is made for them.
    let body = json!({"name": "greeting", "value": {"text": "hi"}});
    let refused = write(
        &app,
        reader,
        Method::POST,
        "/settings",
        None,
        Some(body.clone()),
    )
    .await;
    TestApp::expect_problem(refused, StatusCode::FORBIDDEN).await;
    // Nor around the API: the function is not served to clients.
    let direct = app
        .post_job(
            "settings",
            &json!({"op": "delete", "name": "greeting", "if_version": null}),
        )
        .await;
    TestApp::expect_problem(direct, StatusCode::NOT_FOUND).await;
    assert_eq!(settings_jobs(&app).await, 0);

    // Create: 201, version 1, and the change reaches the other replica's subscriber.
    let created = write(
        &app,
        &admin,
        Method::POST,
        "/settings",
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(created.headers()["location"], "/settings/greeting");
    assert_eq!(etag(&created), "\"1\"");
    let created = TestApp::expect_json(created, StatusCode::CREATED).await;
    assert_eq!(created["value"], json!({"text": "hi"}));
    let event = next_json(&mut ws).await;
    assert_eq!(event["type"], "dev.surge.settings.changed");
    assert_eq!(event["subject"], "greeting");
    assert_eq!(event["data"]["op"], "create");
    assert_eq!(event["data"]["version"], 1);
    assert!(
        event.get("surgeentity").is_none(),
        "who changed it is not broadcast: {event}"
    );
    let client = reqwest::Client::new();
    let on_replica = |path: &str| {
        client
            .get(replica.url(path))
            .header("x-api-key", reader)
            .send()
    };
    let seen = eventually("the replica to reload", Duration::from_secs(5), || async {
        let r = on_replica("/settings/greeting").await.unwrap();
        (r.status() == StatusCode::OK).then_some(r)
    })
    .await;
    assert_eq!(etag(&seen), "\"1\"");

    // Creating it again conflicts.
    let again = write(&app, &admin, Method::POST, "/settings", None, Some(body)).await;
    TestApp::expect_problem(again, StatusCode::CONFLICT).await;

    // Replacing needs If-Match; a stale one loses, and its value is not stored.
    let path = "/settings/greeting";
    let blind = write(
        &app,
        &admin,
        Method::PUT,
        path,
        None,
        Some(json!({"value": 1})),
    )
    .await;
    TestApp::expect_problem(blind, StatusCode::PRECONDITION_REQUIRED).await;
    let first = write(
        &app,
        &admin,
        Method::PUT,
        path,
        Some("\"1\""),
        Some(json!({"value": "first"})),
    )
    .await;
    assert_eq!(etag(&first), "\"2\"");
    TestApp::expect_json(first, StatusCode::OK).await;
    let stale = write(
        &app,
        &admin,
        Method::PUT,
        path,
        Some("\"1\""),
        Some(json!({"value": "lost"})),
    )
    .await;
    let stale = TestApp::expect_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(stale["type"], "urn:surge:problem:precondition-failed");
    assert_eq!(stale["current_version"], 2);
    let stored: Value = sqlx::query_scalar("SELECT value FROM settings WHERE name = 'greeting'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, json!("first"));

    // Two admins racing from the same version: exactly one wins.
    let (a, b) = tokio::join!(
        write(
            &app,
            &admin,
            Method::PUT,
            path,
            Some("\"2\""),
            Some(json!({"value": "a"}))
        ),
        write(
            &app,
            &admin,
            Method::PUT,
            path,
            Some("\"2\""),
            Some(json!({"value": "b"}))
        ),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED]);

    // The subscriber saw each successful change once, in order, and none of the refusals.
    for version in [2, 3] {
        let event = next_json(&mut ws).await;
        assert_eq!(
            (
                event["data"]["op"].clone(),
                event["data"]["version"].clone()
            ),
            (json!("update"), json!(version))
        );
    }

    // Bad names and values are refused before any job.
    let jobs = settings_jobs(&app).await;
    let bad_name = write(
        &app,
        &admin,
        Method::POST,
        "/settings",
        None,
        Some(json!({"name": "Bad Name", "value": 1})),
    )
    .await;
    TestApp::expect_problem(bad_name, StatusCode::UNPROCESSABLE_ENTITY).await;
    let bad_limit = write(
        &app,
        &admin,
        Method::POST,
        "/settings",
        None,
        Some(json!({"name": "rate_limit", "value": {"per_second": "fast"}})),
    )
    .await;
    TestApp::expect_problem(bad_limit, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(settings_jobs(&app).await, jobs);

    // Delete with the current version; both replicas forget it.
    let deleted = write(&app, &admin, Method::DELETE, path, Some("\"3\""), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app.request(Method::GET, path).send().await.unwrap();
    TestApp::expect_problem(gone, StatusCode::NOT_FOUND).await;
    let event = next_json(&mut ws).await;
    assert_eq!(event["data"]["op"], "delete");
    eventually(
        "the replica to forget it",
        Duration::from_secs(5),
        || async {
            (on_replica(path).await.unwrap().status() == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    let missing = write(&app, &admin, Method::DELETE, path, Some("*"), None).await;
    TestApp::expect_problem(missing, StatusCode::NOT_FOUND).await;

    // One job per write that reached the function, each run once.
    let runs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job WHERE function = 'settings' AND attempts = 1 AND state IN ('succeeded', 'failed')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(runs, settings_jobs(&app).await);
    assert_eq!(
        runs, 8,
        "create, conflict, update, stale, two racing, delete, missing"
    );
}

#[tokio::test]
async fn the_rate_limit_setting_is_put_in_force_by_every_replica() {
    let mut app = TestAppBuilder {
        dev_admin: true,
        ..Default::default()
    }
    .spawn()
    .await;
    let _function = app.start_function("settings", &[]).await;
    let replica = app.spawn_replica().await;
    let (user, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    let client = reqwest::Client::new();
    let statuses = |n: usize| {
        let (client, url, user) = (client.clone(), replica.url("/jobs"), user.clone());
        async move {
            let mut statuses = Vec::new();
            for _ in 0..n {
                let r = client
                    .get(&url)
                    .header("x-api-key", &user)
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status());
                if r.status() == StatusCode::TOO_MANY_REQUESTS {
                    assert_eq!(r.headers()["ratelimit-policy"], "1;w=1;burst=2");
                }
            }
            statuses
        }
    };
    assert!(
        statuses(10).await.iter().all(|s| *s == StatusCode::OK),
        "off as configured"
    );

    let limit = json!({"name": "rate_limit", "value": {"per_second": 1, "burst": 2}});
    let created = write(
        &app,
        TEST_API_KEY,
        Method::POST,
        "/settings",
        None,
        Some(limit),
    )
    .await;
    TestApp::expect_json(created, StatusCode::CREATED).await;
    eventually("the replica to limit", Duration::from_secs(5), || async {
        statuses(3)
            .await
            .contains(&StatusCode::TOO_MANY_REQUESTS)
            .then_some(())
    })
    .await;

    let deleted = write(
        &app,
        TEST_API_KEY,
        Method::DELETE,
        "/settings/rate_limit",
        Some("*"),
        None,
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    eventually(
        "the replica to stop limiting",
        Duration::from_secs(5),
        || async {
            statuses(10)
                .await
                .iter()
                .all(|s| *s == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
}
