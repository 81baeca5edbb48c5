//! What idle websockets cost the gateway: the release `surge gateway`'s resident memory
//! before and after this many connections, each authenticated and subscribed, then left
//! alone (`just bench --ws-idle 10000`; docs/BENCHMARKS.md "Idle websockets").

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _, stream};
use surge_tests::{TestDatabase, amqp_url, unique_name};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::surge::{KEY, spawn_gateway};

/// Connections opened at once while filling.
const OPENING: usize = 64;

/// The gateway's resident set, from `/proc/<pid>/status`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("x-api-key", KEY.parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    socket
        .send(Message::Text(
            r#"{"type":"subscribe","functions":["echo"]}"#.into(),
        ))
        .await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await? {
            Some(Ok(Message::Text(reply))) if reply.contains("subscribed") => return Ok(socket),
            Some(Ok(Message::Text(other))) => anyhow::bail!("unexpected: {other}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("closed before subscribing"),
        }
    }
}

pub async fn run(bin_dir: &Path, sockets: usize) -> anyhow::Result<()> {
    let db = TestDatabase::migrated(&unique_name()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cap = (sockets + 100).to_string();
    let env: Vec<(String, String)> = [
        ("SURGE_DATABASE__URL", format!("{}?sslmode=disable", db.url)),
        ("SURGE_BROKER__URL", amqp_url()),
        ("SURGE_BROKER__PREFIX", format!("bench-{}-", db.name)),
        ("SURGE_TELEMETRY__LOG_FILTER", "warn".to_owned()),
        ("SURGE_HTTP__ADDR", addr.clone()),
        ("SURGE_DEV__API_KEY", KEY.to_owned()),
        ("SURGE_FUNCTIONS", "echo".to_owned()),
        ("SURGE_LIMITS__PER_SECOND", "0".to_owned()),
        // One entity holds them all here: the caps are raised to what is measured.
        ("SURGE_WS__MAX_CONNECTIONS", cap.clone()),
        ("SURGE_WS__MAX_CONNECTIONS_PER_TENANT", cap.clone()),
        ("SURGE_WS__MAX_CONNECTIONS_PER_ENTITY", cap),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (gateway, _client, _url) = spawn_gateway(bin_dir, &env, &addr, "bench-ws-gateway").await?;
    let pid = gateway.pid().as_raw() as u32;
    let url = format!("ws://{addr}/ws");
    // One connection first, so what every connection shares (the entity's binding, the
    // upgrade path's first use) is in the baseline, not in the per-socket figure.
    let _first = open(&url).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let opened: Vec<anyhow::Result<Socket>> = stream::iter(0..sockets)
        .map(|_| open(&url))
        .buffer_unordered(OPENING)
        .collect()
        .await;
    let took = started.elapsed();
    let failed = opened.iter().filter(|s| s.is_err()).count();
    if let Some(Err(e)) = opened.iter().find(|s| s.is_err()) {
        eprintln!("ws-idle: first failure: {e:#}");
    }
    // Idle for a while, so that what the gateway frees after the upgrade is freed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(pid)?;
    let held = sockets - failed;
    let per_socket = (after.saturating_sub(before)) as f64 / held.max(1) as f64;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Idle websockets on one release gateway (authenticated, subscribed, then left alone)"
        )?;
        writeln!(
            out,
            "| sockets | opened in | gateway RSS before | after | per socket |"
        )?;
        writeln!(out, "|--:|--:|--:|--:|--:|")?;
        writeln!(
            out,
            "| {held} (of {sockets}) | {:.1} s | {:.1} MiB | {:.1} MiB | {per_socket:.1} KiB |",
            took.as_secs_f64(),
            before as f64 / 1024.0,
            after as f64 / 1024.0,
        )?;
    }
    drop(opened);
    let mut gateway = gateway;
    gateway.sigterm();
    let _ = gateway.wait(Duration::from_secs(30)).await;
    let prefix = format!("bench-{}-", db.name);
    surge_tests::BrokerProbe::connect()
        .await
        .delete_topology(&prefix, &["echo"])
        .await;
    TestDatabase::drop_blocking(&db.name);
    anyhow::ensure!(failed == 0, "{failed} of {sockets} connections failed");
    Ok(())
}
