//! API keys: minted with a recognisable prefix and a checksum, stored only as a hash, refused
//! when tampered with, revoked or expired, and scoped to their own entity.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_gateway::store::api_keys::KeySummary;
use surge_gateway::views::{JobPage, JobView};
use surge_tests::{FunctionProcess, TestApp, eventually};

#[tokio::test]
async fn a_minted_key_authenticates_in_either_header_and_only_its_hash_is_stored() {
    let app = TestApp::spawn().await;
    let (key, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    assert!(key.starts_with("surge_"));
    app.as_key(&key)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
    app.as_bearer(&key)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
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
    let problem = app
        .as_key(&tampered)
        .get_problem("/jobs", StatusCode::UNAUTHORIZED)
        .await;
    let detail = problem.detail.unwrap();
    assert!(detail.contains("checksum"), "{detail}");
}

#[tokio::test]
async fn keys_are_listed_to_their_owner_without_their_secrets() {
    let app = TestApp::spawn().await;
    let (key, first) = app.mint_key("acme", "ann@acme.test", 0).await;
    let (_, second) = app.mint_key("acme", "ann@acme.test", 0).await;
    let listed = app
        .as_key(&key)
        .exchange(Method::GET, "/tokens")
        .expect::<Vec<KeySummary>>(StatusCode::OK)
        .await;
    let mut ids: Vec<_> = listed.body.iter().map(|k| k.id).collect();
    ids.sort();
    let mut minted = vec![first, second];
    minted.sort();
    assert_eq!(ids, minted);
    assert!(
        !listed.text.contains("surge_"),
        "no secret is listed: {}",
        listed.text
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_a_second() {
    let app = TestApp::spawn().await;
    let (key, id) = app.mint_key("acme", "ann@acme.test", 0).await;
    let (other, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    // Cached as valid.
    app.as_key(&key)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
    app.as_key(&other)
        .delete::<()>(&format!("/token/{id}"), StatusCode::NO_CONTENT)
        .await;
    eventually(
        "the revoked key to be refused",
        Duration::from_millis(1500),
        || async {
            (app.as_key(&key).status_of(Method::GET, "/jobs").await == StatusCode::UNAUTHORIZED)
                .then_some(())
        },
    )
    .await;
    // The other key still works.
    app.as_key(&other)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let (key, _) = app.mint_key("acme", "ann@acme.test", 1).await;
    app.as_key(&key)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
    eventually("the key to expire", Duration::from_secs(4), || async {
        (app.as_key(&key).status_of(Method::GET, "/jobs").await == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;
    let problem = app
        .as_key(&key)
        .get_problem("/jobs", StatusCode::UNAUTHORIZED)
        .await;
    let detail = problem.detail.unwrap();
    assert!(detail.contains("expired"), "{detail}");
}

#[tokio::test]
async fn one_tenants_key_never_sees_another_tenants_jobs_or_keys() {
    let mut app = TestApp::spawn().await;
    let _echo = app.start_function("echo", &[]).await;
    let (acme, acme_key_id) = app.mint_key("acme", "ann@acme.test", 0).await;
    let (globex, _) = app.mint_key("globex", "ann@acme.test", 0).await;
    let job: JobView = app
        .as_key(&acme)
        .post("/jobs/echo", &json!({"secret": "acme"}), StatusCode::OK)
        .await;
    let path = format!("/jobs/{}", job.id);
    let own: JobView = app.as_key(&acme).get(&path, StatusCode::OK).await;
    assert_eq!(own.result, Some(json!({"secret": "acme"})));
    app.as_key(&globex)
        .get_problem(&path, StatusCode::NOT_FOUND)
        .await;
    let list: JobPage = app.as_key(&globex).get("/jobs", StatusCode::OK).await;
    assert!(list.jobs.is_empty(), "{list:?}");
    let listed: Vec<KeySummary> = app.as_key(&globex).get("/tokens", StatusCode::OK).await;
    assert!(listed.iter().all(|k| k.id != acme_key_id), "{listed:?}");
    app.as_key(&globex)
        .delete_problem(&format!("/token/{acme_key_id}"), StatusCode::NOT_FOUND)
        .await;
    app.as_key(&acme)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
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
    app.as_key(key)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
    assert_eq!(
        output.matches("surge_").count(),
        1,
        "printed once: {output}"
    );
}

#[tokio::test]
async fn surge_key_create_refuses_a_tenant_that_would_share_routing_keys() {
    let app = TestApp::spawn().await;
    let env = vec![("SURGE_DATABASE__URL".to_owned(), app.db.url.clone())];
    let binary = surge_tests::bin_dir().join("surge");
    let args = [
        "key",
        "create",
        "--tenant",
        "acme.x",
        "--account",
        "root@acme.test",
    ];
    let mut cli =
        FunctionProcess::spawn_binary(&binary, &args, &env, &format!("{}key-cli", app.prefix));
    assert!(!cli.wait(Duration::from_secs(20)).await.success());
    let output = cli.output();
    assert!(
        output.contains("acme.x") && output.contains("routing"),
        "{output}"
    );
    assert!(!output.contains("surge_"), "no key: {output}");
    assert_eq!(app.count("entity WHERE tenant = 'acme.x'").await, 0);
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
        app.as_key(&busy)
            .get::<JobPage>("/jobs", StatusCode::OK)
            .await;
    }
    let limited = app
        .as_key(&busy)
        .exchange(Method::GET, "/jobs")
        .expect_problem(StatusCode::TOO_MANY_REQUESTS)
        .await;
    assert_eq!(limited.header("retry-after"), "1");
    assert_eq!(limited.header("ratelimit-limit"), "3");
    assert_eq!(limited.header("ratelimit-remaining"), "0");
    assert_eq!(limited.body.kind, "urn:surge:problem:rate-limited");
    // Per entity.
    app.as_key(&other)
        .get::<JobPage>("/jobs", StatusCode::OK)
        .await;
    eventually(
        "the limit lets the entity in again",
        Duration::from_secs(3),
        || async {
            (app.as_key(&busy).status_of(Method::GET, "/jobs").await == StatusCode::OK)
                .then_some(())
        },
    )
    .await;
}
