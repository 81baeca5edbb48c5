//! Dead jobs, as the operator on call meets them: listed per function with every reason,
//! only to admins and only their tenant's, and replayed under the same id once the cause is
//! fixed — the effect then happens once; a replay that dies again stays dead with both deaths.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use surge_contract::job::JobId;
use surge_gateway::routes::dead_jobs::{DeadJob, DeadPage, Replayed};
use surge_tests::{FunctionProcess, TestApp, TestAppBuilder, eventually};

/// A Surge whose development key is an admin, with `sleep` broken: its handler times out
/// before the work is done, so every job of more than 300 ms dies after its attempts.
async fn broken_sleep(max_attempts: u32) -> (TestApp, FunctionProcess) {
    let mut app = TestAppBuilder {
        max_attempts,
        dev_admin: true,
        ..Default::default()
    }
    .spawn()
    .await;
    let broken = app
        .start_function("sleep", &[("SURGE_FUNCTION__TIMEOUT_MS", "300")])
        .await;
    (app, broken)
}

/// Dead jobs of two tenants: the admin's tenant's `a` and `b` (fine once the cause is fixed)
/// and `d` (dies on every delivery, however often it is replayed), and `theirs`, of another
/// tenant.
struct Dead {
    app: TestApp,
    broken: FunctionProcess,
    a: JobId,
    b: JobId,
    d: JobId,
    theirs: JobId,
}

async fn dead_jobs() -> Dead {
    let (app, broken) = broken_sleep(2).await;
    let slow = json!({"ms": 1000});
    let a = app.submit_async("sleep", &slow).await.id;
    let b = app.submit_async("sleep", &slow).await.id;
    let d = app
        .submit_async("sleep", &json!({"succeed_on_attempt": 5}))
        .await
        .id;
    let (other, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    let theirs = app
        .as_key(&other)
        .header("prefer", "respond-async")
        .post::<_, surge_gateway::views::JobView>("/jobs/sleep", &slow, StatusCode::ACCEPTED)
        .await
        .id;
    for id in [a, b, d, theirs] {
        app.wait_for_state(id, "dead", Duration::from_secs(20))
            .await;
    }
    Dead {
        app,
        broken,
        a,
        b,
        d,
        theirs,
    }
}

fn ids(jobs: &[DeadJob]) -> Vec<JobId> {
    let mut ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    ids.sort();
    ids
}

fn sorted<const N: usize>(mut ids: [JobId; N]) -> Vec<JobId> {
    ids.sort();
    ids.to_vec()
}

/// How many times the job died (a `job-dead` problem among its attempts' errors).
fn deaths(job: &DeadJob) -> usize {
    job.attempt_errors
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "urn:surge:problem:job-dead")
        .count()
}

fn replayed(ids: Vec<JobId>) -> Replayed {
    Replayed {
        replayed: ids,
        // A few jobs fit one call.
        more: false,
    }
}

#[tokio::test]
async fn dead_jobs_are_not_listed_to_callers_who_are_not_admins() {
    let (app, _broken) = broken_sleep(2).await;
    let (other, _) = app.mint_key("acme", "ann@acme.test", 0).await;
    let refused = app
        .as_key(&other)
        .get_problem("/admin/dead/sleep", StatusCode::FORBIDDEN)
        .await;
    assert_eq!(refused.kind, "urn:surge:problem:forbidden");
    app.as_key(&other)
        .exchange(Method::POST, "/admin/dead/sleep/replay")
        .expect_problem(StatusCode::FORBIDDEN)
        .await;
}

#[tokio::test]
async fn a_function_that_is_not_served_has_no_dead_jobs_to_list() {
    let (app, _broken) = broken_sleep(2).await;
    let unknown = app
        .get_problem("/admin/dead/nosuch", StatusCode::NOT_FOUND)
        .await;
    assert_eq!(unknown.kind, "urn:surge:problem:unknown-function");
}

#[tokio::test]
async fn an_admin_lists_its_tenants_dead_jobs_each_with_every_reason() {
    let Dead {
        app,
        broken: _broken,
        a,
        b,
        d,
        theirs,
    } = dead_jobs().await;
    let listed: DeadPage = app.get("/admin/dead/sleep", StatusCode::OK).await;
    assert_eq!(
        ids(&listed.jobs),
        sorted([a, b, d]),
        "not the other tenant's {theirs}"
    );
    for job in &listed.jobs {
        let error = job.error.as_ref().unwrap();
        assert_eq!(error["type"], "urn:surge:problem:job-dead", "{job:?}");
        assert_eq!(job.attempts, 2);
        assert_eq!(deaths(job), 1);
        assert_eq!(job.attempt_errors.as_array().unwrap().len(), 2, "{job:?}");
    }
}

