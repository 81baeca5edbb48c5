//! Settings every Surge binary shares, and the one way they are loaded: defaults, then an
//! optional TOML file (`--config` / `SURGE_CONFIG`), then the OpenTelemetry SDK's standard
//! variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_SERVICE_NAME`: what the OpenTelemetry operator injects), then `SURGE_`-prefixed
//! environment variables with `__` between levels (`SURGE_DATABASE__URL`), which win. Loaded
//! once in `main` and passed down; nothing else reads the environment.

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Loads `T` from its defaults, the optional file and the environment.
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, Box<figment::Error>> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    figment
        .merge(standard_otel(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "telemetry.otlp_endpoint",
        ))
        // The per-signal variable is more specific than the general one.
        .merge(standard_otel(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "telemetry.otlp_endpoint",
        ))
        .merge(standard_otel("OTEL_SERVICE_NAME", "telemetry.service_name"))
        .merge(Env::prefixed("SURGE_").split("__"))
        .extract()
        .map_err(Box::new)
}

/// One OpenTelemetry SDK variable, read as the setting `key`.
fn standard_otel(variable: &'static str, key: &'static str) -> Env {
    Env::raw().only(&[variable]).map(move |_| key.into())
}

/// Postgres.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`; a secret, since it may hold a password.
    pub url: SecretString,
    /// Upper bound of this process's pool: the process's share of `max_connections`.
    pub max_connections: u32,
    /// How long a query waits for a free pooled connection before failing.
    pub acquire_timeout_ms: u64,
    /// Server-side limit on any single statement.
    pub statement_timeout_ms: u64,
    /// How long a statement waits for a row lock (a job another delivery is running) before
    /// failing with `lock_not_available`, which callers retry.
    pub lock_timeout_ms: u64,
    /// A streaming replica for the reads that tolerate lag (the gateway's listings and
    /// operations figures); a secret like `url`. Never for reads of one's own writes.
    pub replica_url: Option<SecretString>,
    /// The replica serves only while it is at most this far behind; else the primary does.
    pub replica_max_lag_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/surge"),
            max_connections: 10,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            lock_timeout_ms: 2_000,
            replica_url: None,
            replica_max_lag_ms: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("database.url is not a valid Postgres URL: {0}")]
    BadUrl(#[source] sqlx::Error),
    #[error("cannot connect to Postgres at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
}

impl DatabaseSettings {
    pub fn connect_options(&self) -> Result<PgConnectOptions, DatabaseError> {
        self.options_of(&self.url)
    }

    fn options_of(&self, url: &SecretString) -> Result<PgConnectOptions, DatabaseError> {
        let options: PgConnectOptions =
            url.expose_secret().parse().map_err(DatabaseError::BadUrl)?;
        let statement = format!("{}ms", self.statement_timeout_ms);
        let lock = format!("{}ms", self.lock_timeout_ms);
        Ok(options.options([
            ("statement_timeout", statement.as_str()),
            ("lock_timeout", lock.as_str()),
            ("TimeZone", "UTC"),
            // Every statement is planned for its own parameters. A generic plan, which a
            // prepared statement settles on after five runs, is made once for all partitions
            // of `job`: one made while a partition was empty (a fresh database; each day's
            // partition until autovacuum first analyzes it) scans it sequentially for every
            // claim and result, however large it grows, until something invalidates the plan.
            // A custom plan also prunes the partitions a job id cannot be in before running.
            ("plan_cache_mode", "force_custom_plan"),
        ]))
    }

    /// Opens the pool and checks that one connection works. The pool reconnects by itself later
    /// when the database drops, so callers only need to retry failed statements.
    pub async fn connect(&self) -> Result<PgPool, DatabaseError> {
        let options = self.connect_options()?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .connect_with(options)
            .await
            .map_err(|source| DatabaseError::Connect { target, source })
    }
}

impl DatabaseSettings {
    /// A pool of one connection on the primary for `LISTEN` (notifications arrive on the
    /// connection that listens, which must stay open): connected lazily, never recycled.
    pub fn listener_pool(&self) -> Result<PgPool, DatabaseError> {
        Ok(PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms))
            .connect_lazy_with(self.connect_options()?))
    }

    /// The replica's pool, when one is configured: connected lazily (a replica that is down at
    /// start must not stop the process; reads fall back to the primary), at most a quarter of
    /// the primary's connections.
    pub fn replica(&self) -> Result<Option<PgPool>, DatabaseError> {
        let Some(url) = &self.replica_url else {
            return Ok(None);
        };
        let options = self.options_of(url)?;
        Ok(Some(
            PgPoolOptions::new()
                .max_connections((self.max_connections / 4).max(1))
                .acquire_timeout(Duration::from_millis(self.acquire_timeout_ms.min(2_000)))
                .connect_lazy_with(options),
        ))
    }
}

