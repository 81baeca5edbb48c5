//! Identity against two real OpenID providers (npm `oidc-provider`) as tenants `a` and `b`:
//! the whole login driven over HTTP as a browser does, the attacks a login must survive, keys
//! through their life, bearer ID tokens, and a real headless Chromium per tenant.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_tests::{Browser, TestApp, TestAppBuilder, eventually, idp_dir, log_dir};
use url::Url;

async fn identity_app() -> TestApp {
    TestAppBuilder {
        identity: true,
        ..Default::default()
    }
    .spawn()
    .await
}

async fn me(app: &TestApp, credential: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(app.url("/me"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn problem_type(response: reqwest::Response, status: StatusCode) -> String {
    let body = TestApp::expect_problem(response, status).await;
    body["type"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn logging_in_to_two_tenants_mints_keys_for_separate_entities() {
    let app = identity_app().await;
    let alice_a = app
        .login_json("/token?tenant=a&label=laptop&persona=pc", "alice")
        .await;
    let key_a = alice_a["access_token"].as_str().unwrap();
    assert!(key_a.starts_with("surge_"));
    assert_eq!(
        (alice_a["kind"].as_str(), alice_a["admin"].as_bool()),
        (Some("api_key"), Some(true))
    );
    assert_eq!(alice_a["account"], "alice@example.test");
    assert!(
        alice_a.get("id_token").is_none(),
        "a key mint hands out no provider token"
    );

    let (status, who) = me(&app, key_a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (who["tenant"].as_str(), who["admin"].as_bool()),
        (Some("a"), Some(true))
    );
    assert_eq!(who["entity_id"], alice_a["entity_id"]);

    // The same person at the other provider is another tenant's entity.
    let alice_b = app.login_json("/token?tenant=b", "alice").await;
    assert_ne!(alice_b["entity_id"], alice_a["entity_id"]);
    let bob = app.login_json("/token?tenant=a", "bob").await;
    assert_eq!(bob["admin"], false, "bob is in no admin group");

    // Claims and groups of the ID token are kept with the key; only the key's hash is.
    let id: uuid::Uuid = alice_a["id"].as_str().unwrap().parse().unwrap();
    let groups: Vec<String> = sqlx::query_scalar("SELECT name FROM auth_groups WHERE auth_id = $1")
        .bind(id)
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(groups, ["admins"]);
    let email: Value =
        sqlx::query_scalar("SELECT value FROM auth_claims WHERE auth_id = $1 AND name = 'email'")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(email, "alice@example.test");
    let (subject, persona): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT e.subject, p.source FROM auth a JOIN entity e ON e.id = a.entity_id
         LEFT JOIN entity_persona p ON p.id = a.persona_id WHERE a.id = $1",
    )
    .bind(id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (subject.as_deref(), persona.as_deref()),
        (Some("alice"), Some("pc"))
    );

    // One tenant's entity never sees another's jobs or keys.
    let job = app
        .request_as(key_a, Method::POST, "/jobs/echo")
        .header("prefer", "respond-async")
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    let job = TestApp::expect_json(job, StatusCode::ACCEPTED).await;
    let path = format!("/jobs/{}", job["id"].as_str().unwrap());
    let key_b = alice_b["access_token"].as_str().unwrap();
    for (key, status) in [(key_a, StatusCode::OK), (key_b, StatusCode::NOT_FOUND)] {
        let got = app
            .request_as(key, Method::GET, &path)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), status);
    }
    let listed = app
        .request_as(key_b, Method::GET, "/tokens")
        .send()
        .await
        .unwrap();
    let listed = TestApp::expect_json(listed, StatusCode::OK).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "only b's own key: {listed}"
    );
    let revoke = app
        .request_as(key_b, Method::DELETE, &format!("/token/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        revoke.status(),
        StatusCode::NOT_FOUND,
        "b cannot revoke a's key"
    );
    assert_eq!(me(&app, key_a).await.0, StatusCode::OK);
}

#[tokio::test]
async fn login_gives_a_login_token_and_the_providers_refresh_token_when_it_has_one() {
    let app = identity_app().await;
    let b = app.login_json("/login?tenant=b", "bob").await;
    assert_eq!(b["kind"], "login");
    assert!(
        b["refresh_token"].as_str().is_some_and(|t| !t.is_empty()),
        "offline_access: {b}"
    );
    assert!(
        b["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    let expires_in = b["expires_in"].as_i64().unwrap();
    assert!(
        (3000..=3600).contains(&expires_in),
        "the provider's lifetime: {expires_in}"
    );
    let (status, who) = me(&app, b["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, who["tenant"].as_str()),
        (StatusCode::OK, Some("b"))
    );

    let a = app.login_json("/login?tenant=a", "alice").await;
    assert!(
        a.get("refresh_token").is_none(),
        "tenant a does not ask for offline_access"
    );
}

/// The start of a login: cookie, redirect and the parameters the provider must see.
#[tokio::test]
async fn a_login_starts_with_pkce_state_nonce_and_a_locked_down_cookie() {
    let app = identity_app().await;
    let browser = Browser::new();
    let start = browser
        .client
        .get(app.url("/token?tenant=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "surge_login_a=",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/callback",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain-http development callback"
    );
    let to = Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(&app.idps[0].issuer));
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    for p in ["state", "nonce", "code_challenge"] {
        assert!(q[p].len() >= 16, "{p} is random and long");
    }
    let stored = app.count("login_flow").await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn a_forged_replayed_or_foreign_callback_is_refused() {
    let app = identity_app().await;
    let browser = Browser::new();
    let callback = browser
        .callback_url(&app.url("/token?tenant=a"), "alice")
        .await;

    // Wrong state: refused, and the real login is untouched.
    let mut forged = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let got = browser.client.get(forged).send().await.unwrap();
    assert_eq!(
        problem_type(got, StatusCode::BAD_REQUEST).await,
        "urn:surge:problem:login-failed"
    );

    // Another browser (no state cookie) with the genuine URL: refused, and the flow is spent.
    let other = Browser::new();
    let got = other.client.get(callback.clone()).send().await.unwrap();
    let body = TestApp::expect_json(got, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("browser"),
        "{body}"
    );

    // Genuine URL in the right browser after that: the state is used up (single use).
    let got = browser.client.get(callback.clone()).send().await.unwrap();
    let body = TestApp::expect_json(got, StatusCode::BAD_REQUEST).await;
    assert!(
        body["detail"].as_str().unwrap().contains("already used"),
        "{body}"
    );

    // A complete login, then the same callback replayed: refused.
    let callback = browser
        .callback_url(&app.url("/token?tenant=a"), "alice")
        .await;
    let ok = browser.client.get(callback.clone()).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let replay = browser.client.get(callback).send().await.unwrap();
    assert_eq!(
        problem_type(replay, StatusCode::BAD_REQUEST).await,
        "urn:surge:problem:login-failed"
    );
    let keys = app.count("auth").await;
    assert_eq!(keys, 1, "only the one genuine login issued a key");
}

fn param(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_response_from_the_other_tenants_provider_is_refused_mix_up() {
    let app = identity_app().await;
    let browser = Browser::new();
    for send_iss in [true, false] {
        let at_a = browser
            .callback_url(&app.url("/token?tenant=a"), "alice")
            .await;
        let at_b = browser
            .callback_url(&app.url("/token?tenant=b"), "alice")
            .await;
        assert_eq!(
            param(&at_b, "iss"),
            app.idps[1].issuer,
            "the provider sends iss (RFC 9207)"
        );
        // The code and issuer from b's provider, delivered to the flow that began with a.
        let mut crossed = app.url("/callback").parse::<Url>().unwrap();
        crossed
            .query_pairs_mut()
            .append_pair("state", &param(&at_a, "state"))
            .append_pair("code", &param(&at_b, "code"));
        if send_iss {
            crossed
                .query_pairs_mut()
                .append_pair("iss", &param(&at_b, "iss"));
        }
        let got = browser.client.get(crossed).send().await.unwrap();
        let body = TestApp::expect_json(got, StatusCode::BAD_REQUEST).await;
        let detail = body["detail"].as_str().unwrap();
        if send_iss {
            assert!(
                detail.contains("issuer") && detail.contains("tenant a"),
                "{detail}"
            );
        } else {
            // Without the iss parameter, a's provider refuses b's code.
            assert!(detail.contains("refused the code"), "{detail}");
        }
    }
    let keys = app.count("auth").await;
    assert_eq!(keys, 0);
}

#[tokio::test]
async fn unverified_emails_unknown_tenants_and_a_down_provider_get_clear_errors() {
    let app = identity_app().await;
    // carol's provider has not verified her email: no entity, no key.
    let got = Browser::new()
        .login(&app.url("/token?tenant=a"), "carol")
        .await;
    let body = TestApp::expect_json(got, StatusCode::FORBIDDEN).await;
    assert!(
        body["detail"].as_str().unwrap().contains("not verified"),
        "{body}"
    );
    let entities = app.count("entity WHERE tenant = 'a'").await;
    assert_eq!(entities, 0);

    let got = app
        .client
        .get(app.url("/login?tenant=nope"))
        .send()
        .await
        .unwrap();
    let body = TestApp::expect_json(got, StatusCode::NOT_FOUND).await;
    assert_eq!(body["type"], "urn:surge:problem:unknown-tenant");
    assert!(
        body["detail"].as_str().unwrap().contains("a, b, down"),
        "{body}"
    );
    let got = app.client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(
        problem_type(got, StatusCode::BAD_REQUEST).await,
        "urn:surge:problem:bad-request"
    );

    // A provider that is down fails its own logins only, quickly and clearly.
    let started = std::time::Instant::now();
    let got = app
        .client
        .get(app.url("/login?tenant=down"))
        .send()
        .await
        .unwrap();
    let body = TestApp::expect_json(got, StatusCode::BAD_GATEWAY).await;
    assert_eq!(body["type"], "urn:surge:problem:provider-unavailable");
    assert!(
        body["detail"].as_str().unwrap().contains("tenant down"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "bounded by the provider timeout"
    );
    assert!(app.login_key("a", "bob").await.starts_with("surge_"));

    let got = app
        .client
        .get(app.url("/token?tenant=a&seconds=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem_type(got, StatusCode::BAD_REQUEST).await,
        "urn:surge:problem:bad-request"
    );
    let got = app
        .client
        .get(app.url("/token?tenant=a&persona=Not%20Ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem_type(got, StatusCode::BAD_REQUEST).await,
        "urn:surge:problem:bad-request"
    );
}

#[tokio::test]
async fn keys_can_be_rotated_re_timed_expire_and_be_revoked() {
    let app = identity_app().await;
    let issued = app
        .login_json("/token?tenant=a&seconds=0&label=ci", "bob")
        .await;
    assert_eq!(issued["expires_in"], 0, "seconds=0 never expires");
    let old = issued["access_token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();

    // A tampered key is refused by its checksum.
    let mut tampered = old.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
    let (status, _) = me(&app, &String::from_utf8(tampered).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let rotated = app
        .request_as(&old, Method::PUT, "/token")
        .json(&json!({"id": id, "rotate": true}))
        .send()
        .await
        .unwrap();
    let rotated = TestApp::expect_json(rotated, StatusCode::OK).await;
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["id"], id.as_str(), "same key, new secret");
    assert_eq!(me(&app, &new).await.0, StatusCode::OK);
    eventually(
        "the old secret is refused",
        Duration::from_secs(3),
        || async { (me(&app, &old).await.0 == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;

    // Valid for one more second: then refused, on every replica within the cache's second.
    let retimed = app
        .request_as(&new, Method::PUT, "/token")
        .json(&json!({"id": id, "seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(retimed.status(), StatusCode::OK);
    eventually("the key expires", Duration::from_secs(5), || async {
        let (status, body) = me(&app, &new).await;
        (status == StatusCode::UNAUTHORIZED).then_some(body)
    })
    .await;

    // Revocation: a fresh key, revoked, is refused within a second.
    let key = app.login_key("a", "bob").await;
    let tokens = app
        .request_as(&key, Method::GET, "/tokens")
        .send()
        .await
        .unwrap();
    let tokens = TestApp::expect_json(tokens, StatusCode::OK).await;
    let listed = tokens.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|k| k.get("access_token").is_none() && k.get("key").is_none())
    );
    let newest = listed[0]["id"].as_str().unwrap();
    let revoked = app
        .request_as(&key, Method::DELETE, &format!("/token/{newest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    // Within about a second (the key cache's lifetime), on this replica as on any other.
    eventually(
        "the revoked key is refused",
        Duration::from_millis(1500),
        || async { (me(&app, &key).await.0 == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;

    let nothing = app
        .request(Method::PUT, "/token")
        .json(&json!({"id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(nothing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn id_tokens_are_bearer_credentials_only_where_the_tenant_allows_it() {
    let app = identity_app().await;
    let a = app.login_json("/login?tenant=a", "alice").await;
    let id_token = a["id_token"].as_str().unwrap();
    let (status, who) = me(&app, id_token).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(
        (who["entity_id"].clone(), who["admin"].as_bool()),
        (a["entity_id"].clone(), Some(true))
    );

    // A forged signature, a changed payload: refused.
    let parts: Vec<&str> = id_token.split('.').collect();
    // One character of the signature changed (still base64url of the same length).
    let mut signature = parts[2].to_owned().into_bytes();
    signature[10] = if signature[10] == b'A' { b'B' } else { b'A' };
    let signature = String::from_utf8(signature).unwrap();
    let bad_signature = format!("{}.{}.{signature}", parts[0], parts[1]);
    assert_eq!(me(&app, &bad_signature).await.0, StatusCode::UNAUTHORIZED);
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("mallory");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        engine.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(me(&app, &forged).await.0, StatusCode::UNAUTHORIZED);

    // Tenant b does not accept bearer tokens.
    let b = app.login_json("/login?tenant=b", "alice").await;
    let (status, body) = me(&app, b["id_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn new_signing_keys_at_the_provider_are_fetched_when_a_token_names_one() {
    let mut app = identity_app().await;
    assert!(app.login_key("a", "alice").await.starts_with("surge_"));
    app.idps[0].restart().await;
    // The harness lowers identity.key_refresh_min_ms, so the unknown kid triggers a fetch.
    let a = app.login_json("/login?tenant=a", "bob").await;
    assert_eq!(
        me(&app, a["id_token"].as_str().unwrap()).await.0,
        StatusCode::OK
    );
}

/// A real browser (Debian's headless Chromium, driven by playwright-core) logs in to each
/// tenant; the key it is shown works. Screenshots go to the test logs folder.
#[tokio::test]
async fn a_real_browser_logs_in_to_each_tenant() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `bash scripts/setup.sh` installs Debian's chromium"
    );
    let app = identity_app().await;
    for (tenant, user) in [("a", "alice"), ("b", "bob")] {
        let shot = log_dir().join(format!("login-{tenant}-{}.png", surge_tests::unique_name()));
        let out = tokio::process::Command::new("node")
            .arg(idp_dir().join("browser-login.mjs"))
            .arg(app.url(&format!("/token?tenant={tenant}&label=browser")))
            .arg(user)
            .arg(&shot)
            .env("CHROMIUM", &chromium)
            .kill_on_drop(true)
            .output()
            .await
            .expect("node");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "browser login failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let issued: Value = serde_json::from_str(stdout.trim()).expect("the callback's JSON");
        assert_eq!(issued["tenant"], tenant);
        let (status, who) = me(&app, issued["access_token"].as_str().unwrap()).await;
        assert_eq!(
            (status, who["tenant"].as_str()),
            (StatusCode::OK, Some(tenant))
        );
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0),
            "screenshot kept"
        );
    }
}

/// Everything the gateway logs during logins, at the most verbose level, holds none of the
/// secrets that passed through it.
#[tokio::test]
async fn no_secret_or_token_reaches_the_logs() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        // Everything, except the test browser's own cookie jar (the gateway has none).
        .with_env_filter("trace,cookie_store=off")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = identity_app().await;
    let browser = Browser::new();
    let callback = browser
        .callback_url(&app.url("/login?tenant=b"), "alice")
        .await;
    let issued = browser.client.get(callback.clone()).send().await.unwrap();
    let issued = TestApp::expect_json(issued, StatusCode::OK).await;
    let key = app.login_json("/token?tenant=a", "bob").await;
    let api_key = key["access_token"].as_str().unwrap();
    assert_eq!(me(&app, api_key).await.0, StatusCode::OK);
    assert_eq!(
        me(&app, issued["access_token"].as_str().unwrap()).await.0,
        StatusCode::OK
    );

    let logs = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    assert!(logs.contains("login completed"), "the logs were captured");
    let secrets = [
        (
            "tenant a's client secret",
            app.idps[0].client_secret.clone(),
        ),
        (
            "tenant b's client secret",
            app.idps[1].client_secret.clone(),
        ),
        ("the authorization code", param(&callback, "code")),
        ("the state", param(&callback, "state")),
        (
            "the login token",
            issued["access_token"].as_str().unwrap().to_owned(),
        ),
        (
            "the refresh token",
            issued["refresh_token"].as_str().unwrap().to_owned(),
        ),
        (
            "the ID token's signature",
            issued["id_token"]
                .as_str()
                .unwrap()
                .rsplit('.')
                .next()
                .unwrap()
                .to_owned(),
        ),
        ("the API key", api_key.to_owned()),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is a real value");
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(&secret)).collect();
        assert!(leaks.is_empty(), "{what} was logged: {leaks:#?}");
    }
}
