//! Work that arrives together is written together, and each job still ends as it would have
//! alone: a group with a row the database refuses or a repeated key, a group of claims with a
//! job that finished long ago, a group of results with a handler that failed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use surge_contract::job::{FunctionName, JobId};
use surge_contract::request::JobRequest;
use surge_gateway::jobs::Recorder;
use surge_gateway::store::jobs::NewJob;
use surge_gateway::views::JobView;
use surge_tests::{BrokerProbe, TestApp};

fn new_job(owner: uuid::Uuid, key: Option<&str>, input: &str) -> NewJob {
    NewJob {
        id: JobId::new(),
        owner,
        function: "echo".into(),
        idempotency_key: key.map(str::to_owned),
        input: input.into(),
        trace_parent: None,
        persona: None,
    }
}

#[tokio::test]
async fn a_group_of_accepts_answers_each_one_even_with_a_refused_row_and_a_repeated_key() {
    let app = TestApp::spawn().await;
    let pool = &app.db.pool;
    let owner = surge_gateway::store::entities::ensure(pool, "dev", "dev@localhost")
        .await
        .unwrap();
    let sizes = prometheus_client::metrics::histogram::Histogram::new([1.0, 2.0, 8.0, 64.0]);
    let recorder = Recorder::start(pool.clone(), Duration::from_secs(30), 1, sizes.clone());
    // Holds the only writer's first statement, so everything after it waits and forms one group.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE job_unconfirmed IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let first = tokio::spawn({
        let recorder = recorder.clone();
        let job = new_job(owner, None, "1");
        async move { recorder.record(job).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut group = vec![
        new_job(owner, None, "2"),
        new_job(owner, Some("twice"), "3"),
        // A string Postgres cannot store in jsonb.
        new_job(owner, None, r#""nul \u0000 inside""#),
        new_job(owner, Some("twice"), "3"),
        new_job(owner, None, "4"),
    ];
    let ids: Vec<JobId> = group.iter().map(|j| j.id).collect();
    let answers: Vec<_> = group
        .drain(..)
        .map(|job| {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record(job).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.commit().await.unwrap();
    assert!(first.await.unwrap().unwrap().is_some());
    let mut results = Vec::new();
    for answer in answers {
        results.push(answer.await.unwrap());
    }
    assert!(results[0].as_ref().unwrap().is_some(), "a plain job");
    assert!(
        results[1].as_ref().unwrap().is_some(),
        "the key's first use"
    );
    let refused = results[2].as_ref().unwrap_err();
    assert!(refused.to_string().contains("Unicode"), "{refused}");
    assert!(results[3].as_ref().unwrap().is_none(), "the key's repeat");
    assert!(
        results[4].as_ref().unwrap().is_some(),
        "a plain job after the bad one"
    );
    let stored: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM job ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 4, "every job but the refused and the repeat");
    assert!(!stored.contains(&ids[2].0) && !stored.contains(&ids[3].0));
    assert_eq!(app.count("job_unconfirmed").await, 4);
    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &{
        let mut r = prometheus_client::registry::Registry::default();
        r.register("sizes", "", sizes);
        r
    })
    .unwrap();
    assert!(
        text.contains("sizes_count 2") || text.contains("sizes_count 3"),
        "the five went in one group (then, failing, one by one): {text}"
    );
}

#[tokio::test]
async fn a_group_of_claims_and_results_ends_each_job_as_it_would_alone() {
    let mut app = TestApp::spawn().await;
    let http = surge_tests::free_addr();
    let env = [
        ("SURGE_FUNCTION__CONCURRENCY", "16"),
        ("SURGE_FUNCTION__HTTP_ADDR", &http.to_string()),
        ("SURGE_DATABASE__MAX_CONNECTIONS", "8"),
    ];
    // A job that finished long ago.
    let mut sleep = app.start_function("sleep", &env).await;
    let done = app.api().call("sleep", &json!({"ms": 0})).await;
    assert_eq!(done.state.as_str(), "succeeded");
    sleep.sigterm();
    assert!(sleep.wait(Duration::from_secs(10)).await.success());
    // With no replica, a queue of work builds up: the finished job's request again (a
    // duplicate delivery), a job that fails, seven that write their run and seven that write
    // nothing but their result.
    let probe = BrokerProbe::connect().await;
    let again = JobRequest::accepted(
        done.id,
        FunctionName::parse("sleep").unwrap(),
        json!({"ms": 0}),
    )
    .to_message()
    .unwrap();
    probe
        .publish(
            &format!("{}surge.jobs", app.prefix),
            "sleep",
            again.properties,
            &again.body,
        )
        .await;
    let failing: JobView = app
        .header("prefer", "respond-async")
        .post(
            "/jobs/sleep",
            &json!({"fail": "permanent"}),
            StatusCode::ACCEPTED,
        )
        .await;
    let (mut recorded, mut pure) = (Vec::new(), Vec::new());
    for n in 0..14 {
        let record = n % 2 == 0;
        let job: JobView = app
            .header("prefer", "respond-async")
            .post(
                "/jobs/sleep",
                &json!({"ms": 50, "record": record}),
                StatusCode::ACCEPTED,
            )
            .await;
        if record {
            recorded.push(job.id)
        } else {
            pure.push(job.id)
        }
    }
    // One replica takes all sixteen at once (prefetch 16): their claims and results go in
    // groups.
    let _sleep = app.start_function("sleep", &env).await;
    for id in &recorded {
        app.wait_for_state(id, "succeeded", Duration::from_secs(20))
            .await;
        assert_eq!(app.sleep_runs(id).await, 1);
    }
    for id in &pure {
        app.wait_for_state(id, "succeeded", Duration::from_secs(20))
            .await;
        let job: JobView = app.get(&format!("/jobs/{id}"), StatusCode::OK).await;
        assert_eq!(job.result, Some(json!({"slept_ms": 50, "attempt": 1})));
        assert_eq!(app.sleep_runs(id).await, 0);
    }
    app.wait_for_state(&failing.id, "failed", Duration::from_secs(20))
        .await;
    let failed: JobView = app
        .get(&format!("/jobs/{}", failing.id), StatusCode::OK)
        .await;
    assert_eq!(failed.attempts, Some(1));
    assert_eq!(app.sleep_runs(&failing.id).await, 0);
    assert_eq!(
        app.sleep_runs(&done.id).await,
        1,
        "the finished job was not run again"
    );
    assert_eq!(app.job_state(&done.id).await.as_deref(), Some("succeeded"));
    let metrics = app
        .client
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let grouped = |writer: &str| -> f64 {
        // More items than statements: some statement wrote a group.
        let value = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name) && l.contains(&format!("writer=\"{writer}\"")))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or_default()
        };
        value("surge_group_commit_size_sum") / value("surge_group_commit_size_count").max(1.0)
    };
    assert!(grouped("claims") > 1.0, "claims went in groups: {metrics}");
    assert!(
        grouped("results") > 1.0,
        "pure results went in groups: {metrics}"
    );
}
