//! The local scaler (`surge scaler`): KEDA and the HPA on one machine. It reads the
//! ScaledObjects in `keda/`, and for each function starts and stops processes with the same
//! decision code the simulator uses: activation above `activationValue`, `ceil(depth/value)`
//! clamped to min/max with the HPA's tolerance and stabilization, `cooldownPeriod` before zero,
//! SIGTERM with the grace period. Like KEDA it polls every `pollingInterval` (activation and
//! the cooldown) and is woken at once by the gateway's push scaler, as a client of the same
//! gRPC API KEDA uses; like the HPA it resizes every 15 s on a fresh read of the queue. Queued
//! and in-flight messages come from the management API, and the ScaledObject's protocol
//! decides which of them count.
//!
//! A development tool that honours the manifests, not a replacement for KEDA.

mod push;
mod replicas;
mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::decision::{HPA_SYNC_PERIOD, Observation, Scaler};
use crate::depth::{Depth, ManagementApi};
use crate::manifest::{self, FunctionScaling};

pub use status::{DecisionRecord, FunctionStatus, Status, render};

use replicas::Replicas;

/// How the local scaler runs.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Directory of ScaledObject and Deployment YAML (e.g. `keda/base`).
    pub manifests: PathBuf,
    /// Where the function binaries are.
    pub bin_dir: PathBuf,
    /// Where each replica's output goes.
    pub log_dir: PathBuf,
    pub management: ManagementApi,
    /// The broker prefix in front of every queue name.
    pub prefix: String,
    /// The gateway's push scaler (`http://127.0.0.1:9090`), when it runs one.
    pub push: Option<String>,
    /// Serves the status as JSON at `GET /status`.
    pub status_addr: Option<SocketAddr>,
    /// Caps every `cooldownPeriod` (faster cycles while developing).
    pub max_cooldown: Option<Duration>,
    /// Only these functions, when set.
    pub only: Option<Vec<String>>,
}

/// Runs until `shutdown`, then stops every replica gracefully.
pub async fn run(
    settings: LocalSettings,
    status: Status,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut functions = manifest::load_dir(&settings.manifests).with_context(|| {
        format!(
            "reading the ScaledObjects in {}",
            settings.manifests.display()
        )
    })?;
    if let Some(only) = &settings.only {
        functions.retain(|f| only.contains(&f.function));
    }
    anyhow::ensure!(
        !functions.is_empty(),
        "no ScaledObject to run in {}",
        settings.manifests.display()
    );
    std::fs::create_dir_all(&settings.log_dir)?;
    if let Some(addr) = settings.status_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let router = axum::Router::new().route(
            "/status",
            axum::routing::get({
                let status = status.clone();
                move || async move { axum::Json(status.snapshot()) }
            }),
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
    }
    let tracker = TaskTracker::new();
    for mut spec in functions {
        if let Some(cap) = settings.max_cooldown {
            spec.cooldown_period = spec.cooldown_period.min(cap);
        }
        tracker.spawn(function_loop(
            spec,
            settings.clone(),
            status.clone(),
            shutdown.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The manifest's function settings that make sense for a local process (its HTTP port would
/// clash between replicas; its mode is the queue's).
fn replica_env(spec: &FunctionScaling) -> Vec<(String, String)> {
    spec.env
        .iter()
        .filter(|(k, _)| {
            (k.starts_with("SURGE_FUNCTION__")
                && !k.ends_with("HTTP_ADDR")
                && !k.ends_with("__MODE"))
                || k.as_str() == "SURGE_DATABASE__MAX_CONNECTIONS"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The queue's figures into `depth`; on failure the last figures stay.
async fn read_depth(management: &ManagementApi, queue: &str, function: &str, depth: &mut Depth) {
    match management.depth(queue).await {
        Ok(d) => *depth = d,
        Err(e) => {
            tracing::warn!(%function, error = %e, "reading the queue depth failed; keeping the last figures")
        }
    }
}

async fn function_loop(
    spec: FunctionScaling,
    settings: LocalSettings,
    status: Status,
    shutdown: CancellationToken,
) {
    let function = spec.function.clone();
    let queue = format!("{}{}", settings.prefix, spec.queue_name);
    let binary = settings.bin_dir.join(
        spec.binary
            .clone()
            .unwrap_or_else(|| format!("surge-{function}")),
    );
    let mut replicas = Replicas::new(
        binary,
        replica_env(&spec),
        settings.log_dir.clone(),
        spec.termination_grace,
    );
    let mut scaler = Scaler::new(&spec);
    status.update(&function, |s| {
        s.function = function.clone();
        s.queue = queue.clone();
        s.min_replicas = spec.min_replicas;
        s.max_replicas = spec.max_replicas;
    });
    let (push_tx, mut pushes) = mpsc::channel(16);
    if let Some(address) = &settings.push {
        tokio::spawn(push::follow(
            address.clone(),
            function.clone(),
            push_tx,
            shutdown.clone(),
        ));
    }
    let start = Instant::now();
    let mut depth = Depth::default();
    let mut pushed = false;
    let mut poll = tokio::time::interval(spec.polling_interval);
    let mut hpa = tokio::time::interval(HPA_SYNC_PERIOD);
    let mut reap = tokio::time::interval(Duration::from_millis(250));
    loop {
        let trigger = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = poll.tick() => {
                read_depth(&settings.management, &queue, &function, &mut depth).await;
                "poll"
            }
            _ = hpa.tick() => {
                // KEDA's metrics server reads the queue afresh for the HPA, unless the
                // trigger asks for the value of its last poll.
                if !spec.use_cached_metrics {
                    read_depth(&settings.management, &queue, &function, &mut depth).await;
                }
                "hpa"
            }
            Some(active) = pushes.recv() => {
                pushed = active;
                if !active { continue }
                "push"
            }
            _ = reap.tick() => {
                // Like a Deployment, replace replicas that died on their own.
                if replicas.reap() > 0 {
                    let _ = replicas.scale_to(scaler.replicas());
                }
                status.update(&function, |s| {
                    s.replicas = replicas.serving();
                    s.stopping = replicas.stopping();
                });
                continue;
            }
        };
        let observation = Observation {
            now: start.elapsed(),
            ready: depth.ready as f64,
            in_flight: depth.unacked as f64,
            pushed_active: pushed,
        };
        let decision = if trigger == "hpa" {
            scaler.sync(&observation)
        } else {
            scaler.poll(&observation)
        };
        if let Err(e) = replicas.scale_to(decision.replicas) {
            tracing::error!(%function, error = %e, "starting a replica failed");
        }
        let record = DecisionRecord {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            replicas: decision.replicas,
            changed: decision.changed,
            trigger,
            reason: decision.reason.clone(),
        };
        if decision.changed {
            tracing::info!(%function, replicas = decision.replicas, trigger, reason = %decision.reason, "scaled");
        }
        status.update(&function, |s| {
            s.replicas = replicas.serving();
            s.stopping = replicas.stopping();
            s.ready = depth.ready;
            s.unacked = depth.unacked;
            s.pushed_active = pushed;
            if decision.changed || s.decisions.is_empty() {
                s.decisions.push_front(record.clone());
                s.decisions.truncate(20);
            } else if let Some(last) = s.decisions.front_mut() {
                // Keep the latest reason visible without growing the history.
                if !last.changed {
                    *last = record.clone();
                }
            }
        });
    }
    replicas.stop_all().await;
    status.update(&function, |s| {
        s.replicas = 0;
        s.stopping = 0;
    });
}
