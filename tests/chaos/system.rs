//! Surge as production runs it, on the run's own services: two gateway replicas and two
//! replicas of the `sleep` function, real release binaries, each a process the faults can
//! kill and start again.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use surge_tests::{FunctionProcess, eventually};

use crate::env::Services;

/// The development key the run's gateways accept.
pub const KEY: &str = "chaos-dev-key-0123456789";
/// Jobs each function replica runs at once.
pub const CONCURRENCY: &str = "8";

pub struct System {
    bin_dir: PathBuf,
    common: Vec<(String, String)>,
    pub gateway_addrs: Vec<String>,
    pub gateways: Vec<Option<FunctionProcess>>,
    pub workers: Vec<Option<FunctionProcess>>,
    spawned: usize,
    http: reqwest::Client,
}

impl System {
    pub async fn start(bin_dir: PathBuf, services: &Services) -> anyhow::Result<Self> {
        let common = vec![
            (
                "SURGE_DATABASE__URL".to_owned(),
                services.database_url.clone(),
            ),
            (
                "SURGE_DATABASE__MAX_CONNECTIONS".to_owned(),
                "10".to_owned(),
            ),
            ("SURGE_BROKER__URL".to_owned(), services.broker_url()),
            (
                "SURGE_BROKER__RECONNECT_MAX_MS".to_owned(),
                "500".to_owned(),
            ),
            (
                "SURGE_BROKER__PUBLISH_TIMEOUT_MS".to_owned(),
                "1000".to_owned(),
            ),
            ("SURGE_TELEMETRY__LOG_FILTER".to_owned(), "info".to_owned()),
        ];
        let migrate = std::process::Command::new(bin_dir.join("surge"))
            .arg("migrate")
            .envs(common.iter().map(|(k, v)| (k, v)))
            .output()
            .context("running surge migrate")?;
        anyhow::ensure!(
            migrate.status.success(),
            "surge migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        let gateway_addrs = (0..2)
            .map(|_| {
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                Ok(format!("127.0.0.1:{port}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut system = Self {
            bin_dir,
            common,
            gateways: (0..gateway_addrs.len()).map(|_| None).collect(),
            gateway_addrs,
            workers: vec![None, None],
            spawned: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        for i in 0..2 {
            system.start_gateway(i).await?;
            system.start_worker(i).await?;
        }
        Ok(system)
    }

    pub fn urls(&self) -> Vec<String> {
        self.gateway_addrs
            .iter()
            .map(|a| format!("http://{a}"))
            .collect()
    }

    pub async fn start_gateway(&mut self, i: usize) -> anyhow::Result<()> {
        let mut env = self.common.clone();
        env.extend(
            [
                ("SURGE_HTTP__ADDR", self.gateway_addrs[i].as_str()),
                ("SURGE_DEV__API_KEY", KEY),
                ("SURGE_FUNCTIONS", "sleep"),
                ("SURGE_LIMITS__PER_SECOND", "0"),
                // A stranded job is published again 3 s after it was recorded.
                ("SURGE_DELIVERY__LEASE_MS", "3000"),
                ("SURGE_DELIVERY__RECONCILE_INTERVAL_MS", "500"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        self.spawned += 1;
        let process = FunctionProcess::spawn_binary(
            &self.bin_dir.join("surge"),
            &["gateway"],
            &env,
            &format!("chaos-gateway{i}-{}", self.spawned),
        );
        self.gateways[i] = Some(process);
        let ready = format!("http://{}/readyz", self.gateway_addrs[i]);
        let http = self.http.clone();
        eventually("a gateway to be ready", Duration::from_secs(30), || async {
            let r = http.get(&ready).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        Ok(())
    }

    pub async fn start_worker(&mut self, i: usize) -> anyhow::Result<()> {
        let mut env = self.common.clone();
        env.extend(
            [
                ("SURGE_FUNCTION__CONCURRENCY", CONCURRENCY),
                ("SURGE_FUNCTION__GRACE_PERIOD_MS", "10000"),
                ("SURGE_FUNCTION__RETRY_DELAY_MS", "50"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        self.spawned += 1;
        let process = FunctionProcess::spawn_binary(
            &self.bin_dir.join("surge-sleep"),
            &[],
            &env,
            &format!("chaos-sleep{i}-{}", self.spawned),
        );
        self.workers[i] = Some(process);
        Ok(())
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill_gateway(&mut self, i: usize) {
        if let Some(mut g) = self.gateways[i].take() {
            g.kill_and_reap();
        }
    }

    pub fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers[i].take() {
            w.kill_and_reap();
        }
    }

    /// SIGTERM, as KEDA's scale-down: the worker finishes or hands back its jobs and exits.
    pub async fn scale_down_worker(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut w) = self.workers[i].take() {
            w.sigterm();
            let status = w.wait(Duration::from_secs(30)).await;
            anyhow::ensure!(status.success(), "a worker's SIGTERM exit was {status}");
        }
        Ok(())
    }

    /// `surge_jobs_republished_total` summed over the running gateways.
    pub async fn republished(&self) -> u64 {
        let mut total = 0;
        for addr in &self.gateway_addrs {
            let Ok(r) = self.http.get(format!("http://{addr}/metrics")).send().await else {
                continue;
            };
            let text = r.text().await.unwrap_or_default();
            total += text
                .lines()
                .filter(|l| l.starts_with("surge_jobs_republished_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        total
    }
}
