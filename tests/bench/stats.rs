//! Latency samples into throughput and percentiles, and the report table.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Measurement {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
}

impl Measurement {
    /// From the latencies of the successful requests.
    pub fn new(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        Self {
            requests: latencies.len(),
            errors,
            elapsed,
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
        }
    }

    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// The `p`th percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The markdown report: one row per scenario, then the ratios against the targets (all
/// measured in the same run: the machine's speed cancels out).
pub fn report(rows: &[(String, usize, Measurement)], duration: Duration, sslmode: &str) -> String {
    let mut out = String::from(
        "| scenario | callers | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, callers, m) in rows {
        out += &format!(
            "| {name} | {callers} | {} | {} | {:.0} | {} | {} |\n",
            m.requests,
            m.errors,
            m.throughput(),
            ms(m.p50),
            ms(m.p99)
        );
    }
    let find = |prefix: &str, callers: usize| {
        rows.iter()
            .find(|(n, c, _)| n.starts_with(prefix) && *c == callers)
            .map(|(_, _, m)| m)
    };
    let max = rows
        .iter()
        .filter(|(n, _, _)| n.starts_with("surge"))
        .map(|(_, c, _)| *c)
        .max()
        .unwrap_or(1);
    out += &format!(
        "\n{}s measured per scenario; Surge's PostgreSQL connections with sslmode={sslmode}.\n\n",
        duration.as_secs()
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    if let (Some(s), Some(r)) = (find("surge", max), find("raw", max)) {
        let ratio = s.throughput() / r.throughput();
        out += &format!(
            "- throughput at {max} callers: Surge / raw = {:.1}% (target ≥ 25%: {})\n",
            ratio * 100.0,
            verdict(ratio >= 0.25)
        );
    }
    if let (Some(s), Some(c)) = (find("surge", max), find("celery echo, pipelined", max)) {
        let ratio = s.throughput() / c.throughput();
        out += &format!(
            "- throughput at {max} callers: Surge / Celery pipelined = {ratio:.2}× (target ≥ 3×: {})\n",
            verdict(ratio >= 3.0)
        );
    }
    if let (Some(s), Some(r)) = (find("surge", 1), find("raw", 1)) {
        let ratio = s.p50.as_secs_f64() / r.p50.as_secs_f64();
        out += &format!(
            "- p50 at 1 caller: Surge / raw = {ratio:.2}× (target ≤ 2.5×: {})\n",
            verdict(ratio <= 2.5)
        );
    }
    if let (Some(s), Some(c)) = (find("surge", 1), find("celery echo, one at a time", 1)) {
        out += &format!(
            "- p50 at 1 caller: Surge {} ms, Celery {} ms (target: below Celery's: {})\n",
            ms(s.p50),
            ms(c.p50),
            verdict(s.p50 < c.p50)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_sorted_samples() {
        let m = Measurement::new(
            (1..=100).rev().map(Duration::from_millis).collect(),
            0,
            Duration::from_secs(2),
        );
        assert_eq!(m.p50, Duration::from_millis(51));
        assert_eq!(m.p99, Duration::from_millis(99));
        assert_eq!(m.throughput(), 50.0);
    }
}
