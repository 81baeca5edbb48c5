//! Latency samples into throughput and percentiles, and the report table.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Measurement {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// Sorted latencies of the successful requests.
    pub latencies: Vec<Duration>,
}

impl Measurement {
    pub fn new(mut latencies: Vec<Duration>, errors: usize, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        Self {
            requests: latencies.len(),
            errors,
            elapsed,
            latencies,
        }
    }

    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The markdown report: one row per scenario, then the ratios against the targets.
pub fn report(rows: &[(String, usize, Measurement)], duration: Duration) -> String {
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
            ms(m.percentile(50.0)),
            ms(m.percentile(99.0))
        );
    }
    let find = |prefix: &str, callers: usize| {
        rows.iter()
            .find(|(n, c, _)| n.starts_with(prefix) && *c == callers)
            .map(|(_, _, m)| m)
    };
    let max = rows.iter().map(|(_, c, _)| *c).max().unwrap_or(1);
    out += &format!("\n{}s measured per scenario.\n\n", duration.as_secs());
    if let (Some(s), Some(r)) = (find("surge", max), find("raw", max)) {
        let ratio = s.throughput() / r.throughput();
        out += &format!(
            "- throughput at {max} callers: Surge / raw = {:.1}% (target ≥ 35%: {})\n",
            ratio * 100.0,
            if ratio >= 0.35 { "met" } else { "MISSED" }
        );
    }
    if let (Some(s), Some(r)) = (find("surge", 1), find("raw", 1)) {
        let ratio = s.percentile(50.0).as_secs_f64() / r.percentile(50.0).as_secs_f64();
        out += &format!(
            "- p50 at 1 caller: Surge / raw = {ratio:.2}× (target ≤ 3×: {})\n",
            if ratio <= 3.0 { "met" } else { "MISSED" }
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
        assert_eq!(m.percentile(50.0), Duration::from_millis(51));
        assert_eq!(m.percentile(99.0), Duration::from_millis(99));
        assert_eq!(m.throughput(), 50.0);
    }
}
