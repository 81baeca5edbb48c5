//! The state every handler shares: cheap handles only.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::PgPool;
use surge_contract::job::FunctionName;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::bus::Bus;
use crate::config::HttpSettings;
use crate::identity::Tenants;
use crate::scaler::Activity;
use crate::settings_cache::SettingsCache;

#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: PgPool,
    pub bus: Bus,
    pub auth: Arc<Authenticator>,
    pub tenants: Arc<Tenants>,
    pub ws: Arc<crate::ws::WsSettings>,
    /// Websocket connections, awaited at shutdown (axum's graceful shutdown does not).
    pub ws_tasks: tokio_util::task::TaskTracker,
    /// The functions clients may call (never the reserved `settings`).
    pub functions: Arc<HashSet<FunctionName>>,
    /// Server settings as last loaded.
    pub settings: Arc<SettingsCache>,
    pub metrics: Arc<crate::metrics::GatewayMetrics>,
    /// What `/metrics` renders.
    pub registry: Arc<prometheus_client::registry::Registry>,
    pub http: Arc<HttpSettings>,
    /// Which functions have work; the jobs route marks each publish for the push scaler.
    pub activity: Arc<Activity>,
    /// Cancelled when the gateway begins to shut down: waiting callers get their 202.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Reloads the settings and puts what they say in force (the rate limit).
    pub async fn reload_settings(&self) -> Result<(), sqlx::Error> {
        self.settings.reload().await
    }
}