#[tokio::test]
async fn a_replayed_job_that_dies_again_is_listed_again_with_both_deaths() {
    let Dead {
        app,
        broken: _broken,
        d,
        ..
    } = dead_jobs().await;
    assert_eq!(
        app.exchange(Method::POST, &format!("/admin/dead/sleep/{d}/replay"))
            .expect::<Replayed>(StatusCode::OK)
            .await
            .body,
        replayed(vec![d])
    );
    // Listed again once it died again (its state alone may still read `dead` from before).
    let d_job = eventually(
        "the replayed job to die again",
        Duration::from_secs(20),
        || async {
            let listed: DeadPage = app.get("/admin/dead/sleep", StatusCode::OK).await;
            listed
                .jobs
                .into_iter()
                .find(|j| j.id == d && deaths(j) == 2)
        },
    )
    .await;
    assert_eq!(d_job.attempt_errors.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_dead_job_replayed_after_its_cause_is_fixed_succeeds_once_under_its_id() {
    let Dead {
        mut app, broken, a, ..
    } = dead_jobs().await;
    // The cause is fixed: a function with the default timeout.
    drop(broken);
    let _fixed = app.start_function("sleep", &[]).await;
    let path = format!("/admin/dead/sleep/{a}/replay");
    assert_eq!(
        app.exchange(Method::POST, &path)
            .expect::<Replayed>(StatusCode::OK)
            .await
            .body,
        replayed(vec![a])
    );
    app.wait_for_state(a, "succeeded", Duration::from_secs(20))
        .await;
    assert_eq!(app.sleep_runs(a).await, 1, "the effect happened once");
    // No longer dead: nothing to replay.
    let missing = app
        .exchange(Method::POST, &path)
        .expect_problem(StatusCode::NOT_FOUND)
        .await;
    assert_eq!(missing.body.kind, "urn:surge:problem:not-found");
}

#[tokio::test]
async fn replaying_a_function_replays_the_tenants_dead_jobs_and_only_those() {
    let Dead {
        mut app,
        broken,
        a,
        b,
        d,
        theirs,
    } = dead_jobs().await;
    drop(broken);
    let _fixed = app.start_function("sleep", &[]).await;
    let mut all = app
        .exchange(Method::POST, "/admin/dead/sleep/replay")
        .expect::<Replayed>(StatusCode::OK)
        .await
        .body;
    all.replayed.sort();
    assert_eq!(all, replayed(sorted([a, b, d])));
    for id in [a, b] {
        app.wait_for_state(id, "succeeded", Duration::from_secs(20))
            .await;
    }
    eventually(
        "the replayed job to die again",
        Duration::from_secs(20),
        || async {
            let listed: DeadPage = app.get("/admin/dead/sleep", StatusCode::OK).await;
            listed
                .jobs
                .iter()
                .any(|j| j.id == d && deaths(j) == 2)
                .then_some(())
        },
    )
    .await;
    // Same ids, effects once; the other tenant's job was never touched.
    for id in [a, b] {
        assert_eq!(app.sleep_runs(id).await, 1, "job {id}");
    }
    assert_eq!(app.job_state(theirs).await.as_deref(), Some("dead"));
    let listed: DeadPage = app.get("/admin/dead/sleep", StatusCode::OK).await;
    assert_eq!(ids(&listed.jobs), [d]);
}

/// A page of dead jobs goes on from where the previous one ended, even when the job it ended
/// on was replayed meanwhile (the cursor is a position, not a job that must still be dead).
#[tokio::test]
async fn paging_goes_on_after_the_last_job_of_a_page_was_replayed() {
    let (app, _broken) = broken_sleep(1).await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        // One after the other, so their deaths are ordered.
        let id = app.submit_async("sleep", &json!({"ms": 1000})).await.id;
        app.wait_for_state(id, "dead", Duration::from_secs(20))
            .await;
        jobs.push(id);
    }
    let first: DeadPage = app.get("/admin/dead/sleep?limit=2", StatusCode::OK).await;
    let listed: Vec<JobId> = first.jobs.iter().map(|j| j.id).collect();
    assert_eq!(listed, [jobs[2], jobs[1]], "{first:?}");
    // The page's last job is replayed: off the list (it may die again later, on top).
    assert_eq!(
        app.exchange(
            Method::POST,
            &format!("/admin/dead/sleep/{}/replay", jobs[1])
        )
        .expect::<Replayed>(StatusCode::OK)
        .await
        .body,
        replayed(vec![jobs[1]])
    );
    let cursor = first.next_before.expect("a next page");
    let next: DeadPage = app
        .get(
            &format!("/admin/dead/sleep?limit=2&before={cursor}"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(ids(&next.jobs), [jobs[0]], "{next:?}");
}

#[tokio::test]
async fn a_page_cursor_that_is_not_one_is_400() {
    let (app, _broken) = broken_sleep(1).await;
    let nonsense = app
        .get_problem(
            "/admin/dead/sleep?before=not-a-cursor",
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(nonsense.kind, "urn:surge:problem:bad-request");
}
