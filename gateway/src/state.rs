//! The state every handler shares: cheap handles only.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::PgPool;
use surge_contract::job::FunctionName;
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Caller};
use crate::bus::Bus;
use crate::config::HttpSettings;
use crate::error::ApiError;
use crate::identity::Tenants;
use crate::scaler::Activity;
use crate::settings_cache::SettingsCache;
use crate::store::dead_jobs::Viewer;

#[derive(Clone, Debug)]
pub struct AppState {
    /// The primary: every write, and every read of one's own writes.
    pub pool: PgPool,
    /// The reads that tolerate lag: the replica when one serves.
    pub reads: Arc<crate::reads::Reads>,
    pub bus: Bus,
    pub auth: Arc<Authenticator>,
    pub tenants: Arc<Tenants>,
    pub ws: Arc<crate::ws::WsSettings>,
    /// This replica's websocket connections and what each follows.
    pub hub: Arc<crate::ws::hub::Hub>,
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
    /// `delivery.*`: the reconciler's lease, pace and bounds.
    pub delivery: Arc<crate::config::DeliverySettings>,
    /// Where accepted jobs are recorded (in groups).
    pub recorder: crate::jobs::Recorder,
    /// Where confirmed publishes are recorded (in batches).
    pub confirmations: crate::jobs::Confirmations,
    /// How the reconciler is doing (for `/readyz`).
    pub reconciler: Arc<crate::jobs::ReconcilerStatus>,
}

impl AppState {
    /// Reloads the settings and puts what they say in force (the rate limit).
    pub async fn reload_settings(&self) -> Result<(), sqlx::Error> {
        self.settings.reload().await
    }

    /// A function clients may call, by name; `404` for any other name.
    pub fn function(&self, name: &str) -> Result<FunctionName, ApiError> {
        FunctionName::parse(name)
            .ok()
            .filter(|f| self.functions.contains(f))
            .ok_or_else(|| ApiError::UnknownFunction(name.to_owned()))
    }

    /// Whose jobs an admin sees across entities: its tenant's, and as a platform operator
    /// those no tenant owns.
    pub fn viewer<'a>(&self, caller: &'a Caller) -> Viewer<'a> {
        Viewer {
            tenant: &caller.tenant,
            operator: self.tenants.is_operator_tenant(&caller.tenant),
        }
    }
}
