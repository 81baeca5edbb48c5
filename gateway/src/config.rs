//! The gateway's settings (see `surge_contract::config` for how they are loaded).

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer};
use surge_contract::config::{BrokerSettings, DatabaseSettings, JobSettings};
use surge_contract::job::FunctionName;
use surge_contract::telemetry::TelemetrySettings;
use url::Url;

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
    /// The OIDC providers users log in with, one per tenant.
    pub tenants: Vec<TenantSettings>,
    pub identity: IdentitySettings,
    /// Per-entity rate limits.
    pub limits: crate::auth::LimitSettings,
    pub ws: crate::ws::WsSettings,
    pub delivery: DeliverySettings,
    pub maintenance: crate::maintenance::MaintenanceSettings,
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
            tenants: Vec::new(),
            identity: IdentitySettings::default(),
            limits: crate::auth::LimitSettings::default(),
            ws: crate::ws::WsSettings::default(),
            delivery: DeliverySettings::default(),
            maintenance: crate::maintenance::MaintenanceSettings::default(),
        }
    }
}

/// `delivery.*`: how the job record drives delivery (docs/jobs.md "Delivery").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// A job whose publish is still unconfirmed this long after it was recorded is published
    /// again by the reconciler. Longer than a request's own publish and resend can take.
    pub lease_ms: u64,
    /// How often each replica's reconciler looks for such jobs.
    pub reconcile_interval_ms: u64,
    /// Jobs one pass of one replica takes at most.
    pub batch: i64,
    /// The longest wait between two publishes of a job that keeps failing (the wait doubles
    /// from `lease_ms`).
    pub max_backoff_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            reconcile_interval_ms: 5_000,
            batch: 500,
            max_backoff_ms: 300_000,
        }
    }
}

impl DeliverySettings {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_millis(self.reconcile_interval_ms.max(1))
    }

    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms)
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
    /// A client must send a request's headers within this (a slow client holds no connection
    /// for long).
    pub header_read_timeout_ms: u64,
    /// A request is answered within this, or `503` (longer than any wait: `http.max_wait_ms`).
    pub request_timeout_ms: u64,
    /// Callers waiting at once on this replica; beyond it calls are answered 202 at once.
    pub max_waiters: usize,
    /// Page size limit of `GET /jobs`.
    pub max_page_size: i64,
    /// Serve `/metrics` on this address instead of `addr` (so a public ingress to `addr`
    /// never exposes them); unset: `/metrics` is on `addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// How often server settings are reloaded even without a change event (a safety net:
    /// changes normally reach every replica at once through `surge.events`).
    pub settings_refresh_ms: u64,
    /// Proxies (addresses or networks) whose `X-Forwarded-For` names the client: the
    /// Ingress controller's. Empty: the client is the connection's peer.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            sync_timeout_ms: 30_000,
            max_wait_ms: 120_000,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 150_000,
            max_waiters: 10_000,
            max_page_size: 100,
            settings_refresh_ms: 30_000,
            metrics_addr: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpSettings {
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn sync_timeout(&self) -> Duration {
        Duration::from_millis(self.sync_timeout_ms)
    }
}

/// One tenant: an OpenID provider and this gateway's client registration with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// The tenant's name in URLs (`/login?tenant=`) and in the database; never change it.
    pub name: String,
    /// The provider's issuer URL, exactly as its discovery document states it.
    pub issuer: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Scopes asked for; `openid` is always sent. Add `offline_access` for refresh tokens.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// This gateway's `/callback` as registered with the provider. Cookies are `Secure` when
    /// it is https.
    pub redirect_url: Url,
    /// Members of this group (the ID token's `groups` claim) are admins.
    #[serde(default)]
    pub admin_group: Option<String>,
    /// Email domains this provider is authoritative for: their addresses are trusted even
    /// without `email_verified` (a company's own directory, say).
    #[serde(default)]
    pub authoritative_domains: Vec<String>,
    /// Also accept this provider's JWTs (ID tokens, JWT access tokens for this client) as
    /// bearer credentials.
    #[serde(default)]
    pub accept_bearer: bool,
    /// With `accept_bearer`: the audience (`aud`) an RFC 9068 access token (`typ: at+jwt`)
    /// must name to be accepted here: the resource indicator this gateway is registered as at
    /// the provider. Unset: the client id.
    #[serde(default)]
    pub access_token_audience: Option<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

