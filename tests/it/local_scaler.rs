//! The local scaler end to end: a burst scales `sleep` from zero to its maximum, every job
//! completes once, and it goes back to zero after the cooldown.

use std::time::Duration;

use serde_json::{Value, json};
use surge_tests::{FunctionProcess, TestApp, eventually};

const JOBS: usize = 9;

async fn status(client: &reqwest::Client, url: &str) -> Option<Value> {
    let body: Value = client.get(url).send().await.ok()?.json().await.ok()?;
    body.as_array()?
        .iter()
        .find(|f| f["function"] == "sleep")
        .cloned()
}

#[tokio::test]
async fn a_burst_scales_sleep_from_zero_to_its_max_and_back_with_every_job_run_once() {
    let app = TestApp::with_scaler(200).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let status_url = format!("http://127.0.0.1:{port}/status");
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keda-local");
    let bin_dir = surge_tests::bin_dir();
    let logs = surge_tests::log_dir().join(format!("{}scaler", app.prefix));
    let push = format!("http://{}", app.scaler_addr.unwrap());
    let status_addr = format!("127.0.0.1:{port}");
    let args = [
        "scaler",
        "--manifests",
        manifests,
        "--bin-dir",
        bin_dir.to_str().unwrap(),
        "--push",
        &push,
        "--status-addr",
        &status_addr,
        "--log-dir",
        logs.to_str().unwrap(),
    ];
    let mut env = app.function_env(&[]);
    env.push((
        "SURGE_SCALER__MANAGEMENT_URL".into(),
        surge_tests::management_url(),
    ));
    let mut scaler = FunctionProcess::spawn_binary(
        &bin_dir.join("surge"),
        &args,
        &env,
        &format!("{}scaler", app.prefix),
    );

    let at_zero = eventually(
        "the scaler to report sleep at zero",
        Duration::from_secs(15),
        || async {
            status(&app.client, &status_url)
                .await
                .filter(|s| s["replicas"] == 0)
        },
    )
    .await;
    assert_eq!(at_zero["max_replicas"], 3);

    let mut ids = Vec::new();
    for _ in 0..JOBS {
        let job = app.submit_async("sleep", &json!({"ms": 2500})).await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }

    let at_max = eventually(
        "sleep to reach its max of 3 replicas",
        Duration::from_secs(30),
        || async {
            status(&app.client, &status_url)
                .await
                .filter(|s| s["replicas"] == 3)
        },
    )
    .await;
    let reasons: Vec<&str> = at_max["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("activate")),
        "woken from zero: {reasons:?}"
    );

    for id in &ids {
        app.wait_for_state(id, "succeeded", Duration::from_secs(60))
            .await;
    }
    let (runs, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT job_id) FROM sleep_run")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (runs, distinct),
        (JOBS as i64, JOBS as i64),
        "every job ran exactly once"
    );

    let back = eventually(
        "sleep to return to zero after the cooldown",
        Duration::from_secs(60),
        || async {
            status(&app.client, &status_url)
                .await
                .filter(|s| s["replicas"] == 0 && s["stopping"] == 0)
        },
    )
    .await;
    let reason = back["decisions"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("zero"),
        "scaled to zero after the cooldown: {reason}"
    );

    scaler.sigterm();
    assert!(
        scaler.wait(Duration::from_secs(30)).await.success(),
        "{}",
        scaler.output()
    );
    drop(app);
}
