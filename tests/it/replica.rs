//! A read replica (`database.replica_url`) serves the reads that tolerate lag — job listings,
//! the operations figures — never the reads of one's own writes; when it goes away, the reads
//! fall back to the primary and readiness says so. Against a real streaming replica.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use surge_gateway::routes::health::Health;
use surge_gateway::views::{JobPage, JobView};
use surge_tests::{TestApp, TestAppBuilder, eventually};

async fn replicated() -> TestApp {
    TestAppBuilder {
        replica: true,
        ..Default::default()
    }
    .spawn()
    .await
}

async fn listed(app: &TestApp) -> Vec<String> {
    let page: JobPage = app.get("/jobs?limit=100", StatusCode::OK).await;
    page.jobs.iter().map(|j| j.id.to_string()).collect()
}

#[tokio::test]
async fn listings_come_from_the_replica_and_a_job_just_submitted_from_the_primary() {
    let mut app = replicated().await;
    let _echo = app.start_function("echo", &[]).await;
    let ready: Health = eventually("the replica measured", Duration::from_secs(10), || async {
        let health: Health = app.anonymous().get("/readyz", StatusCode::OK).await;
        health.replica.is_none().then_some(health)
    })
    .await;
    assert_eq!(ready.status, "ready");
    let db = app.db.name.clone();
    let pg = app.replicated.as_ref().unwrap();
    pg.pause_replay(&db).await;
    let job: JobView = app.api().call("echo", &json!({"n": 1})).await;
    // Its own read, by id, sees it at once (the primary)…
    let read: JobView = app.get(&format!("/jobs/{}", job.id), StatusCode::OK).await;
    assert_eq!(read.state.as_str(), "succeeded");
    // …the listing does not yet: the replica has not replayed it.
    assert!(!listed(&app).await.contains(&job.id.to_string()));
    pg.resume_replay(&db).await;
    eventually(
        "the listing to catch up",
        Duration::from_secs(10),
        || async {
            listed(&app)
                .await
                .contains(&job.id.to_string())
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn reads_fall_back_to_the_primary_when_the_replica_goes_away_and_readiness_says_so() {
    let mut app = replicated().await;
    let _echo = app.start_function("echo", &[]).await;
    eventually("the replica measured", Duration::from_secs(10), || async {
        let health: Health = app.anonymous().get("/readyz", StatusCode::OK).await;
        health.replica.is_none().then_some(())
    })
    .await;
    app.replicated.as_ref().unwrap().stop_replica();
    let job: JobView = app.api().call("echo", &json!({"n": 2})).await;
    // The first listing after it went away is answered (from the primary), with the new job.
    assert!(listed(&app).await.contains(&job.id.to_string()));
    let health: Health = eventually("readiness to say so", Duration::from_secs(10), || async {
        let health: Health = app.anonymous().get("/readyz", StatusCode::OK).await;
        health.replica.is_some().then_some(health)
    })
    .await;
    assert_eq!(
        health.status, "ready",
        "the primary still serves everything"
    );
    let why = health.replica.unwrap();
    assert!(
        why.contains("answer") || why.contains("read failed"),
        "{why}"
    );
}
