//! Starting a function process: load settings, start telemetry, check the schema, take jobs
//! (from the queue, or over HTTP) until SIGTERM, drain, exit 0.

use std::sync::Arc;

use anyhow::Context as _;
use surge_contract::job::FunctionName;
use surge_contract::link::Link;
use surge_contract::telemetry::Telemetry;
use surge_contract::topology::Topology;
use surge_contract::{config, schema, shutdown};
use tokio_util::sync::CancellationToken;

use crate::consumer::{Consuming, Publishing};
use crate::handler::Function;
use crate::metrics::RuntimeMetrics;
use crate::server::{self, ServerState};
use crate::settings::{Mode, RuntimeSettings};
use crate::worker::Worker;

/// Runs `function` as a process: everything a function's `main` needs.
/// Settings come from `SURGE_CONFIG` (a TOML file) and `SURGE_*` variables.
pub async fn run<F: Function>(function: F) -> anyhow::Result<()> {
    let file = std::env::var_os("SURGE_CONFIG").map(std::path::PathBuf::from);
    let settings: RuntimeSettings = config::load(file.as_deref()).context("loading settings")?;
    // Each function is its own service in traces: `surge-echo`, `surge-sleep`…
    let telemetry = Telemetry::init(&format!("surge-{}", F::NAME), &settings.telemetry)?;
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
    settings.broker.validate().map_err(anyhow::Error::msg)?;
    settings
        .jobs
        .validate(settings.function.longest_life(settings.jobs.max_attempts))
        .map_err(anyhow::Error::msg)?;
    let name = FunctionName::parse(F::NAME)?;
    let pool = settings.database.connect().await?;
    schema::ensure_current(&pool).await?;
    let topology = Topology::new(settings.broker.prefix.clone(), settings.jobs.max_attempts);
    let link_name = format!("{}fn-{name}", topology.prefix());
    let broker = settings.broker.clone();
    let mode = settings.function.mode;
    let http_addr = settings.function.http_addr;
    let body_limit = settings.function.body_limit_bytes;
    let concurrency = usize::from(settings.function.concurrency);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(RuntimeMetrics::register(&name, &mut registry));
    // A share of the pool writes claims and results in groups; a group is at most what
    // can be in flight at once.
    let groups = crate::groups::Groups::start(
        &pool,
        (settings.database.max_connections / 3).clamp(1, 4) as usize,
        concurrency.max(1),
        &metrics.process,
    );
    let worker = Arc::new(Worker {
        groups,
        function,
        name: name.clone(),
        pool: pool.clone(),
        topology: topology.clone(),
        gateway_senders: broker.gateway_senders(),
        sender: broker.user(),
        settings,
        metrics: metrics.clone(),
    });

    // In HTTP mode the link must outlive the server: requests in flight still publish.
    let link_stop = match mode {
        Mode::Amqp => shutdown.clone(),
        Mode::Http => CancellationToken::new(),
    };
    let (link, link_task) = match mode {
        Mode::Amqp => Link::start(
            broker,
            link_name,
            Arc::new(Consuming::new(Arc::clone(&worker))),
            link_stop.clone(),
        ),
        Mode::Http => Link::start(
            broker,
            link_name,
            Arc::new(Publishing {
                topology,
                function: name,
            }),
            link_stop.clone(),
        ),
    };
    // The HTTP port stays up while AMQP work drains (probes keep answering, readiness says
    // draining); in HTTP mode it stops first, so that requests in flight finish before the link.
    let server_stop = CancellationToken::new();
    let server = match http_addr {
        Some(addr) => {
            let state = Arc::new(ServerState {
                worker,
                link,
                pool: pool.clone(),
                shutdown: shutdown.clone(),
                registry: Arc::new(registry),
                metrics,
            });
            let router = server::router(state, mode == Mode::Http, body_limit, concurrency);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on function.http_addr {addr}"))?;
            tracing::info!(%addr, ?mode, "serving HTTP");
            let stop = server_stop.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }))
        }
        None => None,
    };
    let stop_server = || async {
        server_stop.cancel();
        if let Some(server) = server
            && let Ok(Err(e)) = server.await
        {
            tracing::warn!(error = %e, "HTTP server stopped with an error");
        }
    };
    match mode {
        Mode::Amqp => {
            let _ = link_task.await;
            stop_server().await;
        }
        Mode::Http => {
            shutdown.cancelled().await;
            stop_server().await;
            link_stop.cancel();
            let _ = link_task.await;
        }
    }
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}