/// How logins and issued keys behave, for every tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// Timeout of every call to a provider (discovery, keys, code exchange).
    pub provider_timeout_ms: u64,
    /// How long a provider's discovery document and keys are reused.
    pub discovery_ttl_s: u64,
    /// A token signed with an unknown key makes the gateway fetch the provider's keys again,
    /// at most this often (so made-up key ids cannot hammer the provider).
    pub key_refresh_min_ms: u64,
    /// How long a started login may take before its state is refused.
    pub flow_ttl_s: u64,
    /// Lifetime of a key minted by `/token` when the caller does not ask for one (0 = never
    /// expires).
    pub default_key_seconds: i64,
    /// Lifetime of the token `/login` returns when the provider does not say.
    pub login_token_seconds: i64,
    /// The longest lifetime a key may be given through the API, in seconds (0 = no maximum:
    /// keys may be made to never expire). `surge key create` is an operator's tool and
    /// is not bound by it.
    pub max_key_seconds: i64,
    /// A credential makes its holder an admin for this long after the login that issued it
    /// (its owner's groups as of then); a new login renews it. Leaving the admin group thus
    /// takes effect at the latest this long after.
    pub admin_max_age_seconds: i64,
    /// Tenants whose admins are platform operators: they write server settings and see the
    /// dead jobs no tenant owns. Empty: the admins of the only tenant (or the development
    /// key's) when at most one is configured; nobody's when several are.
    pub operator_tenants: Vec<String>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            provider_timeout_ms: 5_000,
            discovery_ttl_s: 3_600,
            key_refresh_min_ms: 10_000,
            flow_ttl_s: 600,
            default_key_seconds: 30 * 24 * 3_600,
            login_token_seconds: 3_600,
            max_key_seconds: 365 * 24 * 3_600,
            admin_max_age_seconds: 24 * 3_600,
            operator_tenants: Vec::new(),
        }
    }
}

/// Development only: a single API key from configuration that maps to one entity, for
/// scripts and tests that do not log in. Off unless `dev.api_key` is set; never in production.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevSettings {
    pub api_key: Option<SecretString>,
    pub tenant: String,
    pub account: String,
    /// Whether the development key is an admin.
    pub admin: bool,
}

impl Default for DevSettings {
    fn default() -> Self {
        Self {
            api_key: None,
            admin: false,
            tenant: "dev".into(),
            account: "dev@localhost".into(),
        }
    }
}

/// A tenant's name is also a word of routing keys: no `.`, `*` or `#`, and never `-`, the word
/// of the jobs no tenant owns (its watchers are operators only).
fn valid_tenant_name(name: &str) -> bool {
    surge_contract::job::check_tenant_name(name).is_ok()
}

