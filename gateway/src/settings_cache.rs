//! Every gateway's copy of the server settings. Reads (`GET /settings`, the rate limiter) are
//! served from it; it is reloaded whole (settings are few and bounded) when a `settings`
//! job's completion is routed here (whoever wrote), after this replica's own write, after a
//! broker reconnect (events may have been missed), and every `http.settings_refresh_ms`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::PgPool;
use surge_contract::server_settings::known::{self, RateLimit};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use surge_contract::job;
use surge_contract::server_settings;

use crate::auth::{EntityLimiter, Policy};
use crate::bus::{EventListener, RoutedEvent};
use crate::store::settings::{self, SettingRow};

#[derive(Debug)]
pub struct SettingsCache {
    pool: PgPool,
    current: RwLock<Arc<Vec<SettingRow>>>,
    /// Signalled by change events; permits coalesce, so a burst of changes is one reload.
    changed: Notify,
    /// Serialises reloads, so an older read cannot replace a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// Puts the `rate_limit` setting in force, under the same lock as the reload.
    limiter: Arc<EntityLimiter>,
}

impl SettingsCache {
    /// An empty cache; `reload` fills it.
    pub fn new(pool: PgPool, limiter: Arc<EntityLimiter>) -> Self {
        Self {
            pool,
            current: RwLock::new(Arc::default()),
            changed: Notify::new(),
            reloading: tokio::sync::Mutex::new(()),
            limiter,
        }
    }

    /// The settings as last loaded, sorted by name.
    pub fn all(&self) -> Arc<Vec<SettingRow>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(&self, name: &str) -> Option<SettingRow> {
        let all = self.all();
        all.binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| all[i].clone())
    }

    /// The `rate_limit` setting, if it exists and has the right shape.
    pub fn rate_limit(&self) -> Option<Policy> {
        let row = self.get(known::RATE_LIMIT)?;
        let limit: RateLimit = serde_json::from_value(row.value).ok()?;
        Some(Policy {
            per_second: limit.per_second,
            burst: limit.burst,
        })
    }

    /// Reads every setting again and puts what they say in force (the rate limit), in one
    /// critical section: two reloads cannot apply their policies out of order.
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows = settings::all(&self.pool).await?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rows);
        self.limiter.apply(self.rate_limit());
        Ok(())
    }

    /// Reloads on every change event and every `every`, until `stop`.
    pub async fn follow(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.changed.notified() => {}
                _ = tick.tick() => {}
            }
            match self.reload().await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "settings could not be reloaded; keeping the last copy")
                }
            }
        }
    }
}

/// Every settings write, whoever made it, is routed here and reloads the cache.
impl EventListener for SettingsCache {
    fn on_event(&self, event: &RoutedEvent<'_>) {
        // A refused write (`.failed`) changed nothing.
        if event.function == server_settings::FUNCTION && event.completed() {
            self.changed.notify_one();
        }
    }

    fn on_connected(&self) {
        // Changes made while the link was down were not routed here.
        self.changed.notify_one();
    }

    fn permanent_keys(&self) -> Vec<String> {
        vec![job::function_completions_key(&server_settings::function())]
    }
}
