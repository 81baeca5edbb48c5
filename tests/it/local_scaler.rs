//! The local scaler end to end: a burst scales `sleep` from zero to its maximum, every job
//! completes once, and it goes back to zero after the cooldown.

use std::time::Duration;

use serde_json::{Value, json};
use surge_tests::{FunctionProcess, TestApp, eventually};

const JOBS: usize = 9;

/// `surge scaler` running the `keda-local` manifests against a test's Surge (pushed to by
/// its external scaler), with its status page.
struct LocalScaler {
    process: FunctionProcess,
    status_url: String,
    client: reqwest::Client,
}

impl LocalScaler {
    async fn start(app: &TestApp) -> Self {
        let status_addr = surge_tests::free_addr().to_string();
        let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keda-local");
        let bin_dir = surge_tests::bin_dir();
        let logs = surge_tests::log_dir().join(format!("{}scaler", app.prefix));
        let push = format!("http://{}", app.scaler_addr.unwrap());
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
        let process = FunctionProcess::spawn_binary(
            &bin_dir.join("surge"),
            &args,
            &env,
            &format!("{}scaler", app.prefix),
        );
        Self {
            process,
            status_url: format!("http://{status_addr}/status"),
            client: app.client.clone(),
        }
    }

    /// `sleep`'s status, once it satisfies `done`.
    async fn sleep_when(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(what, timeout, || async {
            let body: Value = self
                .client
                .get(&self.status_url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            body.as_array()?
                .iter()
                .find(|f| f["function"] == "sleep")
                .filter(|s| done(s))
                .cloned()
        })
        .await
    }

    /// SIGTERM: the scaler stops its replicas and exits 0.
    async fn stop(mut self) {
        self.process.sigterm();
        assert!(
            self.process.wait(Duration::from_secs(30)).await.success(),
            "{}",
            self.process.output()
        );
    }
}

#[tokio::test]
async fn an_idle_function_is_kept_at_zero_and_reported_with_its_maximum() {
    let app = TestApp::with_scaler(200).await;
    let scaler = LocalScaler::start(&app).await;
    let at_zero = scaler
        .sleep_when(
            "the scaler to report sleep at zero",
            Duration::from_secs(15),
            |s| s["replicas"] == 0,
        )
        .await;
    assert_eq!(at_zero["max_replicas"], 3);
    scaler.stop().await;
}

#[tokio::test]
async fn a_burst_scales_sleep_from_zero_to_its_max_and_back_with_every_job_run_once() {
    let app = TestApp::with_scaler(200).await;
    let scaler = LocalScaler::start(&app).await;
    scaler
        .sleep_when("sleep at zero", Duration::from_secs(15), |s| {
            s["replicas"] == 0
        })
        .await;

    let mut ids = Vec::new();
    for _ in 0..JOBS {
        ids.push(app.submit_async("sleep", &json!({"ms": 2500})).await.id);
    }
    let at_max = scaler
        .sleep_when(
            "sleep to reach its max of 3 replicas",
            Duration::from_secs(30),
            |s| s["replicas"] == 3,
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

    for id in ids {
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

    let back = scaler
        .sleep_when(
            "sleep to return to zero after the cooldown",
            Duration::from_secs(60),
            |s| s["replicas"] == 0 && s["stopping"] == 0,
        )
        .await;
    let reason = back["decisions"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("zero"),
        "scaled to zero after the cooldown: {reason}"
    );
    scaler.stop().await;
}
