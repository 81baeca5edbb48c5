//! What the operations console stands on, through the API: `/admin/functions` and
//! `/admin/jobs` for a tenant's admin only, and the tenant-wide `/ws` feed — every entity's
//! completions of the admin's tenant, no other tenant's, and the queue figures as they change.
//! The page itself is driven in a real browser in `console_browser`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_tests::{TEST_API_KEY, TestApp, TestAppBuilder, eventually};

use crate::ws::{connect_to, event_bindings, next_json, subscribe};

async fn get(app: &TestApp, key: &str, path: &str, status: StatusCode) -> Value {
    let response = app.request_as(key, Method::GET, path).send().await.unwrap();
    if status.is_success() {
        TestApp::expect_json(response, status).await
    } else {
        TestApp::expect_problem(response, status).await
    }
}

async fn call_as(app: &TestApp, key: &str, function: &str, input: Value) -> String {
    let response = app
        .request_as(key, Method::POST, &format!("/jobs/{function}"))
        .json(&input)
        .send()
        .await
        .unwrap();
    let job = TestApp::expect_json(response, StatusCode::OK).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_admin_sees_the_tenants_functions_and_jobs_and_follows_them_live() {
    let mut app = TestAppBuilder {
        dev_admin: true,
        scaler_poll_ms: Some(200),
        ..Default::default()
    }
    .spawn()
    .await;
    let _echo = app.start_function("echo", &[]).await;
    let tenant = app.settings.dev.tenant.clone();
    // Another member of the admin's tenant, and someone of another tenant.
    let (member, _) = app.mint_key(&tenant, "ann@dev.test", 0).await;
    let (stranger, _) = app.mint_key("acme", "eve@acme.test", 0).await;

    // The feed: admins only.
    let mut refused = connect_to(app.addr, &member, true).await;
    let answer = subscribe(
        &mut refused,
        json!({"type": "subscribe", "functions": ["echo"], "scope": "tenant"}),
    )
    .await;
    assert_eq!(answer["type"], "error", "{answer}");
    let mut console = connect_to(app.addr, TEST_API_KEY, true).await;
    let answer = subscribe(
        &mut console,
        json!({"type": "subscribe", "functions": ["echo"], "scope": "tenant"}),
    )
    .await;
    assert_eq!(
        (answer["type"].as_str(), answer["scope"].as_str()),
        (Some("subscribed"), Some("tenant")),
        "{answer}"
    );
    // The queue figures come first (the poller has read them by now or soon will).
    let figures = next_json(&mut console).await;
    assert_eq!(figures["type"], "queues", "{figures}");
    assert_eq!(figures["functions"][0]["function"], "echo", "{figures}");
    assert!(
        event_bindings(&app)
            .await
            .contains(&format!("{tenant}.*.*.*")),
        "the tenant's completions are routed to this replica"
    );

    // Another tenant's job finishes first, then the member's: only the member's arrives.
    let theirs = call_as(&app, &stranger, "echo", json!({"tenant": "acme"})).await;
    let ours = call_as(&app, &member, "echo", json!({"tenant": "ours"})).await;
    // (`next_json` waits 20 s at most for each message.)
    let event = loop {
        let message = next_json(&mut console).await;
        if message["type"] != "queues" {
            break message;
        }
    };
    assert_eq!(event["subject"], ours.as_str(), "not {theirs}: {event}");
    assert_eq!(event["type"], "dev.surge.fn.echo.completed");
    assert_eq!(event["surgestate"], "succeeded");
    assert!(
        event["data"].is_null(),
        "an admin sees that another's job succeeded, not its result: {event}"
    );

    // The figures: the tenant's jobs, not the stranger's; the broker's queue and replicas.
    let no = get(&app, &member, "/admin/functions", StatusCode::FORBIDDEN).await;
    assert!(no["detail"].as_str().unwrap().contains("admin"), "{no}");
    let overview = eventually(
        "a replica in the figures",
        Duration::from_secs(20),
        || async {
            let overview = get(&app, TEST_API_KEY, "/admin/functions", StatusCode::OK).await;
            (overview["functions"][0]["replicas"] == 1).then_some(overview)
        },
    )
    .await;
    let echo = &overview["functions"][0];
    assert_eq!(echo["function"], "echo", "{overview}");
    assert_eq!(echo["succeeded"], 1, "the member's job only: {overview}");
    assert_eq!(
        (echo["failed"].as_i64(), echo["dead"].as_i64()),
        (Some(0), Some(0))
    );
    let (p50, p95) = (
        echo["latency_p50_ms"].as_f64().unwrap(),
        echo["latency_p95_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p95 && p95 < 20_000.0, "{overview}");
    assert_eq!(overview["window_s"], 900);

    let recent = get(&app, TEST_API_KEY, "/admin/jobs?limit=10", StatusCode::OK).await;
    let ids: Vec<&str> = recent["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ours.as_str()], "{recent}");
    assert_eq!(recent["jobs"][0]["state"], "succeeded");
    get(&app, &member, "/admin/jobs", StatusCode::FORBIDDEN).await;
    get(
        &app,
        TEST_API_KEY,
        "/admin/jobs?limit=0",
        StatusCode::BAD_REQUEST,
    )
    .await;

    // The admin's own job arrives whole, result included.
    let own = app.call("echo", &json!({"mine": true})).await;
    let event = loop {
        let message = next_json(&mut console).await;
        if message["type"] != "queues" {
            break message;
        }
    };
    assert_eq!(event["subject"], own["id"], "{event}");
    assert_eq!(event["data"], json!({"mine": true}), "{event}");

    // Leaving the tenant scope keeps the connection and its own subscriptions; the tenant's
    // binding goes with its last watcher.
    let answer = subscribe(
        &mut console,
        json!({"type": "unsubscribe", "scope": "tenant"}),
    )
    .await;
    assert_eq!(
        (answer["scope"].as_str(), answer["functions"][0].as_str()),
        (Some("own"), Some("echo")),
        "{answer}"
    );
    eventually(
        "the tenant binding to go",
        Duration::from_secs(10),
        || async {
            let bindings = event_bindings(&app).await;
            (!bindings.contains(&format!("{tenant}.*.*.*"))).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_console_pages_are_served_whole_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let page = client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'none'"));
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    for (asset, media) in [
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
        ("/console/handoff.js", "text/javascript"),
    ] {
        let response = client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        // Served with `nosniff`: a wrong type would break the page.
        assert_eq!(response.headers()["content-type"], media, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty());
    }
    for linked in ["/console/app.js", "/console/app.css", "/console/icon.svg"] {
        assert!(html.contains(linked), "{linked} linked");
    }
    assert!(!html.contains("https://"), "no third-party asset");
}

/// A websocket's credential is asked again on every ping: a revoked key loses its feed.
#[tokio::test]
async fn a_revoked_key_loses_its_feed_at_the_next_ping() {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let app = TestAppBuilder {
        ws_ping_interval_ms: 300,
        ..Default::default()
    }
    .spawn()
    .await;
    let (key, id) = app.mint_key("acme", "ann@acme.test", 0).await;
    let mut socket = connect_to(app.addr, &key, true).await;
    let answer = subscribe(
        &mut socket,
        json!({"type": "subscribe", "functions": ["echo"]}),
    )
    .await;
    assert_eq!(answer["scope"], "own", "{answer}");
    let revoked = app
        .request_as(&key, Method::DELETE, &format!("/token/{id}"))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = socket.next().await {
            if let Ok(Message::Close(frame)) = frame {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(code, Some(4003));
}
