//! API keys: minted with a recognisable prefix and a checksum, stored only as a hash, refused
//! when tampered with, revoked or expired, and scoped to their own entity.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_tests::{FunctionProcess, TestApp, eventually};

async fn status_of(app: &TestApp, key: &str, path: &str) -> StatusCode {
    app.request_as(key, Method::GET, path)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_minted_key_authenticates_in_either_header_and_only_its_hash_is_stored() {
    let app = TestApp::spawn().await;
    let (key, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    assert!(key.starts_with("surge_"));
    assert_eq!(status_of(&app, &key, "/jobs").await, StatusCode::OK);
    let bearer = app
        .client
        .get(app.url("/jobs"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM auth")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32, "a SHA-256");
    let hash = surge_gateway::auth::api_key::parse(&key).unwrap();
    assert_eq!(
        stored, hash.0,
        "the key's hash is stored, not the key itself"
    );
}

#[tokio::test]
async fn a_tampered_key_is_refused_by_its_checksum() {
    let app = TestApp::spawn().await;
    let (key, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    let mut chars: Vec<char> = key.chars().collect();
    chars[10] = if chars[10] == 'x' { 'y' } else { 'x' };
    let tampered: String = chars.into_iter().collect();
    let response = app
        .request_as(&tampered, Method::GET, "/jobs")
        .send()
        .await
        .unwrap();
    let problem = TestApp::expect_json(response, StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("checksum"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_a_second() {
    let app = TestApp::spawn().await;
    let (key, id) = app.mint_key("acme", "ann@acme.test", 0).await;
    let (other, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    assert_eq!(
        status_of(&app, &key, "/jobs").await,
        StatusCode::OK,
        "cached as valid"
    );
    let listed = TestApp::expect_json(
        app.request_as(&other, Method::GET, "/tokens")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(
        listed.to_string().find("surge_").is_none(),
        "no secret is listed"
    );

    let revoked = app
        .request_as(&other, Method::DELETE, &format!("/token/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    eventually(
        "the revoked key to be refused",
        Duration::from_millis(1500),
        || async {
            (status_of(&app, &key, "/jobs").await == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
    assert_eq!(
        status_of(&app, &other, "/jobs").await,
        StatusCode::OK,
        "the other key still works"
    );
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let (key, _) = app.mint_key("acme", "ann@acme.test", 1).await;
    assert_eq!(status_of(&app, &key, "/jobs").await, StatusCode::OK);
    let problem = eventually("the key to expire", Duration::from_secs(4), || async {
        let response = app
            .request_as(&key, Method::GET, "/jobs")
            .send()
            .await
            .ok()?;
        (response.status() == StatusCode::UNAUTHORIZED).then_some(response)
    })
    .await;
    let body: serde_json::Value = problem.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn one_tenants_key_never_sees_another_tenants_jobs_or_keys() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let (acme, acme_key_id) = app.mint_key("acme", "ann@acme.test", 0).await;
    let (globex, _) = app.mint_key("globex", "ann@acme.test", 0).await;
    let job = app
        .request_as(&acme, Method::POST, "/jobs/echo")
        .json(&json!({"secret": "acme"}))
        .send()
        .await
        .unwrap();
    let job = TestApp::expect_json(job, StatusCode::OK).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(
        status_of(&app, &acme, &format!("/jobs/{id}")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, &globex, &format!("/jobs/{id}")).await,
        StatusCode::NOT_FOUND
    );
    let list = TestApp::expect_json(
        app.request_as(&globex, Method::GET, "/jobs")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(list["jobs"].as_array().unwrap().is_empty(), "{list}");
    let steal = app
        .request_as(&globex, Method::DELETE, &format!("/token/{acme_key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(steal.status(), StatusCode::NOT_FOUND);
    assert_eq!(status_of(&app, &acme, "/jobs").await, StatusCode::OK);
}

#[tokio::test]
async fn surge_key_create_prints_a_working_key_once() {
    let app = TestApp::spawn().await;
    let env = vec![("SURGE_DATABASE__URL".to_owned(), app.db.url.clone())];
    let binary = surge_tests::bin_dir().join("surge");
    let args = [
        "key",
        "create",
        "--tenant",
        "ops",
        "--account",
        "root@ops.test",
        "--label",
        "bootstrap",
    ];
    let mut cli =
        FunctionProcess::spawn_binary(&binary, &args, &env, &format!("{}key-cli", app.prefix));
    assert!(
        cli.wait(Duration::from_secs(20)).await.success(),
        "{}",
        cli.output()
    );
    let output = cli.output();
    let key = output
        .lines()
        .find(|l| l.starts_with("surge_"))
        .expect("the key is printed");
    assert_eq!(status_of(&app, key, "/jobs").await, StatusCode::OK);
    assert_eq!(
        output.matches("surge_").count(),
        1,
        "printed once: {output}"
    );
}

/// Past its burst an entity gets `429` with `Retry-After` and the policy; another entity is
/// unaffected, and the first is served again once the wait is over.
#[tokio::test]
async fn an_entity_over_its_rate_limit_gets_429_with_retry_after() {
    let app = surge_tests::TestAppBuilder {
        rate_limit: Some((1, 3)),
        ..Default::default()
    }
    .spawn()
    .await;
    let (busy, _) = app.mint_key("acme", "busy@acme.test", 0).await;
    let (other, _) = app.mint_key("acme", "calm@acme.test", 0).await;
    for _ in 0..3 {
        assert_eq!(status_of(&app, &busy, "/jobs").await, StatusCode::OK);
    }
    let limited = app
        .request_as(&busy, Method::GET, "/jobs")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = limited.headers().clone();
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["ratelimit-limit"], "3");
    assert_eq!(headers["ratelimit-remaining"], "0");
    let body = TestApp::expect_json(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "urn:surge:problem:rate-limited");
    assert_eq!(
        status_of(&app, &other, "/jobs").await,
        StatusCode::OK,
        "per entity"
    );
    eventually(
        "the limit lets the entity in again",
        Duration::from_secs(3),
        || async { (status_of(&app, &busy, "/jobs").await == StatusCode::OK).then_some(()) },
    )
    .await;
}
