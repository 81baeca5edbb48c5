//! Personas (issue 19): an entity's per-source profiles, listed, read and replaced by their
//! entity only, bounded, shown in `/me`, and carried from the presenting key to the function
//! through the job's record. Keys come from real logins at the test providers.

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_gateway::routes::login::Me;
use surge_gateway::store::personas::Persona;
use surge_gateway::views::JobView;
use surge_tests::TestApp;

#[tokio::test]
async fn a_persona_is_listed_read_and_replaced_by_its_entity_and_no_other() {
    let app = TestApp::spawn_with_identity().await;
    let alice = app
        .login("/token?tenant=a&persona=pc", "alice")
        .await
        .access_token;
    let alice = app.as_bearer(&alice);

    let me = alice.get::<Me>("/me", StatusCode::OK).await;
    let shown = me.persona.expect("the key's persona in /me");
    assert_eq!((shown.source.as_str(), &shown.other), ("pc", &json!({})));

    let replaced: Persona = alice
        .put("/personas/pc", &json!({"avatar": "pc.png"}), StatusCode::OK)
        .await;
    assert_eq!(replaced.other, json!({"avatar": "pc.png"}));
    let created: Persona = alice
        .put(
            "/personas/bot-7",
            &json!({"pair": "BTC-EUR"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(created.source, "bot-7");
    let listed: Vec<Persona> = alice.get("/personas", StatusCode::OK).await;
    let names: Vec<&str> = listed.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(names, ["bot-7", "pc"]);
    assert_eq!(
        alice
            .get::<Me>("/me", StatusCode::OK)
            .await
            .persona
            .unwrap()
            .other,
        json!({"avatar": "pc.png"}),
        "/me shows the profile as it is now"
    );

    // Bob (same tenant) and alice at the other tenant are other entities: none of it is theirs.
    for other in [
        app.login_key("a", "bob").await,
        app.login_key("b", "alice").await,
    ] {
        let other = app.as_bearer(&other);
        assert_eq!(
            other.get::<Vec<Persona>>("/personas", StatusCode::OK).await,
            []
        );
        other
            .get_problem("/personas/pc", StatusCode::NOT_FOUND)
            .await;
        let theirs: Persona = other
            .put(
                "/personas/pc",
                &json!({"avatar": "mine.png"}),
                StatusCode::CREATED,
            )
            .await;
        assert_eq!(theirs.other, json!({"avatar": "mine.png"}));
        assert!(
            other
                .get::<Me>("/me", StatusCode::OK)
                .await
                .persona
                .is_none()
        );
    }
    let still: Persona = alice.get("/personas/pc", StatusCode::OK).await;
    assert_eq!(
        still.other,
        json!({"avatar": "pc.png"}),
        "another entity's PUT made its own"
    );
}

#[tokio::test]
async fn a_persona_takes_a_json_object_of_bounded_size_and_an_entity_a_bounded_number() {
    let app = TestApp::spawn_with_identity().await;
    let key = app.login_key("a", "bob").await;
    let bob = app.as_bearer(&key);

    let problem = bob
        .put_problem(
            "/personas/pc",
            &json!({"big": "x".repeat(16 * 1024)}),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
    assert!(problem.detail.unwrap().contains("16384"));
    for body in [json!([1, 2]), json!("text"), json!(null)] {
        bob.put_problem("/personas/pc", &body, StatusCode::BAD_REQUEST)
            .await;
    }
    bob.put_problem("/personas/Not%20Ok", &json!({}), StatusCode::BAD_REQUEST)
        .await;
    bob.get_problem("/personas/Not%20Ok", StatusCode::BAD_REQUEST)
        .await;
    bob.put_problem(
        "/personas/pc",
        &json!({"nul": "a\u{0}b"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        bob.get::<Vec<Persona>>("/personas", StatusCode::OK).await,
        [],
        "nothing refused was kept"
    );

    for n in 0..32 {
        let _: Persona = bob
            .put(
                &format!("/personas/p{n}"),
                &json!({"n": n}),
                StatusCode::CREATED,
            )
            .await;
    }
    let problem = bob
        .put_problem("/personas/one-more", &json!({}), StatusCode::CONFLICT)
        .await;
    assert!(problem.detail.unwrap().contains("at most 32"));
    // Replacing one it has is still fine; a login naming a 33rd persona is refused.
    let _: Persona = bob
        .put("/personas/p0", &json!({"n": "again"}), StatusCode::OK)
        .await;
    assert_eq!(
        bob.get::<Vec<Persona>>("/personas", StatusCode::OK)
            .await
            .len(),
        32
    );
    let refused = surge_tests::Browser::new()
        .login(&app.url("/token?tenant=a&persona=one-more"), "bob")
        .await;
    surge_tests::read_problem(refused, StatusCode::CONFLICT).await;
    let status = bob.status_of(Method::GET, "/personas/one-more").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_function_sees_the_persona_of_the_key_its_job_was_submitted_with() {
    let mut app = TestApp::spawn_with_identity().await;
    let _sleep = app.start_function("sleep", &[]).await;
    let with = app
        .login("/token?tenant=a&persona=mobile", "alice")
        .await
        .access_token;
    let without = app.login_key("a", "alice").await;

    let mobile: JobView = app
        .as_bearer(&with)
        .post("/jobs/sleep", &json!({"record": false}), StatusCode::OK)
        .await;
    assert_eq!(
        mobile.result,
        Some(json!({"slept_ms": 0, "attempt": 1, "persona": "mobile"}))
    );
    let plain: JobView = app
        .as_bearer(&without)
        .post("/jobs/sleep", &json!({"record": false}), StatusCode::OK)
        .await;
    assert_eq!(plain.result, Some(json!({"slept_ms": 0, "attempt": 1})));

    // The record, not the message, is what the function reads: it is on the job's row.
    for (job, expected) in [(mobile, Some("mobile")), (plain, None)] {
        let persona: Option<String> = sqlx::query_scalar("SELECT persona FROM job WHERE id = $1")
            .bind(job.id.0)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(persona.as_deref(), expected);
    }
}
