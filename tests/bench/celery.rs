//! The Celery baseline: the same echo in Celery 5 on the same RabbitMQ (`tests/bench/celery/
//! echo.py`: `acks_late`, results over `rpc://`), one caller at a time and pipelined, driven
//! by Celery's own client in Python. Installed by `scripts/setup.sh`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use surge_tests::{FunctionProcess, amqp_url, unique_name};

use crate::stats::Measurement;

fn script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/celery/echo.py"))
}

/// kombu names the default vhost `//`, where Surge's URLs say `/%2f`.
fn kombu_url() -> String {
    let url = amqp_url();
    match url
        .strip_suffix("/%2f")
        .or_else(|| url.strip_suffix("/%2F"))
    {
        Some(base) => format!("{base}//"),
        None => url,
    }
}

pub struct CeleryBench {
    env: Vec<(String, String)>,
    worker: FunctionProcess,
}

impl CeleryBench {
    /// Starts a Celery worker (`concurrency` processes) on a queue of this run's.
    pub async fn start(concurrency: usize) -> anyhow::Result<Self> {
        let env = vec![
            ("SURGE_BENCH_AMQP".to_owned(), kombu_url()),
            (
                "SURGE_BENCH_QUEUE".to_owned(),
                format!("bench-{}-celery", unique_name()),
            ),
            (
                "SURGE_BENCH_CONCURRENCY".to_owned(),
                concurrency.to_string(),
            ),
        ];
        let worker = FunctionProcess::spawn_binary(
            std::path::Path::new("/usr/bin/env"),
            &["python3", &script().to_string_lossy(), "worker"],
            &env,
            "bench-celery-worker",
        );
        let bench = Self { env, worker };
        // Ready once a job makes the round trip.
        bench
            .run("drive", Duration::from_secs(1), 1)
            .await
            .context("the Celery worker did not answer; is celery installed (scripts/setup.sh)?")?;
        Ok(bench)
    }

    /// One job at a time per caller.
    pub async fn one_at_a_time(&self, duration: Duration) -> anyhow::Result<Measurement> {
        self.run("drive", duration, 1).await
    }

    /// One client keeping `window` jobs in flight.
    pub async fn pipelined(
        &self,
        duration: Duration,
        window: usize,
    ) -> anyhow::Result<Measurement> {
        self.run("pipeline", duration, window).await
    }

    async fn run(&self, mode: &str, duration: Duration, n: usize) -> anyhow::Result<Measurement> {
        let out = tokio::process::Command::new("python3")
            .arg(script())
            .args([mode, &duration.as_secs_f64().to_string(), &n.to_string()])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .output()
            .await
            .context("running the Celery client")?;
        anyhow::ensure!(
            out.status.success(),
            "the Celery client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "the Celery client said {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            })?;
        let millis =
            |key: &str| Duration::from_secs_f64(summary[key].as_f64().unwrap_or_default() / 1000.0);
        Ok(Measurement {
            requests: summary["requests"].as_u64().unwrap_or_default() as usize,
            errors: summary["errors"].as_u64().unwrap_or_default() as usize,
            elapsed: Duration::from_secs_f64(summary["seconds"].as_f64().unwrap_or(1.0)),
            p50: millis("p50_ms"),
            p99: millis("p99_ms"),
        })
    }

    pub fn stop(mut self) {
        self.worker.kill_and_reap();
    }
}
