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

/// The resource indicator the test providers issue RFC 9068 access tokens for.
const RESOURCE: &str = "urn:surge:api";

/// An RFC 9068 access token for [`RESOURCE`], as a client of tenant `a`'s provider gets it:
/// an authorization code flow (PKCE S256) that names the resource (RFC 8707), run by the
/// test as that client, not by the gateway.
async fn access_token_for(app: &TestApp, user: &str) -> String {
    let idp = &app.idps[0];
    let discovery: serde_json::Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let redirect = app.url("/callback");
    let mut start = url::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
    start
        .query_pairs_mut()
        .append_pair("client_id", &idp.client_id)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile api")
        .append_pair("redirect_uri", &redirect)
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", RESOURCE);
    let callback = surge_tests::Browser::new()
        .callback_url(start.as_str(), user)
        .await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(discovery["token_endpoint"].as_str().unwrap())
        .basic_auth(&idp.client_id, Some(&idp.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("code_verifier", verifier.secret()),
            ("resource", RESOURCE),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    use base64::Engine as _;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header["typ"], "at+jwt",
        "the provider issues RFC 9068 tokens"
    );
    token
}

/// Tenant `a` takes access tokens for [`RESOURCE`].
async fn app_taking_resource_tokens() -> TestApp {
    fn with_resource_audience(settings: &mut surge_gateway::config::GatewaySettings) {
        settings.tenants[0].access_token_audience = Some(RESOURCE.into());
    }
    surge_tests::TestAppBuilder {
        identity: true,
        tune: Some(with_resource_audience),
        ..Default::default()
    }
    .spawn()
    .await
}

/// Tenant `a`'s provider puts alice's email and groups in her access tokens, as providers
/// configured to do so send them.
async fn alice_claims_in_access_tokens(app: &TestApp) {
    app.idps[0]
        .set_user(
            "alice",
            &json!({"email": "alice@example.test", "email_verified": true, "name": "Alice",
                    "groups": ["admins"], "access_token_claims": true}),
        )
        .await;
}

#[tokio::test]
async fn an_rfc_9068_access_token_for_the_configured_audience_is_a_credential_of_its_entity() {
    let app = app_taking_resource_tokens().await;
    alice_claims_in_access_tokens(&app).await;
    let login = app.login("/login?tenant=a", "alice").await;
    let token = access_token_for(&app, "alice").await;
    let me: Me = app.as_bearer(&token).get("/me", StatusCode::OK).await;
    assert_eq!(
        (me.entity_id, me.tenant.as_str(), me.admin, me.key_id),
        (login.entity_id, "a", true, None)
    );
    // ID tokens keep working beside them.
    let me: Me = app
        .as_bearer(login.id_token.as_deref().unwrap())
        .get("/me", StatusCode::OK)
        .await;
    assert_eq!(me.entity_id, login.entity_id);
}

#[tokio::test]
async fn an_access_token_without_an_email_asks_userinfo_and_is_refused_with_the_reason() {
    let app = app_taking_resource_tokens().await;
    // Bob's tokens name him by `sub` only (the usual shape). This provider's userinfo takes
    // only its own access tokens, not one for a resource: the gateway asks, is refused, and
    // says what to change.
    let token = access_token_for(&app, "bob").await;
    let problem = app
        .as_bearer(&token)
        .get_problem("/me", StatusCode::UNAUTHORIZED)
        .await;
    let detail = problem.detail.unwrap();
    assert!(detail.contains("userinfo"), "{detail}");
}

#[tokio::test]
async fn an_access_token_for_another_audience_is_refused() {
    // Tenant a's audience is left unset: the client id, which these tokens do not name.
    let app = TestApp::spawn_with_identity().await;
    alice_claims_in_access_tokens(&app).await;
    let token = access_token_for(&app, "alice").await;
    let problem = app
        .as_bearer(&token)
        .get_problem("/me", StatusCode::UNAUTHORIZED)
        .await;
    assert_eq!(
        problem.detail.as_deref(),
        Some("the bearer token is not valid")
    );
}
