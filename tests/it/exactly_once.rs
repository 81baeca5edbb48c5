//! Work a crashed worker had checked out is taken by another, and its effect happens once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_gateway::views::JobView;
use surge_tests::TestApp;

#[tokio::test]
async fn a_job_whose_worker_is_killed_completes_on_another_process_exactly_once() {
    let mut app = TestApp::spawn().await;
    let first = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "1")])
        .await;

    let request = app
        .header("prefer", "wait=60")
        .exchange(Method::POST, "/jobs/sleep")
        .json(&json!({"ms": 5000}))
        .expect::<JobView>(StatusCode::OK);
    let caller = tokio::spawn(request);

    // The job is checked out by the first worker...
    let id: String =
        surge_tests::eventually("the job to be running", Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, String>("SELECT id::text FROM job WHERE state = 'running'")
                .fetch_optional(&app.db.pool)
                .await
                .unwrap()
        })
        .await;
    // ...which dies in the middle of it, with a second worker standing by.
    let _second = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "1")])
        .await;
    // Still mid-job when it dies (the second worker's start must not outlast the sleep).
    assert_eq!(app.job_state(&id).await.as_deref(), Some("running"));
    assert_eq!(app.sleep_runs(&id).await, 0);
    first.sigkill();

    let job = caller.await.unwrap().body;
    assert_eq!(job.id.to_string(), id);
    assert_eq!(job.state.as_str(), "succeeded");
    assert_eq!(job.attempts, Some(2), "the second process took it over");
    assert_eq!(
        app.sleep_runs(&id).await,
        1,
        "the effect happened exactly once"
    );
}

#[tokio::test]
async fn many_jobs_across_two_workers_each_run_once() {
    let mut app = TestApp::spawn().await;
    let _a = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "4")])
        .await;
    let _b = app
        .start_function("sleep", &[("SURGE_FUNCTION__CONCURRENCY", "4")])
        .await;
    let bodies: Vec<_> = (0..40).map(|i| json!({"ms": i % 7})).collect();
    let calls = bodies.iter().map(|body| app.call("sleep", body));
    for job in futures_util::future::join_all(calls).await {
        assert_eq!(job.state.as_str(), "succeeded");
    }
    let (runs, jobs): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sleep_run), (SELECT count(DISTINCT job_id) FROM sleep_run)",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((runs, jobs), (40, 40));
}
