//! `just bench`: a sync `echo` round trip through Surge (HTTP → gateway → RabbitMQ → function →
//! Postgres → completion → reply) against a raw lapin request/reply between two processes
//! (persistent messages with publisher confirms, as Surge must use), measured in the same run
//! on the same machine. Reported as a table with the ratios the targets are stated in.

mod celery;
mod cold;
mod raw;
mod scale;
mod stats;
mod surge;
mod ws_idle;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::stats::Measurement;

#[derive(Debug, Parser)]
#[command(name = "surge-bench")]
struct Args {
    /// Where the release binaries are (`surge`, `surge-echo`).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Seconds measured per scenario (after a warm-up of a quarter of that).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent callers, one scenario each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
    callers: Vec<usize>,
    /// Cold starts measured each way (push and polling); 0 skips them.
    #[arg(long, default_value_t = 5)]
    cold_starts: usize,
    /// Skip the Celery baseline.
    #[arg(long)]
    no_celery: bool,
    /// The `sslmode` of Surge's PostgreSQL connections (`disable`, `prefer`, `require`).
    #[arg(long, default_value = "disable")]
    sslmode: String,
    /// Instead of the comparison: the job store at scale, with this many finished jobs in the
    /// job table against an empty one (`just bench-scale`).
    #[arg(long, default_value_t = 0)]
    scale_rows: u64,
    /// The day partitions those jobs are spread over.
    #[arg(long, default_value_t = 30)]
    scale_days: u32,
    /// Instead of the comparison: the gateway's memory with this many idle websockets.
    #[arg(long, default_value_t = 0)]
    ws_idle: usize,
    #[command(subcommand)]
    role: Option<Role>,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Internal: the raw baseline's responder process.
    Responder {
        #[arg(long)]
        queue: String,
        #[arg(long)]
        prefetch: u16,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Role::Responder { queue, prefetch }) = args.role {
        return raw::respond(&queue, prefetch).await;
    }
    let duration = Duration::from_secs(args.seconds);
    if args.scale_rows > 0 {
        return at_scale(&args, duration).await;
    }
    if args.ws_idle > 0 {
        return ws_idle::run(&args.bin_dir, args.ws_idle).await;
    }
    let max_callers = args.callers.iter().copied().max().unwrap_or(1);

    let mut rows: Vec<(String, usize, Measurement)> = Vec::new();
    let raw_bench = raw::RawBench::start(max_callers).await?;
    for &callers in &args.callers {
        rows.push((
            "raw lapin request/reply".into(),
            callers,
            raw_bench.measure(callers, duration).await,
        ));
    }
    raw_bench.stop().await;

    if !args.no_celery {
        let celery = celery::CeleryBench::start(4).await?;
        rows.push((
            "celery echo, one at a time".into(),
            1,
            celery.one_at_a_time(duration).await?,
        ));
        rows.push((
            "celery echo, pipelined".into(),
            max_callers,
            celery.pipelined(duration, max_callers).await?,
        ));
        celery.stop();
    }

    let surge_bench = surge::SurgeBench::start(&args.bin_dir, max_callers, &args.sslmode).await?;
    for &callers in &args.callers {
        // What `scripts/profile-bench.sh` waits for to sample inside the measured window.
        eprintln!(
            "surge: {callers} callers, measured after a warm-up of {} s",
            duration.as_secs_f64() / 4.0
        );
        rows.push((
            "surge sync echo (HTTP)".into(),
            callers,
            surge_bench.measure(callers, duration).await,
        ));
    }
    surge_bench.stop().await;

    let mut report = stats::report(&rows, duration, &args.sslmode);
    if args.cold_starts > 0 {
        let (pushed, polling) = cold::measure(&args.bin_dir, args.cold_starts).await?;
        report += &cold::report(&pushed, &polling);
    }
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, report.as_bytes())?;
    Ok(())
}

/// `--scale-rows`: the job path and reads on an empty job table and a full one, same run.
async fn at_scale(args: &Args, duration: Duration) -> anyhow::Result<()> {
    use surge_tests::{TestDatabase, unique_name};
    let callers = args.callers.iter().copied().max().unwrap_or(64);
    let empty = TestDatabase::migrated(&unique_name()).await;
    let (empty, db) = scale::measure(
        "empty",
        &args.bin_dir,
        empty,
        callers,
        duration,
        &args.sslmode,
    )
    .await?;
    TestDatabase::drop_blocking(&db.name);
    eprintln!(
        "filling {} jobs over {} days…",
        args.scale_rows, args.scale_days
    );
    let (full, fill) = scale::filled(args.scale_rows, args.scale_days).await?;
    let label = format!("{} finished jobs", args.scale_rows);
    let (full, db) = scale::measure(
        &label,
        &args.bin_dir,
        full,
        callers,
        duration,
        &args.sslmode,
    )
    .await?;
    let dropped = scale::drop_oldest(&db).await?;
    TestDatabase::drop_blocking(&db.name);
    let report = scale::report(
        &[empty, full],
        callers,
        (args.scale_rows, args.scale_days),
        fill,
        dropped,
        &args.sslmode,
    );
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, report.as_bytes())?;
    Ok(())
}
