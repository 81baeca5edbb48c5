//! Before anyone is authenticated, work that costs the gateway something (a credential
//! lookup the caches cannot answer, a login start) is limited per client address; the
//! address comes from `X-Forwarded-For` only through a trusted proxy.

use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use surge_gateway::config::GatewaySettings;
use surge_tests::{TestApp, TestAppBuilder};

/// One lookup a second, five at once; the test's loopback peer is a trusted proxy, so each
/// test client is told apart by the address it forwards.
async fn strict_app() -> TestApp {
    fn strict(settings: &mut GatewaySettings) {
        settings.limits.per_client_per_second = 1;
        settings.limits.per_client_burst = 5;
        settings.http.trusted_proxies = vec!["127.0.0.1".into()];
    }
    TestAppBuilder {
        tune: Some(strict),
        ..Default::default()
    }
    .spawn()
    .await
}

/// A well-formed key no one has (its checksum is right, so only a lookup can refuse it).
fn made_up_key() -> String {
    surge_gateway::auth::api_key::mint()
        .unwrap()
        .0
        .expose_secret()
        .to_owned()
}

async fn status(app: &TestApp, client: &str, path: &str, key: Option<&str>) -> StatusCode {
    let mut request = app
        .client
        .get(app.url(path))
        .header("x-forwarded-for", client);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn made_up_keys_from_one_client_are_limited_and_other_clients_are_not() {
    let app = strict_app().await;
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(status(&app, "198.51.100.1", "/jobs", Some(&made_up_key())).await);
    }
    assert!(
        answers[..5].iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{answers:?}"
    );
    assert!(
        answers[6..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "past the burst, no more lookups: {answers:?}"
    );
    // Another client is not held back by the first.
    assert_eq!(
        status(&app, "198.51.100.2", "/jobs", Some(&made_up_key())).await,
        StatusCode::UNAUTHORIZED
    );
    // The development key and keys the cache knows cost no lookup: never limited.
    for _ in 0..20 {
        assert_eq!(
            status(
                &app,
                "198.51.100.1",
                "/jobs",
                Some(surge_tests::TEST_API_KEY)
            )
            .await,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn the_same_unknown_key_again_costs_no_lookup() {
    let app = strict_app().await;
    let key = made_up_key();
    for _ in 0..30 {
        assert_eq!(
            status(&app, "198.51.100.3", "/jobs", Some(&key)).await,
            StatusCode::UNAUTHORIZED,
            "answered from the cache of unknown keys, not charged again"
        );
    }
}

#[tokio::test]
async fn login_starts_are_limited_per_client() {
    let app = strict_app().await;
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(status(&app, "198.51.100.4", "/login?tenant=nope", None).await);
    }
    assert!(
        answers[..5].iter().all(|s| *s == StatusCode::NOT_FOUND),
        "{answers:?}"
    );
    assert!(
        answers[6..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{answers:?}"
    );
    assert_eq!(
        status(&app, "198.51.100.5", "/login?tenant=nope", None).await,
        StatusCode::NOT_FOUND,
        "another client starts its own"
    );
}

#[tokio::test]
async fn a_forwarded_address_from_an_untrusted_peer_is_ignored() {
    fn untrusting(settings: &mut GatewaySettings) {
        settings.limits.per_client_per_second = 1;
        settings.limits.per_client_burst = 3;
    }
    let app = TestAppBuilder {
        tune: Some(untrusting),
        ..Default::default()
    }
    .spawn()
    .await;
    // Each request claims to come from elsewhere; all are the same peer, and counted so.
    let mut answers = Vec::new();
    for n in 0..8 {
        let client = format!("198.51.100.{}", 10 + n);
        answers.push(status(&app, &client, "/jobs", Some(&made_up_key())).await);
    }
    assert!(
        answers[4..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{answers:?}"
    );
}
