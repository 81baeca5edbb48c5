//! What the operations console stands on, through the API: `/admin/functions` and
//! `/admin/jobs` for a tenant's admin only, and the tenant-wide `/ws` feed — every entity's
//! completions of the admin's tenant, no other tenant's, and the queue figures as they change.
//! The page itself is driven in a real browser in `console_browser`.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use surge_gateway::routes::overview::{FunctionsOverview, TenantJobs};
use surge_tests::{FunctionProcess, TEST_API_KEY, TestApp, TestAppBuilder, eventually};
use tokio_tungstenite::tungstenite::Message;

use crate::ws::{Socket, connect_to, event_bindings, next_json, subscribe};

/// A Surge whose development key is an admin of its tenant, `echo` running, another member
/// of that tenant and a stranger of another tenant.
struct Console {
    app: TestApp,
    tenant: String,
    member: String,
    stranger: String,
    _echo: FunctionProcess,
}

async fn console() -> Console {
    let mut app = TestAppBuilder {
        dev_admin: true,
        scaler_poll_ms: Some(200),
        ..Default::default()
    }
    .spawn()
    .await;
    let echo = app.start_function("echo", &[]).await;
    let tenant = app.settings.dev.tenant.clone();
    let (member, _) = app.mint_key(&tenant, "ann@dev.test", 0).await;
    let (stranger, _) = app.mint_key("acme", "eve@acme.test", 0).await;
    Console {
        app,
        tenant,
        member,
        stranger,
        _echo: echo,
    }
}

/// The admin's socket, subscribed to the tenant's `echo` completions; the answer.
async fn tenant_feed(app: &TestApp) -> (Socket, Value) {
    let mut console = connect_to(app.addr, TEST_API_KEY, true).await;
    let answer = subscribe(
        &mut console,
        json!({"type": "subscribe", "functions": ["echo"], "scope": "tenant"}),
    )
    .await;
    (console, answer)
}

/// The next message that is not the queue figures, which come whenever they change
/// (`next_json` waits 20 s at most for each).
async fn next_not_figures(socket: &mut Socket) -> Value {
    loop {
        let message = next_json(socket).await;
        if message["type"] != "queues" {
            return message;
        }
    }
}

/// Sends a command on the tenant feed; its answer.
async fn command(socket: &mut Socket, command: Value) -> Value {
    socket
        .send(Message::Text(command.to_string().into()))
        .await
        .unwrap();
    next_not_figures(socket).await
}

#[tokio::test]
async fn the_tenant_feed_is_for_admins_only() {
    let Console {
        app, member, _echo, ..
    } = console().await;
    let mut refused = connect_to(app.addr, &member, true).await;
    let answer = subscribe(
        &mut refused,
        json!({"type": "subscribe", "functions": ["echo"], "scope": "tenant"}),
    )
    .await;
    assert_eq!(answer["type"], "error", "{answer}");
}

#[tokio::test]
async fn an_admin_on_the_tenant_feed_gets_the_queue_figures_first_and_its_tenants_binding() {
    let Console {
        app, tenant, _echo, ..
    } = console().await;
    let (mut console, answer) = tenant_feed(&app).await;
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
}

#[tokio::test]
async fn the_tenant_feed_carries_a_members_completion_without_its_result_and_no_strangers() {
    let Console {
        app,
        member,
        stranger,
        _echo,
        ..
    } = console().await;
    let (mut console, _) = tenant_feed(&app).await;
    // Another tenant's job finishes first, then the member's: only the member's arrives.
    let theirs = app
        .as_key(&stranger)
        .call("echo", &json!({"tenant": "acme"}))
        .await;
    let ours = app
        .as_key(&member)
        .call("echo", &json!({"tenant": "ours"}))
        .await;
    for job in [&theirs, &ours] {
        assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    }
    let event = next_not_figures(&mut console).await;
    assert_eq!(
        event["subject"],
        ours.id.to_string(),
        "not {}: {event}",
        theirs.id
    );
    assert_eq!(event["type"], "dev.surge.fn.echo.completed");
    assert_eq!(event["surgestate"], "succeeded");
    assert!(
        event["data"].is_null(),
        "an admin sees that another's job succeeded, not its result: {event}"
    );
}

