//! Identity against two real OpenID providers (npm `oidc-provider`) as tenants `a` and `b`:
//! the whole login driven over HTTP as a browser does, the attacks a login must survive, keys
//! through their life, bearer ID tokens, and a real headless Chromium per tenant.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_gateway::routes::login::{Issued, Me};
use surge_gateway::routes::tokens::{KeyUpdate, UpdatedKey};
use surge_gateway::store::api_keys::KeySummary;
use surge_gateway::views::JobView;
use surge_tests::{
    Browser, TestApp, TestAppBuilder, eventually, idp_dir, log_dir, read_json, read_problem,
};
use url::Url;

async fn identity_app() -> TestApp {
    TestApp::spawn_with_identity().await
}

fn param(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_key_minted_through_a_login_names_its_tenant_entity_and_role() {
    let app = identity_app().await;
    let issued = app
        .login("/token?tenant=a&label=laptop&persona=pc", "alice")
        .await;
    assert!(issued.access_token.starts_with("surge_"));
    assert_eq!((issued.kind.as_str(), issued.admin), ("api_key", true));
    assert_eq!(issued.account, "alice@example.test");
    assert_eq!(
        (issued.label.as_deref(), issued.persona.as_deref()),
        (Some("laptop"), Some("pc"))
    );
    assert!(
        issued.id_token.is_none(),
        "a key mint hands out no provider token"
    );
    let who = app
        .as_bearer(&issued.access_token)
        .get::<Me>("/me", StatusCode::OK)
        .await;
    assert_eq!((who.tenant.as_str(), who.admin), ("a", true));
    assert_eq!(who.entity_id, issued.entity_id);
    assert_eq!(who.key_id, Some(issued.id));
}

#[tokio::test]
async fn the_same_person_at_the_other_provider_is_another_tenants_entity() {
    let app = identity_app().await;
    let alice_a = app.login("/token?tenant=a", "alice").await;
    let alice_b = app.login("/token?tenant=b", "alice").await;
    assert_ne!(alice_b.entity_id, alice_a.entity_id);
    assert_eq!(alice_b.tenant, "b");
    let bob = app.login("/token?tenant=a", "bob").await;
    assert!(!bob.admin, "bob is in no admin group");
}

#[tokio::test]
async fn a_keys_id_token_claims_groups_subject_and_persona_are_kept_with_it() {
    let app = identity_app().await;
    let issued = app
        .login("/token?tenant=a&label=laptop&persona=pc", "alice")
        .await;
    let id = issued.id;
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
    // Only the key's hash is kept, never the key.
    let hash: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM auth WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let expected = surge_gateway::auth::api_key::parse(&issued.access_token).unwrap();
    assert_eq!(hash, expected.0);
}

#[tokio::test]
async fn one_tenants_entity_never_sees_another_tenants_jobs_or_keys() {
    let app = identity_app().await;
    let alice_a = app.login("/token?tenant=a", "alice").await;
    let alice_b = app.login("/token?tenant=b", "alice").await;
    let (key_a, key_b) = (&alice_a.access_token, &alice_b.access_token);
    let job: JobView = app
        .as_key(key_a)
        .header("prefer", "respond-async")
        .post("/jobs/echo", &json!({"n": 1}), StatusCode::ACCEPTED)
        .await;
    let path = format!("/jobs/{}", job.id);
    app.as_key(key_a)
        .get::<JobView>(&path, StatusCode::OK)
        .await;
    app.as_key(key_b)
        .get_problem(&path, StatusCode::NOT_FOUND)
        .await;
    let listed: Vec<KeySummary> = app.as_key(key_b).get("/tokens", StatusCode::OK).await;
    let ids: Vec<_> = listed.iter().map(|k| k.id).collect();
    assert_eq!(ids, [alice_b.id], "only b's own key");
    // b cannot revoke a's key.
    app.as_key(key_b)
        .delete_problem(&format!("/token/{}", alice_a.id), StatusCode::NOT_FOUND)
        .await;
    app.as_bearer(key_a).get::<Me>("/me", StatusCode::OK).await;
}

#[tokio::test]
async fn login_gives_a_login_token_and_the_providers_refresh_token_when_it_has_one() {
    let app = identity_app().await;
    let b = app.login("/login?tenant=b", "bob").await;
    assert_eq!(b.kind, "login");
    assert!(
        b.refresh_token.as_deref().is_some_and(|t| !t.is_empty()),
        "offline_access: {b:?}"
    );
    assert!(
        b.id_token
            .as_deref()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert!(
        (3000..=3600).contains(&b.expires_in),
        "the provider's lifetime: {}",
        b.expires_in
    );
    assert_eq!(
        app.as_bearer(&b.access_token)
            .get::<Me>("/me", StatusCode::OK)
            .await
            .tenant,
        "b"
    );

    let a = app.login("/login?tenant=a", "alice").await;
    assert!(
        a.refresh_token.is_none(),
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
async fn a_callback_with_a_forged_state_is_refused_and_the_real_login_goes_on() {
    let app = identity_app().await;
    let browser = Browser::new();
    let callback = browser
        .callback_url(&app.url("/token?tenant=a"), "alice")
        .await;
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
    let problem = read_problem(got, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem.kind, "urn:surge:problem:login-failed");
    assert_eq!(app.count("auth").await, 0);
    // The real login is untouched.
    let genuine = browser.client.get(callback).send().await.unwrap();
    let issued: Issued = read_json(genuine, StatusCode::OK).await;
    assert!(issued.access_token.starts_with("surge_"));
    assert_eq!(app.count("auth").await, 1);
}

#[tokio::test]
async fn a_callback_opened_in_another_browser_is_refused_and_spends_the_login() {
    let app = identity_app().await;
    let browser = Browser::new();
    let callback = browser
        .callback_url(&app.url("/token?tenant=a"), "alice")
        .await;
    // Another browser (no state cookie) with the genuine URL: refused, and the flow is spent.
    let other = Browser::new();
    let got = other.client.get(callback.clone()).send().await.unwrap();
    let detail = read_problem(got, StatusCode::BAD_REQUEST)
        .await
        .detail
        .unwrap();
    assert!(detail.contains("browser"), "{detail}");
    // Genuine URL in the right browser after that: the state is used up (single use).
    let got = browser.client.get(callback).send().await.unwrap();
    let detail = read_problem(got, StatusCode::BAD_REQUEST)
        .await
        .detail
        .unwrap();
    assert!(detail.contains("already used"), "{detail}");
    assert_eq!(app.count("auth").await, 0, "no key was issued");
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let app = identity_app().await;
    let browser = Browser::new();
    let callback = browser
        .callback_url(&app.url("/token?tenant=a"), "alice")
        .await;
    let ok = browser.client.get(callback.clone()).send().await.unwrap();
    read_json::<Issued>(ok, StatusCode::OK).await;
    let replay = browser.client.get(callback).send().await.unwrap();
    let problem = read_problem(replay, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem.kind, "urn:surge:problem:login-failed");
    let keys = app.count("auth").await;
    assert_eq!(keys, 1, "only the one genuine login issued a key");
}

/// The code and issuer from tenant b's provider, delivered to a login that began with a
/// (a mix-up attack); `send_iss`: with the provider's `iss` parameter (RFC 9207). The
/// callback's refusal.
async fn mix_up(app: &TestApp, send_iss: bool) -> String {
    let browser = Browser::new();
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
    let problem = read_problem(got, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.count("auth").await, 0, "no key was issued");
    problem.detail.unwrap()
}

#[tokio::test]
async fn a_response_from_the_other_tenants_provider_is_refused_by_its_issuer() {
    let app = identity_app().await;
    let detail = mix_up(&app, true).await;
    assert!(
        detail.contains("issuer") && detail.contains("tenant a"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_code_from_the_other_tenants_provider_without_its_issuer_is_refused_by_the_provider() {
    let app = identity_app().await;
    // Without the iss parameter, a's provider refuses b's code.
    let detail = mix_up(&app, false).await;
    assert!(detail.contains("refused the code"), "{detail}");
}

#[tokio::test]
async fn an_unverified_email_is_refused_and_no_entity_is_made() {
    let app = identity_app().await;
    // carol's provider has not verified her email: no entity, no key.
    let got = Browser::new()
        .login(&app.url("/token?tenant=a"), "carol")
        .await;
    let detail = read_problem(got, StatusCode::FORBIDDEN)
        .await
        .detail
        .unwrap();
    assert!(detail.contains("not verified"), "{detail}");
    let entities = app.count("entity WHERE tenant = 'a'").await;
    assert_eq!(entities, 0);
    assert_eq!(app.count("auth").await, 0);
}

#[tokio::test]
async fn an_unknown_or_missing_tenant_is_refused_without_listing_the_tenants() {
    let app = identity_app().await;
    let unknown = app
        .anonymous()
        .get_problem("/login?tenant=nope", StatusCode::NOT_FOUND)
        .await;
    assert_eq!(unknown.kind, "urn:surge:problem:unknown-tenant");
    let missing = app
        .anonymous()
        .get_problem("/login", StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(missing.kind, "urn:surge:problem:bad-request");
    // To a stranger the configured tenants are the customer list.
    for detail in [unknown.detail.unwrap(), missing.detail.unwrap()] {
        for tenant in ["\"a\"", " b", "down"] {
            assert!(!detail.contains(tenant), "{tenant} listed: {detail}");
        }
    }
}

#[tokio::test]
async fn a_provider_that_is_down_fails_its_own_logins_only_quickly_and_clearly() {
    let app = identity_app().await;
    let started = std::time::Instant::now();
    let down = app
        .anonymous()
        .get_problem("/login?tenant=down", StatusCode::BAD_GATEWAY)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "bounded by the provider timeout"
    );
    assert_eq!(down.kind, "urn:surge:problem:provider-unavailable");
    let detail = down.detail.unwrap();
    assert!(detail.contains("tenant down"), "{detail}");
    assert!(app.login_key("a", "bob").await.starts_with("surge_"));
}

#[tokio::test]
async fn a_bad_key_lifetime_or_a_malformed_persona_is_refused() {
    let app = identity_app().await;
    for (path, status, kind) in [
        (
            "/token?tenant=a&seconds=-1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-lifetime",
        ),
        (
            "/token?tenant=a&seconds=100000000000000000",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-lifetime",
        ),
        // A maximum is configured (a year by default): never is past it.
        (
            "/token?tenant=a&seconds=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-lifetime",
        ),
        (
            "/token?tenant=a&persona=Not%20Ok",
            StatusCode::BAD_REQUEST,
            "bad-request",
        ),
    ] {
        let problem = app.anonymous().get_problem(path, status).await;
        assert_eq!(problem.kind, format!("urn:surge:problem:{kind}"), "{path}");
    }
    assert_eq!(app.count("login_flow").await, 0, "no login was started");
}

/// bob's API key minted through a login with `query` added to `/token?tenant=a`.
async fn bobs_key(app: &TestApp, query: &str) -> Issued {
    app.login(&format!("/token?tenant=a{query}"), "bob").await
}

#[tokio::test]
async fn a_key_minted_with_seconds_0_never_expires_where_no_maximum_is_set() {
    fn no_maximum(settings: &mut surge_gateway::config::GatewaySettings) {
        settings.identity.max_key_seconds = 0;
    }
    let app = TestAppBuilder {
        identity: true,
        tune: Some(no_maximum),
        ..Default::default()
    }
    .spawn()
    .await;
    let issued = bobs_key(&app, "&seconds=0&label=ci").await;
    assert_eq!(issued.expires_in, 0, "seconds=0 never expires");
    let listed: Vec<KeySummary> = app
        .as_key(&issued.access_token)
        .get("/tokens", StatusCode::OK)
        .await;
    assert_eq!(listed[0].seconds, 0, "{listed:?}");
    assert_eq!(listed[0].label.as_deref(), Some("ci"));
}

#[tokio::test]
async fn a_tampered_login_key_is_refused_by_its_checksum() {
    let app = identity_app().await;
    let key = bobs_key(&app, "").await.access_token;
    let mut tampered = key.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let problem = app
        .as_bearer(&tampered)
        .get_problem("/me", StatusCode::UNAUTHORIZED)
        .await;
    let detail = problem.detail.unwrap();
    assert!(detail.contains("checksum"), "{detail}");
    app.as_bearer(&key).get::<Me>("/me", StatusCode::OK).await;
}

#[tokio::test]
async fn a_rotated_key_keeps_its_id_and_its_old_secret_is_refused() {
    let app = identity_app().await;
    let issued = bobs_key(&app, "").await;
    let old = issued.access_token;
    let rotate = KeyUpdate {
        id: issued.id,
        seconds: None,
        rotate: true,
    };
    let rotated: UpdatedKey = app
        .as_key(&old)
        .put("/token", &rotate, StatusCode::OK)
        .await;
    assert_eq!(rotated.summary.id, issued.id, "same key, new secret");
    let new = rotated.key.expect("the new secret, shown once");
    assert_ne!(new, old);
    app.as_bearer(&new).get::<Me>("/me", StatusCode::OK).await;
    eventually(
        "the old secret is refused",
        Duration::from_secs(3),
        || async {
            (app.as_bearer(&old).status_of(Method::GET, "/me").await == StatusCode::UNAUTHORIZED)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_re_timed_key_is_refused_once_its_new_lifetime_is_over() {
    let app = identity_app().await;
    let issued = bobs_key(&app, "").await;
    let key = issued.access_token;
    // Valid for one more second: then refused, on every replica within the cache's second.
    let retime = KeyUpdate {
        id: issued.id,
        seconds: Some(1),
        rotate: false,
    };
    let retimed: UpdatedKey = app
        .as_key(&key)
        .put("/token", &retime, StatusCode::OK)
        .await;
    assert!(retimed.key.is_none(), "not rotated: no new secret");
    assert!(retimed.summary.seconds >= 1, "{retimed:?}");
    eventually("the key expires", Duration::from_secs(5), || async {
        (app.as_bearer(&key).status_of(Method::GET, "/me").await == StatusCode::UNAUTHORIZED)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn keys_are_listed_newest_first_without_their_secrets() {
    let app = identity_app().await;
    let older = bobs_key(&app, "&label=ci").await;
    let newer = bobs_key(&app, "").await;
    let listed = app
        .as_key(&newer.access_token)
        .exchange(Method::GET, "/tokens")
        .expect::<Vec<KeySummary>>(StatusCode::OK)
        .await;
    let ids: Vec<_> = listed.body.iter().map(|k| k.id).collect();
    assert_eq!(ids, [newer.id, older.id]);
    for secret in [&older.access_token, &newer.access_token] {
        assert!(!listed.text.contains(secret.as_str()), "{}", listed.text);
    }
    let keys: Vec<Value> = serde_json::from_str(&listed.text).unwrap();
    assert!(
        keys.iter()
            .all(|k| k.get("access_token").is_none() && k.get("key").is_none()),
        "{}",
        listed.text
    );
}

#[tokio::test]
async fn a_revoked_login_key_is_refused_within_a_second() {
    let app = identity_app().await;
    let issued = bobs_key(&app, "").await;
    let key = issued.access_token;
    app.as_bearer(&key).get::<Me>("/me", StatusCode::OK).await;
    app.as_key(&key)
        .delete::<()>(&format!("/token/{}", issued.id), StatusCode::NO_CONTENT)
        .await;
    // Within about a second (the key cache's lifetime), on this replica as on any other.
    eventually(
        "the revoked key is refused",
        Duration::from_millis(1500),
        || async {
            (app.as_bearer(&key).status_of(Method::GET, "/me").await == StatusCode::UNAUTHORIZED)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_key_update_that_changes_nothing_is_400() {
    let app = identity_app().await;
    let issued = bobs_key(&app, "").await;
    let nothing = KeyUpdate {
        id: issued.id,
        seconds: None,
        rotate: false,
    };
    let problem = app
        .as_key(&issued.access_token)
        .put_problem("/token", &nothing, StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(problem.kind, "urn:surge:problem:bad-request");
}

#[tokio::test]
async fn an_id_token_of_a_tenant_that_accepts_bearer_tokens_is_a_credential_of_its_entity() {
    let app = identity_app().await;
    let a = app.login("/login?tenant=a", "alice").await;
    let who = app
        .as_bearer(a.id_token.as_deref().unwrap())
        .get::<Me>("/me", StatusCode::OK)
        .await;
    assert_eq!((who.entity_id, who.admin), (a.entity_id, true));
}

#[tokio::test]
async fn an_id_token_with_a_forged_signature_or_payload_is_refused() {
    let app = identity_app().await;
    let a = app.login("/login?tenant=a", "alice").await;
    let id_token = a.id_token.unwrap();
    let parts: Vec<&str> = id_token.split('.').collect();
    // One character of the signature changed (still base64url of the same length).
    let mut signature = parts[2].to_owned().into_bytes();
    signature[10] = if signature[10] == b'A' { b'B' } else { b'A' };
    let signature = String::from_utf8(signature).unwrap();
    let bad_signature = format!("{}.{}.{signature}", parts[0], parts[1]);
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
    for token in [bad_signature, forged] {
        app.as_bearer(&token)
            .get_problem("/me", StatusCode::UNAUTHORIZED)
            .await;
    }
    app.as_bearer(&id_token)
        .get::<Me>("/me", StatusCode::OK)
        .await;
}

#[tokio::test]
async fn a_tenant_that_does_not_accept_bearer_tokens_refuses_its_id_tokens() {
    let app = identity_app().await;
    let b = app.login("/login?tenant=b", "alice").await;
    app.as_bearer(b.id_token.as_deref().unwrap())
        .get_problem("/me", StatusCode::UNAUTHORIZED)
        .await;
    // Its login token is a credential all the same.
    app.as_bearer(&b.access_token)
        .get::<Me>("/me", StatusCode::OK)
        .await;
}

#[tokio::test]
async fn new_signing_keys_at_the_provider_are_fetched_when_a_token_names_one() {
    let mut app = identity_app().await;
    assert!(app.login_key("a", "alice").await.starts_with("surge_"));
    app.idps[0].restart().await;
    // The harness lowers identity.key_refresh_min_ms, so the unknown kid triggers a fetch.
    let a = app.login("/login?tenant=a", "bob").await;
    app.as_bearer(a.id_token.as_deref().unwrap())
        .get::<Me>("/me", StatusCode::OK)
        .await;
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
        let issued: Issued = serde_json::from_str(stdout.trim()).expect("the callback's JSON");
        assert_eq!(issued.tenant, tenant);
        assert_eq!(
            app.as_bearer(&issued.access_token)
                .get::<Me>("/me", StatusCode::OK)
                .await
                .tenant,
            tenant
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
    let issued: Issued = read_json(issued, StatusCode::OK).await;
    let api_key = app.login("/token?tenant=a", "bob").await.access_token;
    app.as_bearer(&api_key)
        .get::<Me>("/me", StatusCode::OK)
        .await;
    app.as_bearer(&issued.access_token)
        .get::<Me>("/me", StatusCode::OK)
        .await;

    let logs = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    assert!(logs.contains("login completed"), "the logs were captured");
    let id_token = issued.id_token.unwrap();
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
        ("the login token", issued.access_token),
        ("the refresh token", issued.refresh_token.unwrap()),
        (
            "the ID token's signature",
            id_token.rsplit('.').next().unwrap().to_owned(),
        ),
        ("the API key", api_key),
    ];
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is a real value");
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(&secret)).collect();
        assert!(leaks.is_empty(), "{what} was logged: {leaks:#?}");
    }
}
