//! Dead jobs, as the operator on call meets them: listed per function with every reason,
//! only to admins and only their tenant's, and replayed under the same id once the cause is
//! fixed — the effect then happens once; a replay that dies again stays dead with both deaths.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use surge_tests::{TestApp, TestAppBuilder, eventually};

async fn dead_list(app: &TestApp) -> Vec<Value> {
    let response = app
        .request(Method::GET, "/admin/dead/sleep")
        .send()
        .await
        .unwrap();
    TestApp::expect_json(response, StatusCode::OK).await["jobs"]
        .as_array()
        .unwrap()
        .clone()
}

fn ids(jobs: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = jobs
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn deaths(job: &Value) -> usize {
    job["attempt_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "urn:surge:problem:job-dead")
        .count()
}

async fn replay(app: &TestApp, path: &str) -> Vec<String> {
    let response = app.request(Method::POST, path).send().await.unwrap();
    let body = TestApp::expect_json(response, StatusCode::OK).await;
    assert_eq!(body["more"], false, "a few jobs fit one call: {body}");
    let mut ids: Vec<String> = serde_json::from_value(body["replayed"].clone()).unwrap();
    ids.sort();
    ids
}

#[tokio::test]
async fn admins_list_their_dead_jobs_and_replay_them_once_the_cause_is_fixed() {
    let mut app = TestAppBuilder {
        max_attempts: 2,
        dev_admin: true,
        ..Default::default()
    }
    .spawn()
    .await;
    // A handler timeout shorter than the work: every attempt fails, the jobs die.
    let broken = app
        .start_function("sleep", &[("SURGE_FUNCTION__TIMEOUT_MS", "300")])
        .await;
    let slow = json!({"ms": 1000});
    let a = app.submit_async("sleep", &slow).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.submit_async("sleep", &slow).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Dies on every delivery, however often it is replayed.
    let d = app
        .submit_async("sleep", &json!({"succeed_on_attempt": 5}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (other, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    let theirs = app
        .request_as(&other, Method::POST, "/jobs/sleep")
        .header("prefer", "respond-async")
        .json(&slow)
        .send()
        .await
        .unwrap();
    let theirs = TestApp::expect_json(theirs, StatusCode::ACCEPTED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [&a, &b, &d, &theirs] {
        app.wait_for_state(id, "dead", Duration::from_secs(20))
            .await;
    }

    // Not for non-admins; an admin sees its own tenant's, each with its reasons.
    let refused = app
        .request_as(&other, Method::GET, "/admin/dead/sleep")
        .send()
        .await
        .unwrap();
    TestApp::expect_problem(refused, StatusCode::FORBIDDEN).await;
    let listed = dead_list(&app).await;
    let mut expected = vec![a.clone(), b.clone(), d.clone()];
    expected.sort();
    assert_eq!(ids(&listed), expected, "not the other tenant's {theirs}");
    for job in &listed {
        assert_eq!(job["error"]["type"], "urn:surge:problem:job-dead", "{job}");
        assert_eq!(job["attempts"], 2);
        assert_eq!(deaths(job), 1);
        assert_eq!(job["attempt_errors"].as_array().unwrap().len(), 2, "{job}");
    }
    let unknown = app
        .request(Method::GET, "/admin/dead/nosuch")
        .send()
        .await
        .unwrap();
    TestApp::expect_problem(unknown, StatusCode::NOT_FOUND).await;

    // A replay that dies again is listed again, with both deaths.
    assert_eq!(
        replay(&app, &format!("/admin/dead/sleep/{d}/replay")).await,
        std::slice::from_ref(&d)
    );
    // Listed again once it died again (its state alone may still read `dead` from before).
    let d_job = eventually(
        "the replayed job to die again",
        Duration::from_secs(20),
        || async {
            let listed = dead_list(&app).await;
            listed
                .into_iter()
                .find(|j| j["id"] == d.as_str() && deaths(j) == 2)
        },
    )
    .await;
    assert_eq!(d_job["attempt_errors"].as_array().unwrap().len(), 4);

    // The cause is fixed (a function with the default timeout); replay one, then the rest.
    drop(broken);
    let _fixed = app.start_function("sleep", &[]).await;
    assert_eq!(
        replay(&app, &format!("/admin/dead/sleep/{a}/replay")).await,
        std::slice::from_ref(&a)
    );
    app.wait_for_state(&a, "succeeded", Duration::from_secs(20))
        .await;
    let missing = app
        .request(Method::POST, &format!("/admin/dead/sleep/{a}/replay"))
        .send()
        .await
        .unwrap();
    TestApp::expect_problem(missing, StatusCode::NOT_FOUND).await;
    let mut rest = vec![b.clone(), d.clone()];
    rest.sort();
    assert_eq!(replay(&app, "/admin/dead/sleep/replay").await, rest);
    app.wait_for_state(&b, "succeeded", Duration::from_secs(20))
        .await;
    eventually(
        "the replayed job to die a third time",
        Duration::from_secs(20),
        || async {
            let listed = dead_list(&app).await;
            listed
                .iter()
                .any(|j| j["id"] == d.as_str() && deaths(j) == 3)
                .then_some(())
        },
    )
    .await;

    // Same ids, effects once; the other tenant's job was never touched.
    for id in [&a, &b] {
        assert_eq!(app.sleep_runs(id).await, 1, "job {id}");
    }
    assert_eq!(app.job_state(&theirs).await.as_deref(), Some("dead"));
    assert_eq!(ids(&dead_list(&app).await), std::slice::from_ref(&d));
}

/// A page of dead jobs goes on from where the previous one ended, even when the job it ended
/// on was replayed meanwhile (the cursor is a position, not a job that must still be dead).
#[tokio::test]
async fn paging_goes_on_after_the_last_job_of_a_page_was_replayed() {
    let mut app = TestAppBuilder {
        max_attempts: 1,
        dev_admin: true,
        ..Default::default()
    }
    .spawn()
    .await;
    let _broken = app
        .start_function("sleep", &[("SURGE_FUNCTION__TIMEOUT_MS", "200")])
        .await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        // One after the other, so their deaths are ordered.
        let id = app.submit_async("sleep", &json!({"ms": 1000})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.wait_for_state(&id, "dead", Duration::from_secs(20))
            .await;
        jobs.push(id);
    }
    let first = app
        .request(Method::GET, "/admin/dead/sleep?limit=2")
        .send()
        .await
        .unwrap();
    let first = TestApp::expect_json(first, StatusCode::OK).await;
    let listed: Vec<&str> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [jobs[2].as_str(), jobs[1].as_str()], "{first}");
    // The page's last job is replayed: off the list (it may die again later, on top).
    assert_eq!(
        replay(&app, &format!("/admin/dead/sleep/{}/replay", jobs[1])).await,
        std::slice::from_ref(&jobs[1])
    );
    let cursor = first["next_before"].as_str().unwrap();
    let next = app
        .request(
            Method::GET,
            &format!("/admin/dead/sleep?limit=2&before={cursor}"),
        )
        .send()
        .await
        .unwrap();
    let next = TestApp::expect_json(next, StatusCode::OK).await;
    assert_eq!(next["jobs"][0]["id"], jobs[0].as_str(), "{next}");
    assert_eq!(next["jobs"].as_array().unwrap().len(), 1, "{next}");
    let nonsense = app
        .request(Method::GET, "/admin/dead/sleep?before=not-a-cursor")
        .send()
        .await
        .unwrap();
    TestApp::expect_problem(nonsense, StatusCode::BAD_REQUEST).await;
}
