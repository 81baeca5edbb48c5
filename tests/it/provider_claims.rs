//! Claims as providers other than the test one really send them.

use reqwest::StatusCode;
use serde_json::json;
use surge_gateway::routes::login::Me;
use surge_tests::TestApp;

#[tokio::test]
async fn an_email_verified_sent_as_the_string_true_is_accepted() {
    let app = TestApp::spawn_with_identity().await;
    // Some providers send booleans as strings.
    app.idps[0]
        .set_user(
            "bob",
            &json!({"email": "bob@example.test", "email_verified": "true", "name": "Bob", "groups": []}),
        )
        .await;
    let issued = app.login("/login?tenant=a", "bob").await;
    let me: Me = app
        .as_bearer(&issued.access_token)
        .get("/me", StatusCode::OK)
        .await;
    assert_eq!(me.entity_id, issued.entity_id);
}
