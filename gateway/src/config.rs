//! The gateway's settings (see `surge_contract::settings` for how they are loaded).

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use surge_contract::job::FunctionName;
use surge_contract::settings::{BrokerSettings, DatabaseSettings, JobSettings};
use surge_contract::telemetry::TelemetrySettings;

/// Unknown top-level sections are ignored (one environment may configure several binaries);
/// unknown keys inside a section are refused, so a typo is caught.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GatewaySettings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub broker: BrokerSettings,
    pub jobs: JobSettings,
    pub telemetry: TelemetrySettings,
    /// The functions this gateway accepts jobs for (a list, or comma-separated text).
    #[serde(deserialize_with = "function_list")]
    pub functions: Vec<FunctionName>,
    pub scaler: ScalerSettings,
    pub dev: DevSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            database: DatabaseSettings::default(),
            broker: BrokerSettings::default(),
            jobs: JobSettings::default(),
            telemetry: TelemetrySettings::default(),
            functions: ["echo", "sleep"]
                .into_iter()
                .filter_map(|n| FunctionName::parse(n).ok())
                .collect(),
            scaler: ScalerSettings::default(),
            dev: DevSettings::default(),
        }
    }
}

/// KEDA's external push scaler, served over gRPC. Off unless `scaler.addr` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalerSettings {
    pub addr: Option<SocketAddr>,
    /// RabbitMQ's management API (`http://user:password@rabbitmq:15672`), where queued and
    /// in-flight counts come from; required with `addr`. A secret.
    pub management_url: Option<SecretString>,
    /// How often queue depths are read.
    pub poll_interval_ms: u64,
    /// How long a publish alone keeps a function active at most: until the management API's
    /// figures count work again (they lag by the broker's `collect_statistics_interval`, 5 s by
    /// default, more on a busy broker), only the publish says a job exists.
    pub publish_hold_ms: u64,
    /// Open `StreamIsActive` streams at most.
    pub max_streams: usize,
    /// Jobs per replica when the trigger's metadata has no `targetSize`.
    pub default_target: f64,
}

impl Default for ScalerSettings {
    fn default() -> Self {
        Self {
            addr: None,
            management_url: None,
            poll_interval_ms: 1_000,
            publish_hold_ms: 30_000,
            max_streams: 1_024,
            default_target: 10.0,
        }
    }
}

impl ScalerSettings {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn publish_hold(&self) -> Duration {
        Duration::from_millis(self.publish_hold_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long `POST /jobs/{function}` waits for the completion before answering 202.
    pub sync_timeout_ms: u64,
    /// Upper bound for a caller's `Prefer: wait=<seconds>`.
    pub max_wait_ms: u64,
    /// Callers waiting at once on this replica; beyond it calls are answered 202 at once.
    pub max_waiters: usize,
    /// Page size limit of `GET /jobs`.
    pub max_page_size: i64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            sync_timeout_ms: 30_000,
            max_wait_ms: 120_000,
            max_waiters: 10_000,
            max_page_size: 100,
        }
    }
}

impl HttpSettings {
    pub fn sync_timeout(&self) -> Duration {
        Duration::from_millis(self.sync_timeout_ms)
    }
}

/// Development only. Until identity lands, a single API key from configuration guards the
/// API and maps to one entity. Off unless `dev.api_key` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevSettings {
    pub api_key: Option<SecretString>,
    pub tenant: String,
    pub account: String,
}

impl Default for DevSettings {
    fn default() -> Self {
        Self {
            api_key: None,
            tenant: "dev".into(),
            account: "dev@localhost".into(),
        }
    }
}

impl GatewaySettings {
    /// Checks what serde cannot, naming the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.functions.is_empty() {
            return Err(
                "functions is empty: list at least one function (SURGE_FUNCTIONS=echo,sleep)"
                    .into(),
            );
        }
        if self.http.max_waiters == 0 {
            return Err("http.max_waiters must be at least 1".into());
        }
        if self.http.max_page_size < 1 {
            return Err("http.max_page_size must be at least 1".into());
        }
        if self.jobs.max_attempts == 0 {
            return Err("jobs.max_attempts must be at least 1".into());
        }
        if self.scaler.addr.is_some() && self.scaler.management_url.is_none() {
            return Err("scaler.addr needs scaler.management_url (SURGE_SCALER__MANAGEMENT_URL=http://user:password@rabbitmq:15672): \
                        queued and in-flight counts come from RabbitMQ's management API"
                .into());
        }
        if !self.scaler.default_target.is_finite() || self.scaler.default_target <= 0.0 {
            return Err("scaler.default_target must be positive".into());
        }
        Ok(())
    }
}

fn function_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FunctionName>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Text(String),
        Items(Vec<String>),
    }
    let names = match List::deserialize(d)? {
        List::Text(text) => text
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        List::Items(items) => items,
    };
    names
        .iter()
        .map(|n| FunctionName::parse(n).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_may_be_comma_separated_text_or_a_list() {
        let s: GatewaySettings =
            serde_json::from_value(serde_json::json!({"functions": "echo, sleep"})).unwrap();
        assert_eq!(s.functions.len(), 2);
        let s: GatewaySettings =
            serde_json::from_value(serde_json::json!({"functions": ["echo"]})).unwrap();
        assert_eq!(s.functions[0].as_str(), "echo");
        let err =
            serde_json::from_value::<GatewaySettings>(serde_json::json!({"functions": "Bad Name"}))
                .unwrap_err();
        assert!(err.to_string().contains("invalid function name"), "{err}");
    }

    #[test]
    fn a_typo_inside_a_section_is_refused() {
        let err =
            serde_json::from_value::<GatewaySettings>(serde_json::json!({"http": {"adr": "x"}}))
                .unwrap_err();
        assert!(err.to_string().contains("adr"), "{err}");
    }
}
