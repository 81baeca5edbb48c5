//! Cold starts: from zero replicas, how long the first sync `echo` call takes when the local
//! scaler is woken by the gateway's push, and when it only polls (every 5 s here). Each run
//! waits until the scaler has taken echo back to zero.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use surge_tests::{
    FunctionProcess, TestDatabase, amqp_url, eventually, management_url, unique_name,
};

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Median cold-start latencies `(with push, polling only)` over `runs` each.
pub async fn measure(
    bin_dir: &Path,
    runs: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let name = unique_name();
    let db = TestDatabase::migrated(&name).await;
    let prefix = format!("bench-{name}-");
    let http = format!("127.0.0.1:{}", free_port()?);
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let env = vec![
        ("SURGE_DATABASE__URL".to_owned(), db.url.clone()),
        ("SURGE_BROKER__URL".to_owned(), amqp_url()),
        ("SURGE_BROKER__PREFIX".to_owned(), prefix.clone()),
        ("SURGE_TELEMETRY__LOG_FILTER".to_owned(), "warn".to_owned()),
        ("SURGE_SCALER__MANAGEMENT_URL".to_owned(), management_url()),
        ("SURGE_FUNCTIONS".to_owned(), "echo".to_owned()),
    ];
    let mut gateway_env = env.clone();
    gateway_env.extend([
        ("SURGE_HTTP__ADDR".to_owned(), http.clone()),
        ("SURGE_SCALER__ADDR".to_owned(), grpc.clone()),
        (
            "SURGE_DEV__API_KEY".to_owned(),
            crate::surge::KEY.to_owned(),
        ),
    ]);
    let (mut gateway, client, url) =
        crate::surge::spawn_gateway(bin_dir, &gateway_env, &http, "bench-cold-gateway").await?;
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/keda-local");
    let push = format!("http://{grpc}");
    let mut results = Vec::new();
    for with_push in [true, false] {
        let status_addr = format!("127.0.0.1:{}", free_port()?);
        let mut args = vec![
            "scaler",
            "--manifests",
            manifests,
            "--only",
            "echo",
            "--status-addr",
            &status_addr,
        ];
        let bin = bin_dir.to_string_lossy().into_owned();
        args.extend(["--bin-dir", &bin, "--log-dir", "target/bench-logs"]);
        if with_push {
            args.extend(["--push", &push]);
        }
        let mut scaler =
            FunctionProcess::spawn_binary(&bin_dir.join("surge"), &args, &env, "bench-cold-scaler");
        let status = format!("http://{status_addr}/status");
        let mut times = Vec::new();
        for _ in 0..runs {
            eventually("echo to be at zero", Duration::from_secs(120), || async {
                let body: Value = client.get(&status).send().await.ok()?.json().await.ok()?;
                let echo = body
                    .as_array()?
                    .iter()
                    .find(|f| f["function"] == "echo")?
                    .clone();
                (echo["replicas"] == 0 && echo["stopping"] == 0).then_some(())
            })
            .await;
            let t0 = Instant::now();
            let response = client
                .post(format!("{url}/jobs/echo"))
                .header("x-api-key", crate::surge::KEY)
                .header("content-type", "application/json")
                .body(r#"{"cold":true}"#)
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == reqwest::StatusCode::OK,
                "cold call answered {} (a 202 is a timeout, not a cold start)",
                response.status()
            );
            times.push(t0.elapsed());
        }
        scaler.sigterm();
        let _ = scaler.wait(Duration::from_secs(30)).await;
        results.push(times);
    }
    gateway.sigterm();
    let _ = gateway.wait(Duration::from_secs(30)).await;
    TestDatabase::drop_blocking(&db.name);
    let polling = results.pop().unwrap_or_default();
    let pushed = results.pop().unwrap_or_default();
    Ok((pushed, polling))
}

/// The markdown section of the report.
pub fn report(pushed: &[Duration], polling: &[Duration]) -> String {
    let median = |d: &[Duration]| {
        let mut v = d.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let list = |d: &[Duration]| {
        d.iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (p, q) = (median(pushed), median(polling));
    format!(
        "\n| cold start (first sync echo from zero replicas) | runs | median (s) | each (s) |\n\
         |---|---:|---:|---|\n\
         | push activation (gateway → scaler over gRPC) | {} | {:.2} | {} |\n\
         | polling only (pollingInterval 5 s) | {} | {:.2} | {} |\n\n\
         - cold start with push: median {:.2} s (target ≤ 1 s: {})\n",
        pushed.len(),
        p.as_secs_f64(),
        list(pushed),
        polling.len(),
        q.as_secs_f64(),
        list(polling),
        p.as_secs_f64(),
        if p <= Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        },
    )
}
