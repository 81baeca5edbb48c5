//! One entity's rate limit across every gateway replica (`limits.store_url`, a Redis): three
//! replicas together let through what one would, and a store that does not answer lets
//! requests through (counted) or refuses them, as configured.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use surge_gateway::config::GatewaySettings;
use surge_tests::{TestApp, TestAppBuilder};

/// Five a second, five at once, kept in the machine's Redis.
async fn limited_app(tune: fn(&mut GatewaySettings)) -> TestApp {
    TestAppBuilder {
        rate_limit: Some((5, 5)),
        tune: Some(tune),
        ..Default::default()
    }
    .spawn()
    .await
}

fn shared_store(settings: &mut GatewaySettings) {
    settings.limits.store_url = Some(SecretString::from(surge_tests::redis_url()));
}

/// A port nothing listens on.
fn dead_store(settings: &mut GatewaySettings) {
    settings.limits.store_url = Some(SecretString::from("redis://127.0.0.1:9/0"));
}

#[tokio::test]
async fn three_replicas_together_let_through_one_entitys_rate_not_three_times_it() {
    let app = limited_app(shared_store).await;
    let (second, third) = (app.spawn_replica().await, app.spawn_replica().await);
    let (key, _) = app.mint_key("acme", "busy@acme.test", 0).await;
    let addrs = [app.addr, second.addr, third.addr];
    let seconds = std::env::var("SURGE_TEST_RATE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let started = Instant::now();
    let mut allowed = 0u64;
    let mut refused = 0u64;
    let mut n = 0usize;
    while started.elapsed().as_secs_f64() < seconds {
        let addr = addrs[n % addrs.len()];
        n += 1;
        let status = app
            .client
            .get(format!("http://{addr}/jobs"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
            .status();
        match status {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // GCRA: the burst at once, then the rate.
    let expected = 5.0 + 5.0 * elapsed;
    eprintln!(
        "shared limit: {allowed} allowed, {refused} refused in {elapsed:.1} s over 3 replicas; \
         one replica's limit allows {expected:.1}"
    );
    assert!(refused > 0);
    assert!(
        (allowed as f64) <= expected * 1.1 + 1.0 && (allowed as f64) >= expected * 0.9 - 1.0,
        "{allowed} allowed where {expected:.1} is the limit"
    );
}

#[tokio::test]
async fn a_store_that_does_not_answer_lets_requests_through_and_says_so() {
    let app = limited_app(dead_store).await;
    let (key, _) = app.mint_key("acme", "busy@acme.test", 0).await;
    for _ in 0..3 {
        assert_eq!(
            app.as_key(&key)
                .status_of(reqwest::Method::GET, "/jobs")
                .await,
            StatusCode::OK
        );
    }
    let failures = app
        .metric("surge_rate_limit_store_failures_total", &[])
        .await;
    assert!(failures >= 3.0, "{failures}");
}

#[tokio::test]
async fn a_store_that_does_not_answer_refuses_requests_when_told_to_fail_closed() {
    fn closed(settings: &mut GatewaySettings) {
        dead_store(settings);
        settings.limits.store_fail_open = false;
    }
    let app = limited_app(closed).await;
    let (key, _) = app.mint_key("acme", "busy@acme.test", 0).await;
    let problem = app
        .as_key(&key)
        .get_problem("/jobs", StatusCode::SERVICE_UNAVAILABLE)
        .await;
    assert!(problem.detail.unwrap().contains("rate-limit store"));
}
