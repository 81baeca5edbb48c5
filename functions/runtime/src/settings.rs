//! A function process's settings (see `surge_contract::config` for how they are loaded).

use serde::Deserialize;
use std::time::Duration;
use surge_contract::config::{BrokerSettings, DatabaseSettings, JobSettings};
use surge_contract::telemetry::TelemetrySettings;

/// Unknown top-level sections are ignored (one environment may configure several binaries);
/// unknown keys inside a section are refused, so a typo is caught.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuntimeSettings {
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub jobs: JobSettings,
    pub telemetry: TelemetrySettings,
    pub function: FunctionSettings,
}

/// Where jobs come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Consume the function's queue (KEDA deployments, `just up`).
    #[default]
    Amqp,
    /// Receive CloudEvents over HTTP (Knative Serving, fed by a RabbitmqSource or a Trigger).
    Http,
}

/// How this function runs its jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionSettings {
    pub mode: Mode,
    /// Serves `/healthz` and `/readyz` (and, in `http` mode, the CloudEvents receiver).
    /// Required in `http` mode; off by default in `amqp` mode.
    pub http_addr: Option<std::net::SocketAddr>,
    /// Largest CloudEvent accepted over HTTP.
    pub body_limit_bytes: usize,
    /// Jobs run at once by one process; also the AMQP prefetch.
    pub concurrency: u16,
    /// After SIGTERM, how long in-flight jobs may take to finish before they are handed back
    /// to the queue. Keep it below the pod's `terminationGracePeriodSeconds`.
    pub grace_period_ms: u64,
    /// A handler running longer than this fails its attempt (retryable).
    pub timeout_ms: u64,
    /// Wait before a failed attempt is handed back for another try, doubled per attempt.
    pub retry_delay_ms: u64,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        Self {
            mode: Mode::Amqp,
            http_addr: None,
            body_limit_bytes: 1024 * 1024,
            concurrency: 8,
            grace_period_ms: 30_000,
            timeout_ms: 60_000,
            retry_delay_ms: 200,
        }
    }
}

impl FunctionSettings {
    pub fn grace_period(&self) -> Duration {
        Duration::from_millis(self.grace_period_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The delay before attempt `attempt + 1`, capped at 30 s.
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let factor = 2_u64.saturating_pow(u32::try_from(attempt.saturating_sub(1)).unwrap_or(0));
        Duration::from_millis(self.retry_delay_ms.saturating_mul(factor).min(30_000))
    }

    /// The longest a job of this function can live once it is taken: every attempt running
    /// to its timeout, with the retry delays between them.
    pub fn longest_life(&self, max_attempts: u32) -> Duration {
        let attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        (1..=attempts).fold(Duration::ZERO, |life, attempt| {
            life + self.timeout() + self.retry_delay(attempt)
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("function.concurrency must be at least 1".into());
        }
        if self.mode == Mode::Http && self.http_addr.is_none() {
            return Err(
                "function.mode = http needs function.http_addr (SURGE_FUNCTION__HTTP_ADDR=0.0.0.0:8080)".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_longest_life_is_every_attempt_to_its_timeout_with_the_delays() {
        let s = FunctionSettings {
            timeout_ms: 1_000,
            retry_delay_ms: 100,
            ..Default::default()
        };
        // 3 × 1 s + 100 ms + 200 ms + 400 ms.
        assert_eq!(s.longest_life(3), Duration::from_millis(3_700));
    }

    #[test]
    fn retry_delays_double_and_are_capped() {
        let s = FunctionSettings {
            retry_delay_ms: 100,
            ..Default::default()
        };
        assert_eq!(s.retry_delay(1), Duration::from_millis(100));
        assert_eq!(s.retry_delay(3), Duration::from_millis(400));
        assert_eq!(s.retry_delay(40), Duration::from_millis(30_000));
    }
}
