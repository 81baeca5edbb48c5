//! `just chaos`: a reproducible fault run on this machine, loopback only, on services of its
//! own (a PostgreSQL server and one RabbitMQ node, or a cluster of three with `--cluster`).
//! Two gateway and two function replicas (release binaries) take load from concurrent clients
//! that retry with the same `Idempotency-Key`, while each fault strikes alone and then all in
//! a row; afterwards the database is counted against what the clients were told: accepted,
//! finished by state, never finished, lost, effects doubled, effects missing. Then a backlog
//! behind a sleeping function must drain with nothing published twice. Exits 1 on any loss,
//! double or stranded job.

mod env;
mod faults;
mod load;
mod report;
mod system;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures_util::StreamExt as _;

use crate::faults::Fault;
use crate::load::{Client, Load};
use crate::report::Healing;
use crate::system::System;

#[derive(Debug, Parser)]
#[command(name = "surge-chaos")]
struct Args {
    /// Where the release binaries are (`surge`, `surge-sleep`).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Seconds of load before the first fault and after each.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Each client submits a job this often.
    #[arg(long, default_value_t = 50)]
    pace_ms: u64,
    /// How long each job's handler works.
    #[arg(long, default_value_t = 20)]
    job_ms: u64,
    /// Jobs queued behind a sleeping function and then drained (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    backlog: usize,
    /// A three-node RabbitMQ cluster; adds the fault that kills the queue's leader.
    #[arg(long)]
    cluster: bool,
    /// Only these faults (all by default).
    #[arg(long, value_delimiter = ',', value_enum)]
    faults: Vec<Fault>,
    /// Also write the report (Markdown) here.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("surge-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether the run found nothing wrong.
async fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let faults = if args.faults.is_empty() {
        Fault::all(args.cluster)
    } else {
        args.faults.clone()
    };
    eprintln!(
        "starting a PostgreSQL server and {} RabbitMQ node(s) of the run's own…",
        if args.cluster { 3 } else { 1 }
    );
    let services = env::Services::start(if args.cluster { 3 } else { 1 }).await?;
    let mut system = System::start(args.bin_dir.clone(), &services).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&services.database_url)
        .await
        .context("connecting to the run's database")?;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        gateways: system.urls(),
        key: system::KEY.to_owned(),
    };
    let queue = "fn.sleep";
    let load = Load::start(
        client.clone(),
        args.clients,
        Duration::from_millis(args.pace_ms),
        args.job_ms,
    );
    let pause = Duration::from_secs(args.seconds);
    tokio::time::sleep(pause).await;

    let mut healing = Vec::new();
    for &fault in &faults {
        eprintln!("fault: {}", fault.describe());
        let heal = strike(&[fault], &services, &mut system, &pool, queue, &load).await?;
        healing.push(heal);
        tokio::time::sleep(pause).await;
    }
    if faults.len() > 1 {
        eprintln!(
            "faults in a row: {}",
            faults
                .iter()
                .map(|f| f.describe())
                .collect::<Vec<_>>()
                .join(", ")
        );
        healing.push(strike(&faults, &services, &mut system, &pool, queue, &load).await?);
        tokio::time::sleep(pause).await;
    }
    eprintln!("stopping the load");
    let answers = load.stop().await;
    let settled = report::settle(&pool, Duration::from_secs(120)).await?;
    let counts = report::count(&pool, &answers).await?;
    for refusal in answers.refused.iter().take(5) {
        eprintln!("refused: {refusal}");
    }

    let mut extra = Vec::new();
    let mut backlog_ok = true;
    if args.backlog > 0 {
        let (line, ok) = backlog(&args, &services, &mut system, &pool, &client, queue).await?;
        extra.push(line);
        backlog_ok = ok;
    }
    extra.push(format!(
        "{} RabbitMQ node(s); whole run {:.0} s",
        services.nodes.len(),
        started.elapsed().as_secs_f64()
    ));
    let text = report::render(&healing, &counts, settled, &extra);
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let healed = healing.iter().all(|h| h.healed.is_some());
    Ok(!counts.bad() && healed && backlog_ok)
}

/// Strikes `faults` one after another and waits until jobs flow again.
async fn strike(
    faults: &[Fault],
    services: &env::Services,
    system: &mut System,
    pool: &sqlx::PgPool,
    queue: &str,
    load: &Load,
) -> anyhow::Result<Healing> {
    let since = Instant::now();
    let at = chrono::Utc::now();
    let mut killed_nodes = Vec::new();
    for &fault in faults {
        if let Some(node) = faults::inject(fault, services, system, queue).await? {
            killed_nodes.push(node);
        }
    }
    let healed = faults::healed(pool, since, at, Duration::from_secs(90)).await;
    for node in killed_nodes {
        services.revive_node(node)?;
    }
    let fault = if faults.len() == 1 {
        faults[0].describe().to_owned()
    } else {
        "all of the above in a row".to_owned()
    };
    Ok(Healing {
        fault,
        accepted_by_then: load.accepted(),
        healed,
    })
}

/// A backlog behind a sleeping function: queued with every replica stopped, left waiting far
/// past the reconciler's lease, then drained. Nothing may be published twice.
async fn backlog(
    args: &Args,
    services: &env::Services,
    system: &mut System,
    pool: &sqlx::PgPool,
    client: &Client,
    queue: &str,
) -> anyhow::Result<(String, bool)> {
    eprintln!("backlog: {} jobs behind a sleeping function", args.backlog);
    for i in 0..system.workers.len() {
        system.scale_down_worker(i).await?;
    }
    let republished_before = system.republished().await;
    let answers = std::sync::Mutex::new(load::Answers::default());
    let submitted = Instant::now();
    let accepted = futures_util::stream::iter(0..args.backlog)
        .map(|n| {
            let (client, answers) = (client.clone(), &answers);
            async move {
                let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
                client
                    .submit(
                        "sleep",
                        &serde_json::json!({"ms": 0}),
                        &format!("backlog-{n}"),
                        n,
                        give_up,
                        answers,
                    )
                    .await
            }
        })
        .buffer_unordered(32)
        .filter(|id| std::future::ready(id.is_some()))
        .count()
        .await;
    let submit_time = submitted.elapsed();
    // Three leases and more: every job was due for the reconciler had it been in doubt.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let waiting = services.ready_messages(queue).await?;
    let republished = system.republished().await - republished_before;
    for i in 0..system.workers.len() {
        system.start_worker(i).await?;
    }
    let drain_time = report::settle(pool, Duration::from_secs(300)).await?;
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT job_id FROM sleep_run GROUP BY job_id HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await?;
    let unfinished: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job WHERE idempotency_key LIKE 'backlog-%' AND state <> 'succeeded'",
    )
    .fetch_one(pool)
    .await?;
    let ok = accepted == args.backlog
        && waiting == args.backlog as u64
        && republished == 0
        && doubled == 0
        && unfinished == 0;
    Ok((
        format!(
            "backlog: {accepted} of {} jobs accepted in {:.1} s; {waiting} waiting in the queue 10 s later (leases of 3 s), \
             {republished} published again; drained in {:.1} s; {unfinished} not succeeded, {doubled} run twice{}",
            args.backlog,
            submit_time.as_secs_f64(),
            drain_time.as_secs_f64(),
            if ok { "" } else { "  <-- FAILED" }
        ),
        ok,
    ))
}