impl GatewaySettings {
    /// Checks what serde cannot, naming the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.broker.validate()?;
        if !valid_tenant_name(&self.dev.tenant) {
            return Err(format!(
                "dev.tenant: {:?} is not a valid tenant name (letters, digits, '-' and '_', \
                 starting with a letter or digit)",
                self.dev.tenant
            ));
        }
        if self.functions.is_empty() {
            return Err(
                "functions is empty: list at least one function (SURGE_FUNCTIONS=echo,sleep)"
                    .into(),
            );
        }
        if self
            .functions
            .iter()
            .any(|f| f.as_str() == surge_contract::server_settings::FUNCTION)
        {
            return Err(format!(
                "functions lists {0:?}, which is reserved: the gateway always serves it, writes go through /settings (remove it from SURGE_FUNCTIONS)",
                surge_contract::server_settings::FUNCTION
            ));
        }
        if self.http.request_timeout_ms <= self.http.max_wait_ms
            || self.http.header_read_timeout_ms == 0
        {
            return Err(format!(
                "http.request_timeout_ms ({}) must be longer than http.max_wait_ms ({}), and \
                 http.header_read_timeout_ms at least 1",
                self.http.request_timeout_ms, self.http.max_wait_ms
            ));
        }
        self.ws.validate()?;
        if self.http.max_waiters == 0 {
            return Err("http.max_waiters must be at least 1".into());
        }
        if self.http.settings_refresh_ms == 0 {
            return Err("http.settings_refresh_ms must be at least 1".into());
        }
        if self.http.max_page_size < 1 {
            return Err("http.max_page_size must be at least 1".into());
        }
        if self.jobs.max_attempts == 0 {
            return Err("jobs.max_attempts must be at least 1".into());
        }
        // The gateway runs no handler; a job lives at least as long as the reconciler may
        // still publish it.
        self.jobs.validate(self.delivery.max_backoff())?;
        // A request publishes, and once more when the first is unconfirmed: the reconciler
        // must not take a job that its own request is still publishing.
        let own_publish = 2 * self.broker.publish_timeout_ms + self.broker.reconnect_max_ms;
        if self.delivery.lease_ms <= own_publish {
            return Err(format!(
                "delivery.lease_ms ({}) must be longer than a request's own publishes can take:                  2 × broker.publish_timeout_ms + broker.reconnect_max_ms = {own_publish} ms",
                self.delivery.lease_ms
            ));
        }
        if self.delivery.batch < 1 || self.delivery.max_backoff_ms < self.delivery.lease_ms {
            return Err(format!(
                "delivery.batch must be at least 1 and delivery.max_backoff_ms ({}) at least delivery.lease_ms ({})",
                self.delivery.max_backoff_ms, self.delivery.lease_ms
            ));
        }
        if self.scaler.addr.is_some() && self.scaler.management_url.is_none() {
            return Err("scaler.addr needs scaler.management_url (SURGE_SCALER__MANAGEMENT_URL=http://user:password@rabbitmq:15672): \
                        queued and in-flight counts come from RabbitMQ's management API"
                .into());
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.tenants {
            if !valid_tenant_name(&t.name) {
                return Err(format!(
                    "tenants: {:?} is not a valid tenant name (letters, digits, '-' and '_', \
                     starting with a letter or digit)",
                    t.name
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(format!("tenants: {:?} is configured twice", t.name));
            }
            if !matches!(t.redirect_url.scheme(), "http" | "https") {
                return Err(format!(
                    "tenants.{}.redirect_url must be this gateway's http(s) /callback URL",
                    t.name
                ));
            }
        }
        if self.identity.flow_ttl_s == 0 || self.identity.provider_timeout_ms == 0 {
            return Err(
                "identity.flow_ttl_s and identity.provider_timeout_ms must be positive".into(),
            );
        }
        if self.identity.default_key_seconds < 0 || self.identity.login_token_seconds <= 0 {
            return Err("identity.default_key_seconds must be >= 0 (0 = never expires) and identity.login_token_seconds > 0".into());
        }
        let id = &self.identity;
        if !(0..=crate::auth::key_policy::LONGEST_SECONDS).contains(&id.max_key_seconds) {
            return Err(format!(
                "identity.max_key_seconds must be 0 (no maximum) to {} (100 years)",
                crate::auth::key_policy::LONGEST_SECONDS
            ));
        }
        if let Err(e) =
            crate::auth::key_policy::lifetime(id.default_key_seconds, id.max_key_seconds)
        {
            return Err(format!("identity.default_key_seconds: {e}"));
        }
        crate::auth::client::TrustedProxies::parse(&self.http.trusted_proxies)?;
        if self.limits.store_url.is_some() && self.limits.store_timeout_ms == 0 {
            return Err("limits.store_timeout_ms must be positive".into());
        }
        if let Some(key) = &self.dev.api_key
            && key.expose_secret().trim().chars().count() < 16
        {
            return Err("dev.api_key must be at least 16 characters (or unset)".into());
        }
        if id.admin_max_age_seconds <= 0 {
            return Err("identity.admin_max_age_seconds must be positive".into());
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
    fn a_short_or_empty_development_key_and_endless_default_keys_under_a_maximum_are_refused() {
        let mut s = GatewaySettings::default();
        s.dev.api_key = Some(SecretString::from(""));
        assert!(s.validate().unwrap_err().contains("dev.api_key"));
        s.dev.api_key = Some(SecretString::from("0123456789abcdef"));
        assert!(s.validate().is_ok());
        s.identity.default_key_seconds = 0;
        assert!(s.validate().unwrap_err().contains("default_key_seconds"));
        s.identity.max_key_seconds = 0;
        assert!(s.validate().is_ok(), "no maximum: keys may never expire");
    }

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
    fn a_tenant_name_is_one_routing_word_and_never_the_ownerless_one() {
        for good in ["acme", "a", "acme-eu", "9lives", "a_b"] {
            assert!(valid_tenant_name(good), "{good}");
        }
        for bad in ["", "-", "-acme", "_x", "acme.eu", "a*", "a#", "a b"] {
            assert!(!valid_tenant_name(bad), "{bad}");
        }
    }

    #[test]
    // figment's Jail fixes the closure's error type.
    #[allow(clippy::result_large_err)]
    fn tenants_come_from_the_environment_as_a_list() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "SURGE_TENANTS",
                r#"[{name="a", issuer="http://127.0.0.1:4001", client_id="gw", client_secret="s", redirect_url="http://127.0.0.1:8080/callback", admin_group="admins"}]"#,
            );
            let s: GatewaySettings = figment::Figment::new()
                .merge(figment::providers::Env::prefixed("SURGE_").split("__"))
                .extract()?;
            assert_eq!(s.tenants.len(), 1);
            assert_eq!(s.tenants[0].scopes, ["openid", "email", "profile"]);
            assert_eq!(s.tenants[0].admin_group.as_deref(), Some("admins"));
            assert!(s.validate().is_ok());
            Ok(())
        });
    }

    #[test]
    fn a_typo_inside_a_section_is_refused() {
        let err =
            serde_json::from_value::<GatewaySettings>(serde_json::json!({"http": {"adr": "x"}}))
                .unwrap_err();
        assert!(err.to_string().contains("adr"), "{err}");
    }
}
