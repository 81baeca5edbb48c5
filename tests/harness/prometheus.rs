//! A real Prometheus (Debian's `prometheus`) for one test: scrapes the given targets every
//! second and answers PromQL over its HTTP API. Killed when dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::{FunctionProcess, eventually, log_dir};

pub struct Prometheus {
    pub url: String,
    client: reqwest::Client,
    /// Killed (on drop) before its data directory goes.
    process: Option<FunctionProcess>,
    dir: PathBuf,
}

/// One series of a query's answer: its labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`(job, host:port)`) at `/metrics` every second.
    pub async fn start(name: &str, targets: &[(&str, String)]) -> Self {
        let dir = log_dir().join(format!("{name}-prometheus"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).expect("prometheus config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let args = [
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let binary = std::path::Path::new("/usr/bin/prometheus");
        assert!(
            binary.exists(),
            "Debian's prometheus is missing: run scripts/setup.sh (it installs the package)"
        );
        let process =
            FunctionProcess::spawn_binary(binary, &args, &[], &format!("{name}-prometheus"));
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let ready = format!("{url}/-/ready");
        eventually("Prometheus to be ready", Duration::from_secs(20), || {
            let (client, ready) = (client.clone(), ready.clone());
            async move {
                let response = client.get(&ready).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        Self {
            url,
            client,
            process: Some(process),
            dir,
        }
    }

    /// An instant PromQL query.
    pub async fn query(&self, promql: &str) -> Vec<Sample> {
        let body: Value = self
            .client
            .post(format!("{}/api/v1/query", self.url))
            .form(&[("query", promql)])
            .send()
            .await
            .expect("query Prometheus")
            .json()
            .await
            .expect("Prometheus answers JSON");
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| Sample {
                        labels: serde_json::from_value(s["metric"].clone()).unwrap_or_default(),
                        value: s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `promql` (one series) has the value `expected`; returns the last answer
    /// in the failure message.
    pub async fn wait_for(&self, promql: &str, expected: f64) {
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let samples = self.query(promql).await;
                if samples.len() == 1 && (samples[0].value - expected).abs() < 1e-9 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        if waited.is_err() {
            let last = self.query(promql).await;
            panic!("{promql} did not become {expected} within 20 s; it is {last:?}");
        }
    }

    /// The scrape targets and their health, for failure messages.
    pub async fn targets(&self) -> Value {
        self.client
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await
            .expect("targets")
            .json()
            .await
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Stopped first, so it does not write while its data goes.
        if let Some(mut process) = self.process.take() {
            process.kill_and_reap();
        }
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}
