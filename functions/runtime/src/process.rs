//! Starting a function process: load settings, start telemetry, check the schema, consume
//! until SIGTERM, drain, exit 0.

use std::sync::Arc;

use anyhow::Context as _;
use surge_contract::job::FunctionName;
use surge_contract::telemetry::Telemetry;
use surge_contract::topology::Topology;
use surge_contract::{schema, settings, shutdown};
use tokio_util::sync::CancellationToken;

use crate::consumer;
use crate::handler::Function;
use crate::settings::RuntimeSettings;
use crate::worker::Worker;

/// Runs `function` as a process: everything a function's `main` needs.
/// Settings come from `SURGE_CONFIG` (a TOML file) and `SURGE_*` variables.
pub async fn run<F: Function>(function: F) -> anyhow::Result<()> {
    let file = std::env::var_os("SURGE_CONFIG").map(std::path::PathBuf::from);
    let settings: RuntimeSettings = settings::load(file.as_deref()).context("loading settings")?;
    let telemetry = Telemetry::init("surge-function", &settings.telemetry)?;
    let shutdown = shutdown::on_signal()?;
    let result = run_with(function, settings, shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "function stopped");
    }
    telemetry.shutdown();
    result
}

/// Runs `function` with given settings until `shutdown` is cancelled, then drains.
pub async fn run_with<F: Function>(
    function: F,
    settings: RuntimeSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    settings.function.validate().map_err(anyhow::Error::msg)?;
    let name = FunctionName::parse(F::NAME)?;
    let pool = settings.database.connect().await?;
    schema::ensure_current(&pool).await?;
    let topology = Topology::new(settings.broker.prefix.clone(), settings.jobs.max_attempts);
    let worker = Arc::new(Worker {
        function,
        name,
        pool: pool.clone(),
        topology,
        settings,
    });
    consumer::consume(worker, shutdown).await;
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}
