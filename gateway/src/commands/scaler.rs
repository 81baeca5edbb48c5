//! `surge scaler`: KEDA and the HPA on this machine (see `surge_autoscale::local`), with a
//! live view in the terminal and the same state as JSON at `GET /status`.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use surge_autoscale::depth::ManagementApi;
use surge_autoscale::local::{self, LocalSettings, Status};
use tokio_util::sync::CancellationToken;

use crate::config::GatewaySettings;

#[derive(Debug, clap::Args)]
pub struct ScalerArgs {
    /// Directory of the ScaledObjects and Deployments to honour.
    #[arg(long, default_value = "keda/base")]
    pub manifests: PathBuf,
    /// Where the function binaries are (default: next to `surge`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The gateway's push scaler, e.g. `http://127.0.0.1:9090`; without it activation waits
    /// for the polling interval.
    #[arg(long)]
    pub push: Option<String>,
    /// Serve the status as JSON at `http://ADDR/status`.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub status_addr: SocketAddr,
    /// Cap every cooldownPeriod at this many seconds (faster cycles while developing).
    #[arg(long)]
    pub max_cooldown: Option<u64>,
    /// Only these functions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// Replica logs go here.
    #[arg(long, default_value = ".surge/logs")]
    pub log_dir: PathBuf,
}

pub async fn run(
    args: ScalerArgs,
    settings: &GatewaySettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let management = settings
        .scaler
        .management_url
        .clone()
        .unwrap_or_else(|| SecretString::from("http://guest:guest@127.0.0.1:15672"));
    let vhost = ManagementApi::vhost_of(&settings.broker.first_url());
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    };
    let local = LocalSettings {
        manifests: args.manifests,
        bin_dir,
        log_dir: args.log_dir,
        management: ManagementApi::new(&management, &vhost)?,
        prefix: settings.broker.prefix.clone(),
        push: args.push,
        status_addr: Some(args.status_addr),
        max_cooldown: args.max_cooldown.map(Duration::from_secs),
        only: args.only,
    };
    tracing::info!(status = %format!("http://{}/status", args.status_addr), "local scaler starting");
    let status = Status::default();
    let view = tokio::spawn(live_view(status.clone(), shutdown.clone()));
    let result = local::run(local, status, shutdown).await;
    view.abort();
    result
}

/// Redraws the table every second on a terminal; elsewhere the scaling log lines suffice.
async fn live_view(status: Status, shutdown: CancellationToken) {
    let mut out = std::io::stdout();
    if !out.is_terminal() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let table = local::render(&status.snapshot());
        // Clear and home, then the table: the terminal shows the current state only.
        let _ = write!(out, "\x1b[2J\x1b[H{table}");
        let _ = out.flush();
    }
}
