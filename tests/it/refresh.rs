//! `POST /login/refresh`: the provider's refresh token traded, at the real provider, for a
//! new login token with the person's claims and groups as they are now.

use reqwest::StatusCode;
use serde_json::json;
use surge_gateway::routes::login::{Issued, Me, RefreshRequest};
use surge_tests::TestApp;

async fn identity_app() -> TestApp {
    TestApp::spawn_with_identity().await
}

fn refresh(token: &str) -> RefreshRequest {
    RefreshRequest {
        tenant: Some("b".into()),
        refresh_token: token.to_owned(),
    }
}

#[tokio::test]
async fn a_refresh_gives_a_new_login_token_with_the_groups_of_now() {
    let app = identity_app().await;
    // Tenant b gives refresh tokens (offline_access); alice is in its admin group.
    let first = app.login("/login?tenant=b", "alice").await;
    assert!(first.admin);
    let token = first.refresh_token.clone().expect("a refresh token");
    // Meanwhile alice leaves the admin group at the provider.
    app.idps[1]
        .set_user(
            "alice",
            &json!({"email": "alice@example.test", "email_verified": true, "name": "Alice", "groups": []}),
        )
        .await;
    let renewed: Issued = app
        .anonymous()
        .post("/login/refresh", &refresh(&token), StatusCode::OK)
        .await;
    assert_eq!(renewed.kind, "login");
    assert_eq!(renewed.entity_id, first.entity_id, "the same person");
    assert_ne!(renewed.access_token, first.access_token);
    assert!(
        !renewed.admin,
        "the admin standing is the provider's of now"
    );
    let me: Me = app
        .as_bearer(&renewed.access_token)
        .get("/me", StatusCode::OK)
        .await;
    assert_eq!((me.entity_id, me.admin), (first.entity_id, false));
    // The provider rotated the refresh token: the new one works again.
    let again = renewed
        .refresh_token
        .expect("the provider's new refresh token");
    let third: Issued = app
        .anonymous()
        .post("/login/refresh", &refresh(&again), StatusCode::OK)
        .await;
    assert_eq!(third.entity_id, first.entity_id);
}

#[tokio::test]
async fn a_refresh_token_the_provider_does_not_know_is_refused() {
    let app = identity_app().await;
    let problem = app
        .anonymous()
        .post_problem(
            "/login/refresh",
            &refresh("made-up-refresh-token"),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:login-failed");
    assert!(problem.detail.unwrap().contains("log in again"));
    assert_eq!(app.count("auth").await, 0, "no token issued");
}

#[tokio::test]
async fn a_refresh_body_over_the_limit_is_413_naming_it() {
    let app = TestApp::spawn().await;
    let oversize = json!({"refresh_token": "x".repeat(128 * 1024)});
    let problem = app
        .anonymous()
        .post_problem("/login/refresh", &oversize, StatusCode::PAYLOAD_TOO_LARGE)
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:payload-too-large");
}
