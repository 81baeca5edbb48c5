//! The job store at scale: the same job path and reads on an empty database and on one whose
//! job table holds tens of millions of finished jobs over many day partitions (generated in
//! SQL, a partition at a time), in the same run; then how long dropping a day's partition
//! takes. What `docs/BENCHMARKS.md` ("At scale") reports.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Days, Utc};
use surge_gateway::store::partitions;
use surge_tests::{TestDatabase, unique_name};

use crate::stats::Measurement;
use crate::surge::SurgeBench;

/// One database's figures.
pub struct Figures {
    pub label: String,
    pub echo: Measurement,
    pub get_one: Measurement,
    pub list: Measurement,
}

/// A database with `rows` finished jobs over `days` day partitions before today, owned by
/// a thousand entities and the benchmark's own (the development key's); how long filling took.
pub async fn filled(rows: u64, days: u32) -> anyhow::Result<(TestDatabase, Duration)> {
    let db = TestDatabase::migrated(&unique_name()).await;
    let pool = &db.pool;
    let started = Instant::now();
    // The days before today are the first partition's (it covers all ids up to tonight);
    // a database that has run for weeks has day partitions there instead.
    let first = partitions::list(pool)
        .await?
        .into_iter()
        .next()
        .context("no partition")?;
    partitions::drop(pool, &first).await?;
    let today = Utc::now().date_naive();
    let midnight = today.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    partitions::create(pool, midnight, midnight + chrono::Duration::days(1)).await?;
    let owners: Vec<uuid::Uuid> = {
        let mut owners =
            vec![surge_gateway::store::entities::ensure(pool, "dev", "dev@localhost").await?];
        for n in 0..999 {
            owners.push(
                surge_gateway::store::entities::ensure(
                    pool,
                    "scale",
                    &format!("user{n}@scale.test"),
                )
                .await?,
            );
        }
        owners
    };
    let per_day = rows / u64::from(days.max(1));
    for day in (1..=days).rev() {
        let start = (today - Days::new(u64::from(day)))
            .and_hms_opt(0, 0, 0)
            .context("midnight")?
            .and_utc();
        let end = start + chrono::Duration::days(1);
        partitions::create(pool, start, end).await?;
        // Ids made of the creation time and random bits, as UUIDv7 is; creation spread over
        // the day; every thousandth job the benchmark's entity's.
        sqlx::query(
            "INSERT INTO job (id, owner_id, function, state, attempts, event_source, event_id,
                              input, result, created_at, started_at, finished_at, updated_at)
             SELECT id, owners[1 + (n % 1000)], 'echo', 'succeeded', 1, '/surge/gateway', id::text,
                    '{\"hello\":\"world\"}', '{\"hello\":\"world\"}', at, at, at, at
             FROM (
                 SELECT n, at, owners,
                        (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0')
                         || '7' || substr(md5(n::text || $4::text), 1, 3)
                         || '8' || substr(md5(n::text || $4::text), 4, 15))::uuid AS id
                 FROM generate_series(0, $1::bigint - 1) AS n,
                      LATERAL (SELECT $2::timestamptz + (n * 86400000 / $1::bigint) * interval '1 ms' AS at) t,
                      (SELECT $3::uuid[] AS owners) o
             ) g",
        )
        .bind(per_day as i64)
        .bind(start)
        .bind(&owners)
        .bind(i64::from(day))
        .execute(pool)
        .await
        .with_context(|| format!("filling the partition of {start}"))?;
    }
    // Measured as a database that has settled: statistics made, the fill's WAL written out.
    sqlx::query("VACUUM ANALYZE job").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok((db, started.elapsed()))
}

/// The job path at `callers` and the two reads, on `db`.
pub async fn measure(
    label: &str,
    bin_dir: &std::path::Path,
    db: TestDatabase,
    callers: usize,
    duration: Duration,
    sslmode: &str,
) -> anyhow::Result<(Figures, TestDatabase)> {
    let name = db.name.clone();
    let bench = SurgeBench::start_on(bin_dir, callers, sslmode, db).await?;
    let echo = bench.measure(callers, duration).await;
    let id = bench.one_job().await?;
    let get_one = bench.measure_get(&format!("/jobs/{id}"), duration).await;
    let list = bench.measure_get("/jobs?limit=20", duration).await;
    let pool = bench.pool().clone();
    bench.stop_keeping_database().await;
    let db = TestDatabase::reopen(&name, pool);
    Ok((
        Figures {
            label: label.to_owned(),
            echo,
            get_one,
            list,
        },
        db,
    ))
}

/// How long dropping the oldest day's partition takes (detach concurrently, drop), with the
/// rows it held.
pub async fn drop_oldest(db: &TestDatabase) -> anyhow::Result<(Duration, i64)> {
    let oldest = partitions::list(&db.pool)
        .await?
        .into_iter()
        .next()
        .context("no partition")?;
    let rows = partitions::estimated_rows(&db.pool, &oldest).await?;
    let started = Instant::now();
    partitions::drop(&db.pool, &oldest).await?;
    Ok((started.elapsed(), rows))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub fn report(
    figures: &[Figures],
    callers: usize,
    (rows, days): (u64, u32),
    fill: Duration,
    dropped: (Duration, i64),
    sslmode: &str,
) -> String {
    let mut out = format!(
        "| job table | sync echo at {callers} callers (req/s) | echo p50 (ms) | GET /jobs/{{id}} p50 / p99 (ms) | GET /jobs p50 / p99 (ms) |\n|---|---:|---:|---:|---:|\n"
    );
    for f in figures {
        out += &format!(
            "| {} | {:.0} | {} | {} / {} | {} / {} |\n",
            f.label,
            f.echo.throughput(),
            ms(f.echo.p50),
            ms(f.get_one.p50),
            ms(f.get_one.p99),
            ms(f.list.p50),
            ms(f.list.p99),
        );
    }
    if let [empty, full] = figures {
        out += &format!(
            "\nFull / empty, same run: throughput {:.2}×, GET /jobs/{{id}} p50 {:.2}×, GET /jobs p50 {:.2}×.\n",
            full.echo.throughput() / empty.echo.throughput(),
            full.get_one.p50.as_secs_f64() / empty.get_one.p50.as_secs_f64(),
            full.list.p50.as_secs_f64() / empty.list.p50.as_secs_f64(),
        );
    }
    out += &format!(
        "\n{rows} finished jobs over {days} day partitions, filled in {:.0} s (generated in SQL); \
         dropping a day's partition ({} rows) took {} ms. PostgreSQL sslmode={sslmode}.\n",
        fill.as_secs_f64(),
        dropped.1,
        ms(dropped.0),
    );
    out
}