#[tokio::test]
async fn the_admins_own_completion_arrives_whole_on_the_tenant_feed() {
    let Console { app, _echo, .. } = console().await;
    let (mut console, _) = tenant_feed(&app).await;
    let own = app.call("echo", &json!({"mine": true})).await;
    let event = next_not_figures(&mut console).await;
    assert_eq!(event["subject"], own.id.to_string(), "{event}");
    assert_eq!(event["data"], json!({"mine": true}), "{event}");
}

#[tokio::test]
async fn leaving_the_tenant_scope_keeps_the_own_subscriptions_and_drops_the_tenants_binding() {
    let Console {
        app, tenant, _echo, ..
    } = console().await;
    let (mut console, _) = tenant_feed(&app).await;
    let binding = format!("{tenant}.*.*.*");
    eventually("the tenant binding", Duration::from_secs(10), || async {
        event_bindings(&app).await.contains(&binding).then_some(())
    })
    .await;
    let answer = command(
        &mut console,
        json!({"type": "unsubscribe", "scope": "tenant"}),
    )
    .await;
    assert_eq!(
        (answer["scope"].as_str(), answer["functions"][0].as_str()),
        (Some("own"), Some("echo")),
        "{answer}"
    );
    // The tenant's binding goes with its last watcher.
    eventually(
        "the tenant binding to go",
        Duration::from_secs(10),
        || async { (!event_bindings(&app).await.contains(&binding)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_functions_overview_counts_the_tenants_jobs_and_the_brokers_replicas() {
    let Console {
        app,
        member,
        stranger,
        _echo,
        ..
    } = console().await;
    let theirs = app
        .as_key(&stranger)
        .call("echo", &json!({"tenant": "acme"}))
        .await;
    let ours = app
        .as_key(&member)
        .call("echo", &json!({"tenant": "ours"}))
        .await;
    for job in [&theirs, &ours] {
        assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    }
    let overview = eventually(
        "a replica in the figures",
        Duration::from_secs(20),
        || async {
            let overview: FunctionsOverview = app.get("/admin/functions", StatusCode::OK).await;
            (overview.functions[0].replicas == Some(1)).then_some(overview)
        },
    )
    .await;
    let echo = &overview.functions[0];
    assert_eq!(echo.function, "echo", "{overview:?}");
    assert_eq!(echo.succeeded, 1, "the member's job only: {overview:?}");
    assert_eq!((echo.failed, echo.dead), (0, 0));
    let (p50, p95) = (echo.latency_p50_ms.unwrap(), echo.latency_p95_ms.unwrap());
    assert!(p50 > 0.0 && p50 <= p95 && p95 < 20_000.0, "{overview:?}");
    assert_eq!(overview.window_s, 900);
}

#[tokio::test]
async fn the_functions_overview_is_for_admins_only() {
    let Console {
        app, member, _echo, ..
    } = console().await;
    let no = app
        .as_key(&member)
        .get_problem("/admin/functions", StatusCode::FORBIDDEN)
        .await;
    let detail = no.detail.unwrap();
    assert!(detail.contains("admin"), "{detail}");
}

#[tokio::test]
async fn the_recent_jobs_are_the_tenants_and_for_admins_only() {
    let Console {
        app,
        member,
        stranger,
        _echo,
        ..
    } = console().await;
    let theirs = app
        .as_key(&stranger)
        .call("echo", &json!({"tenant": "acme"}))
        .await;
    let ours = app
        .as_key(&member)
        .call("echo", &json!({"tenant": "ours"}))
        .await;
    for job in [&theirs, &ours] {
        assert_eq!(job.state.as_str(), "succeeded", "{job:?}");
    }
    let recent: TenantJobs = app.get("/admin/jobs?limit=10", StatusCode::OK).await;
    let ids: Vec<_> = recent.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [ours.id], "{recent:?}");
    assert_eq!(recent.jobs[0].state.as_str(), "succeeded");
    app.as_key(&member)
        .get_problem("/admin/jobs", StatusCode::FORBIDDEN)
        .await;
    app.get_problem("/admin/jobs?limit=0", StatusCode::BAD_REQUEST)
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
    app.as_key(&key)
        .delete::<()>(&format!("/token/{id}"), StatusCode::NO_CONTENT)
        .await;
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
