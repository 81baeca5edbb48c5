//! A key's life only shrinks: no credential makes one last longer or forever, a short-lived
//! credential cannot rotate a longer-lived sibling into a lasting secret, and the admin
//! standing a login gave ends after `identity.admin_max_age_seconds`.

use std::time::Duration;

use reqwest::StatusCode;
use surge_gateway::config::GatewaySettings;
use surge_gateway::routes::login::Me;
use surge_gateway::routes::tokens::{KeyUpdate, UpdatedKey};
use surge_tests::{TestApp, TestAppBuilder, eventually};

async fn identity_app(tune: Option<fn(&mut GatewaySettings)>) -> TestApp {
    TestAppBuilder {
        identity: true,
        tune,
        ..Default::default()
    }
    .spawn()
    .await
}

fn retime(id: uuid::Uuid, seconds: i64) -> KeyUpdate {
    KeyUpdate {
        id,
        seconds: Some(seconds),
        rotate: false,
    }
}

#[tokio::test]
async fn a_key_can_be_shortened_but_never_lengthened_made_permanent_or_overflowed() {
    let app = identity_app(None).await;
    let issued = app.login("/token?tenant=a&seconds=3600", "bob").await;
    let key = app.as_key(&issued.access_token);
    for seconds in [0, 7_200, 100_000_000_000_000_000, -5] {
        let problem = key
            .put_problem(
                "/token",
                &retime(issued.id, seconds),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(
            problem.kind, "urn:surge:problem:invalid-lifetime",
            "{seconds}"
        );
    }
    let shorter: UpdatedKey = key
        .put("/token", &retime(issued.id, 60), StatusCode::OK)
        .await;
    assert!(
        (60..=70).contains(&shorter.summary.seconds),
        "{:?}",
        shorter.summary
    );
    // Once shortened, the old length is past its life too.
    let problem = key
        .put_problem(
            "/token",
            &retime(issued.id, 3_000),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(
        problem.detail.unwrap().contains("only be shortened"),
        "says why"
    );
}

#[tokio::test]
async fn a_login_token_cannot_rotate_a_longer_lived_key_of_its_entity() {
    let app = identity_app(None).await;
    // A month-long key and, from another login, an hour-long login token of the same person.
    let lasting = app.login("/token?tenant=a", "bob").await;
    let token = app.login("/login?tenant=a", "bob").await;
    assert_eq!(token.kind, "login");
    let rotate = KeyUpdate {
        id: lasting.id,
        seconds: None,
        rotate: true,
    };
    let problem = app
        .as_key(&token.access_token)
        .put_problem("/token", &rotate, StatusCode::FORBIDDEN)
        .await;
    assert!(problem.detail.unwrap().contains("expires before"));
    // The month-long key's secret still works: nothing was rotated.
    app.as_key(&lasting.access_token)
        .get::<Me>("/me", StatusCode::OK)
        .await;
    // Shortened to end within the token's life, it may be rotated by it (nothing is gained).
    let within = KeyUpdate {
        id: lasting.id,
        seconds: Some(60),
        rotate: true,
    };
    let rotated: UpdatedKey = app
        .as_key(&token.access_token)
        .put("/token", &within, StatusCode::OK)
        .await;
    assert!(rotated.key.is_some());
}

#[tokio::test]
async fn the_admin_standing_of_a_login_lasts_only_its_maximum_age() {
    fn short_admin(settings: &mut GatewaySettings) {
        settings.identity.admin_max_age_seconds = 2;
    }
    let app = identity_app(Some(short_admin)).await;
    // alice is in tenant a's admin group.
    let key = app.login("/token?tenant=a", "alice").await.access_token;
    let me: Me = app.as_key(&key).get("/me", StatusCode::OK).await;
    assert!(me.admin, "an admin as of the login");
    eventually(
        "the admin standing to lapse",
        Duration::from_secs(10),
        || async {
            let me: Me = app.as_key(&key).get("/me", StatusCode::OK).await;
            (!me.admin).then_some(())
        },
    )
    .await;
    // The key itself still works; a new login renews the standing.
    let renewed = app.login("/token?tenant=a", "alice").await.access_token;
    let me: Me = app.as_key(&renewed).get("/me", StatusCode::OK).await;
    assert!(me.admin);
}

#[tokio::test]
async fn delete_token_revokes_the_presented_login_token_or_a_named_key() {
    use reqwest::Method;
    use surge_gateway::store::api_keys::KeySummary;
    let app = identity_app(None).await;
    let key = app.login("/token?tenant=a", "bob").await;
    let token = app.login("/login?tenant=a", "bob").await;
    // Login tokens are listed beside API keys, so they can be found and revoked.
    let listed: Vec<KeySummary> = app
        .as_bearer(&token.access_token)
        .get("/tokens", StatusCode::OK)
        .await;
    let kinds: Vec<(uuid::Uuid, &str)> = listed.iter().map(|k| (k.id, k.kind.as_str())).collect();
    assert_eq!(kinds, [(token.id, "login"), (key.id, "api_key")]);

    app.as_bearer(&token.access_token)
        .delete::<()>(&format!("/token?id={}", key.id), StatusCode::NO_CONTENT)
        .await;
    app.as_bearer(&token.access_token)
        .delete::<()>("/token", StatusCode::NO_CONTENT)
        .await;
    for (what, secret) in [
        ("the key", &key.access_token),
        ("the token", &token.access_token),
    ] {
        eventually(what, Duration::from_millis(1500), || async {
            (app.as_bearer(secret).status_of(Method::GET, "/me").await == StatusCode::UNAUTHORIZED)
                .then_some(())
        })
        .await;
    }
    // The development key is configuration, not a token: nothing to revoke here.
    let problem = app
        .api()
        .delete_problem("/token", StatusCode::BAD_REQUEST)
        .await;
    assert!(problem.detail.unwrap().contains("?id="));
}
