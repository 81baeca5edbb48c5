//! Surge under load: the release `surge gateway` and `surge-echo` as separate processes on a
//! database and broker prefix of their own, called over HTTP with the development key.

use std::path::Path;
use std::time::Duration;

use surge_tests::{BrokerProbe, FunctionProcess, TestDatabase, amqp_url, eventually, unique_name};

use crate::raw::run_callers;
use crate::stats::Measurement;

/// The development key the benchmark's gateways accept.
pub const KEY: &str = "bench-dev-key-0123456789";

/// Starts a release `surge gateway` with `env` and waits until it is ready on `addr`.
pub async fn spawn_gateway(
    bin_dir: &Path,
    env: &[(String, String)],
    addr: &str,
    log: &str,
) -> anyhow::Result<(FunctionProcess, reqwest::Client, String)> {
    let gateway = FunctionProcess::spawn_binary(&bin_dir.join("surge"), &["gateway"], env, log);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("http://{addr}");
    eventually(
        "the gateway to be ready",
        Duration::from_secs(30),
        || async {
            let r = client.get(format!("{url}/readyz")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    Ok((gateway, client, url))
}

pub struct SurgeBench {
    db: TestDatabase,
    prefix: String,
    url: String,
    client: reqwest::Client,
    gateway: FunctionProcess,
    echo: FunctionProcess,
}

impl SurgeBench {
    pub async fn start(bin_dir: &Path, max_callers: usize, sslmode: &str) -> anyhow::Result<Self> {
        let db = TestDatabase::migrated(&unique_name()).await;
        Self::start_on(bin_dir, max_callers, sslmode, db).await
    }

    /// As `start`, on a database made already (the scale benchmark's, filled).
    pub async fn start_on(
        bin_dir: &Path,
        max_callers: usize,
        sslmode: &str,
        db: TestDatabase,
    ) -> anyhow::Result<Self> {
        let name = db.name.clone();
        let prefix = format!("bench-{name}-");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let pool = (max_callers / 4).clamp(4, 32).to_string();
        let common = |extra: &[(&str, String)]| {
            let mut env = vec![
                (
                    "SURGE_DATABASE__URL".to_owned(),
                    format!("{}?sslmode={sslmode}", db.url),
                ),
                ("SURGE_DATABASE__MAX_CONNECTIONS".to_owned(), pool.clone()),
                ("SURGE_BROKER__URL".to_owned(), amqp_url()),
                ("SURGE_BROKER__PREFIX".to_owned(), prefix.clone()),
                ("SURGE_TELEMETRY__LOG_FILTER".to_owned(), "warn".to_owned()),
            ];
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            env
        };
        let (gateway, client, url) = spawn_gateway(
            bin_dir,
            &common(&[
                ("SURGE_HTTP__ADDR", addr.clone()),
                ("SURGE_DEV__API_KEY", KEY.to_owned()),
                ("SURGE_FUNCTIONS", "echo".to_owned()),
                // The benchmark measures the job path, not the per-entity limit.
                ("SURGE_LIMITS__PER_SECOND", "0".to_owned()),
            ]),
            &addr,
            "bench-gateway",
        )
        .await?;
        let echo = FunctionProcess::spawn_binary(
            &bin_dir.join("surge-echo"),
            &[],
            &common(&[("SURGE_FUNCTION__CONCURRENCY", max_callers.to_string())]),
            "bench-echo",
        );
        let probe = BrokerProbe::connect().await;
        let queue = format!("{prefix}fn.echo");
        eventually("echo to consume", Duration::from_secs(30), || async {
            (probe.queue_counts(&queue).await.1 == 1).then_some(())
        })
        .await;
        Ok(Self {
            db,
            prefix,
            url,
            client,
            gateway,
            echo,
        })
    }

    async fn call(&self) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}/jobs/echo", self.url))
            .header("x-api-key", KEY)
            .header("content-type", "application/json")
            .body(r#"{"hello":"world"}"#)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == reqwest::StatusCode::OK,
            "status {}",
            response.status()
        );
        response.bytes().await?;
        Ok(())
    }

    /// `GET path` by one caller, again and again (answered 200 each time).
    pub async fn measure_get(&self, path: &str, duration: Duration) -> Measurement {
        let url = format!("{}{path}", self.url);
        let url = url.as_str();
        run_callers(1, duration, || async move {
            let response = self.client.get(url).header("x-api-key", KEY).send().await?;
            anyhow::ensure!(
                response.status() == reqwest::StatusCode::OK,
                "status {}",
                response.status()
            );
            response.bytes().await?;
            Ok(())
        })
        .await
    }

    /// A job id the benchmark's entity owns, from the last sync call's answer.
    pub async fn one_job(&self) -> anyhow::Result<String> {
        let response = self
            .client
            .post(format!("{}/jobs/echo", self.url))
            .header("x-api-key", KEY)
            .header("content-type", "application/json")
            .body(r#"{"hello":"world"}"#)
            .send()
            .await?;
        let job: serde_json::Value = response.json().await?;
        job["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no job id in {job}"))
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    pub async fn measure(&self, callers: usize, duration: Duration) -> Measurement {
        run_callers(callers, duration, || self.call()).await
    }

    /// Stops the processes and removes the broker objects, keeping the database.
    pub async fn stop_keeping_database(mut self) {
        self.echo.sigterm();
        self.gateway.sigterm();
        let _ = self.echo.wait(Duration::from_secs(30)).await;
        let _ = self.gateway.wait(Duration::from_secs(30)).await;
        BrokerProbe::connect()
            .await
            .delete_topology(&self.prefix, &["echo"])
            .await;
    }

    /// Stops everything and drops the database.
    pub async fn stop(self) {
        let database = self.db.name.clone();
        self.stop_keeping_database().await;
        TestDatabase::drop_blocking(&database);
    }
}
