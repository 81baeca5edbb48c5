//! The test harness: each test gets its own database (created from the migrations), its own
//! RabbitMQ name prefix, a gateway on port 0 in-process, and function processes spawned from
//! the real binaries. Everything is removed when the [`TestApp`] is dropped, even after a panic.
//!
//! Tests talk to the gateway through its typed client ([`ApiClient`], `app.get`, `app.post`,
//! …): the status each call expects, and the answer decoded into the gateway's own types.

mod api;
mod broker;
mod database;
mod function;
mod gateway;
mod identity;
mod otlp;
mod prometheus;
mod proxy;
mod replica;

pub use api::{ApiClient, Exchange, Reply, job_problem, read_json, read_problem};
pub use broker::{BrokerProbe, BrokerUser, close_connections_named};
pub use database::TestDatabase;
pub use function::{FunctionProcess, bin_dir, log_dir};
pub use gateway::{Replica, TEST_API_KEY, TestApp, TestAppBuilder};
pub use identity::{Browser, IdentityProvider, Landing, idp_dir};
pub use otlp::{OtlpReceiver, ReceivedSpan, SpanKind, tree};
pub use prometheus::{Prometheus, Sample};
pub use proxy::FaultyProxy;
pub use replica::ReplicatedPostgres;

use std::future::Future;
use std::time::{Duration, Instant};

/// The URL of the machine's Postgres server (no database), from `SURGE_TEST_POSTGRES`.
pub fn postgres_server_url() -> String {
    std::env::var("SURGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The machine's RabbitMQ, from `SURGE_TEST_AMQP`.
pub fn amqp_url() -> String {
    std::env::var("SURGE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The machine's Redis (the shared rate-limit store), from `SURGE_TEST_REDIS`.
pub fn redis_url() -> String {
    std::env::var("SURGE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The machine's RabbitMQ management API, from `SURGE_TEST_MANAGEMENT`.
pub fn management_url() -> String {
    std::env::var("SURGE_TEST_MANAGEMENT")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into())
}

/// Runs the Python CloudEvents client (`tests/clients/ce_client.py`, on the official SDK)
/// with `stdin` as JSON and returns what it printed, as JSON. Asynchronous, so an in-process
/// gateway on the same runtime keeps serving while the client talks to it.
pub async fn python_ce_client(args: &[&str], stdin: &serde_json::Value) -> serde_json::Value {
    use tokio::io::AsyncWriteExt as _;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/ce_client.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3 (scripts/setup.sh installs the client's packages)");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.to_string().as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().await.expect("python client");
    assert!(
        out.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the Python client")
}

/// An address on a port that was free a moment ago.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A fresh random name for this test (database, broker prefix).
pub fn unique_name() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// Waits until `check` returns `Some`, polling a condition the system exposes (a job's state,
/// a queue's consumer count). Fails the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `future` to completion on a thread of its own with its own runtime: for clean-up in
/// `Drop`, which may run inside or outside a runtime, and even while unwinding.
pub fn block_on_thread<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(future);
        }
    })
    .join();
}

/// Installs tracing once per test process (spans get real ids, as in production); the log
/// filter comes from `SURGE_TEST_LOG` (default `warn`).
pub fn init_telemetry() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if tracing::dispatcher::has_been_set() {
            // The test installed its own (to read the logs).
            return;
        }
        let settings = surge_contract::telemetry::TelemetrySettings {
            log_filter: std::env::var("SURGE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            ..Default::default()
        };
        // Kept for the life of the process: dropping it would stop span ids.
        std::mem::forget(surge_contract::telemetry::Telemetry::init(
            "surge-tests",
            &settings,
        ));
    });
}