/// Whether the database answers a trivial query within 2 s: the readiness check every
/// process's `/readyz` makes.
pub async fn database_answers(pool: &PgPool) -> bool {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(_))
    )
}

/// RabbitMQ.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    /// `amqp://user:password@host:port/vhost`; a secret. A cluster's nodes may be listed,
    /// separated by commas: connections go to the first that answers, and a reconnect after a
    /// lost connection starts with the next.
    pub url: SecretString,
    /// Put before every exchange and queue name, so environments and tests share a broker.
    pub prefix: String,
    pub connect_timeout_ms: u64,
    /// How long a publish waits for the broker's confirm.
    pub publish_timeout_ms: u64,
    /// Reconnection backoff: first delay and ceiling.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// The broker users gateways connect as (comma-separated). When set, a function runs an
    /// event claiming a gateway's source only if RabbitMQ vouches (its validated `user_id`)
    /// that one of them published it. Empty: whoever can publish to the jobs exchange.
    pub gateway_users: String,
    /// The broker users functions connect as (comma-separated). When set, a gateway takes a
    /// completion (a reply, a websocket's feed, a settings change) only from them. Empty:
    /// from whoever can publish to the events exchange or a reply queue.
    pub function_users: String,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: String::new(),
            connect_timeout_ms: 5_000,
            publish_timeout_ms: 5_000,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
            gateway_users: String::new(),
            function_users: String::new(),
        }
    }
}

impl BrokerSettings {
    /// The nodes' URLs, in the order given.
    pub fn urls(&self) -> Vec<SecretString> {
        self.url
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| SecretString::from(u.to_owned()))
            .collect()
    }

    /// The broker user this process connects as (the first URL's; `guest` when it names
    /// none): what RabbitMQ checks a published message's `user_id` against.
    pub fn user(&self) -> Option<String> {
        self.first_url()
            .expose_secret()
            .parse::<lapin::uri::AMQPUri>()
            .ok()
            .map(|uri| uri.authority.userinfo.username)
    }

    /// Who may publish gateway-sourced job events (`gateway_users`).
    pub fn gateway_senders(&self) -> crate::broker::Senders {
        crate::broker::Senders::parse(&self.gateway_users)
    }

    /// Who may publish completions (`function_users`).
    pub fn function_senders(&self) -> crate::broker::Senders {
        crate::broker::Senders::parse(&self.function_users)
    }

    /// The first node's URL (what the management API's vhost is read from).
    pub fn first_url(&self) -> SecretString {
        self.urls()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.url.clone())
    }

    /// Checks that every listed URL is an AMQP URL (without saying the secret).
    pub fn validate(&self) -> Result<(), String> {
        let urls = self.urls();
        if urls.is_empty() {
            return Err("broker.url is empty: give amqp://user:password@host:port/vhost".into());
        }
        for (n, url) in urls.iter().enumerate() {
            if url.expose_secret().parse::<lapin::uri::AMQPUri>().is_err() {
                return Err(format!(
                    "broker.url: address {} of {} is not an AMQP URL (amqp://user:password@host:port/vhost)",
                    n + 1,
                    urls.len()
                ));
            }
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
}

/// Job rules every process must agree on.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Runs of one job before it is marked `dead`. Also sets the queues' delivery limit, so it
    /// must be the same for the gateway and every function.
    pub max_attempts: u32,
    /// Finished jobs are kept at least this long after they were created, then dropped with
    /// their partition. The `Idempotency-Key` promise lasts as long.
    pub retention_s: u64,
    /// Dead jobs are kept at least this long after they died (their partition waits).
    pub dead_retention_s: u64,
    /// Longer retentions for some functions' jobs (a partition holds every function's jobs
    /// of its time, so it waits for the longest): `{ resize = 2592000 }`.
    pub retention_by_function: std::collections::BTreeMap<String, u64>,
    /// The time one partition of the job table covers.
    pub partition_hours: u32,
    /// How far ahead partitions are made (an alert fires when less than two days remain).
    pub partitions_ahead_hours: u32,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            retention_s: 7 * 86_400,
            dead_retention_s: 30 * 86_400,
            retention_by_function: std::collections::BTreeMap::new(),
            partition_hours: 24,
            partitions_ahead_hours: 7 * 24,
        }
    }
}

impl JobSettings {
    /// How long a partition must wait past its end before it may go: the longest retention of
    /// any function's finished jobs.
    pub fn partition_retention(&self) -> Duration {
        let longest = self
            .retention_by_function
            .values()
            .copied()
            .fold(self.retention_s, u64::max);
        Duration::from_secs(longest)
    }

    pub fn dead_retention(&self) -> Duration {
        Duration::from_secs(self.dead_retention_s)
    }

    /// Checks the partition sizes and that a retention outlives a job (`longest_life`: the
    /// longest a job may run, counted by the caller that knows it).
    pub fn validate(&self, longest_life: Duration) -> Result<(), String> {
        if self.partition_hours == 0 || self.partitions_ahead_hours < self.partition_hours {
            return Err(format!(
                "jobs.partition_hours ({}) must be at least 1 and jobs.partitions_ahead_hours ({}) at least as many",
                self.partition_hours, self.partitions_ahead_hours
            ));
        }
        let shortest = self
            .retention_by_function
            .values()
            .copied()
            .fold(self.retention_s, u64::min);
        if Duration::from_secs(shortest) <= longest_life {
            return Err(format!(
                "jobs.retention_s ({shortest} s) is not longer than a job's longest possible life \
                 ({} s: function.timeout_ms × jobs.max_attempts and the retry delays): a job could \
                 be dropped while it still runs; raise the retention or lower the timeout",
                longest_life.as_secs()
            ));
        }
        if self.dead_retention_s < self.retention_s {
            return Err(format!(
                "jobs.dead_retention_s ({}) must be at least jobs.retention_s ({})",
                self.dead_retention_s, self.retention_s
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct WithTelemetry {
        #[serde(default)]
        telemetry: crate::telemetry::TelemetrySettings,
    }

    #[test]
    fn a_retention_shorter_than_a_jobs_longest_life_is_refused_naming_both() {
        let jobs = super::JobSettings {
            retention_s: 3_600,
            ..Default::default()
        };
        let error = jobs
            .validate(std::time::Duration::from_secs(7_200))
            .unwrap_err();
        assert!(error.contains("jobs.retention_s (3600 s)"), "{error}");
        assert!(error.contains("7200 s"), "{error}");
        assert!(jobs.validate(std::time::Duration::from_secs(60)).is_ok());
        let shorter_by_function = super::JobSettings {
            retention_by_function: [("resize".to_owned(), 30)].into(),
            ..Default::default()
        };
        assert!(
            shorter_by_function
                .validate(std::time::Duration::from_secs(60))
                .is_err()
        );
        assert_eq!(
            super::JobSettings {
                retention_by_function: [("resize".to_owned(), 30 * 86_400)].into(),
                ..Default::default()
            }
            .partition_retention(),
            std::time::Duration::from_secs(30 * 86_400),
            "a partition waits for the longest"
        );
    }

    #[test]
    fn a_broker_url_may_list_a_clusters_nodes() {
        let settings = super::BrokerSettings {
            url: "amqp://u:p@n1:5681/%2f, amqp://u:p@n2:5682/%2f,amqp://u:p@n3:5683/%2f".into(),
            ..Default::default()
        };
        use secrecy::ExposeSecret as _;
        let urls: Vec<String> = settings
            .urls()
            .iter()
            .map(|u| u.expose_secret().to_owned())
            .collect();
        assert_eq!(urls.len(), 3);
        assert_eq!(urls[1], "amqp://u:p@n2:5682/%2f");
        assert!(settings.validate().is_ok());
        let bad = super::BrokerSettings {
            url: "amqp://u:p@n1:5681/%2f,http://n2".into(),
            ..Default::default()
        };
        let error = bad.validate().unwrap_err();
        assert!(error.contains("address 2 of 2"), "{error}");
        assert!(!error.contains("u:p"), "the secret is never said: {error}");
    }

    #[test]
    // figment's Jail takes a closure returning its own (large) error type.
    #[allow(clippy::result_large_err)]
    fn the_opentelemetry_sdks_variables_are_read_and_surges_own_win() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
            jail.set_env("OTEL_SERVICE_NAME", "checkout-gateway");
            let loaded: WithTelemetry = super::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                loaded.telemetry.otlp_endpoint.as_deref(),
                Some("http://collector:4317")
            );
            assert_eq!(
                loaded.telemetry.service_name.as_deref(),
                Some("checkout-gateway")
            );
            jail.set_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317");
            let loaded: WithTelemetry = super::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                loaded.telemetry.otlp_endpoint.as_deref(),
                Some("http://traces:4317")
            );
            jail.set_env("SURGE_TELEMETRY__OTLP_ENDPOINT", "http://own:4317");
            let loaded: WithTelemetry = super::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                loaded.telemetry.otlp_endpoint.as_deref(),
                Some("http://own:4317")
            );
            Ok(())
        });
    }

    use super::*;

    #[test]
    fn statement_timeout_and_utc_are_set_on_every_connection() {
        let options = DatabaseSettings::default().connect_options().unwrap();
        let debug = format!("{options:?}");
        assert!(debug.contains("statement_timeout"), "{debug}");
        assert!(debug.contains("UTC"), "{debug}");
    }

    #[test]
    fn a_bad_url_names_the_setting() {
        let settings = DatabaseSettings {
            url: SecretString::from("postgres://host:notaport/db"),
            ..Default::default()
        };
        let err = settings.connect_options().unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
    }
}
