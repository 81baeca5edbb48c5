//! The per-entity rate limit across every gateway replica: the same GCRA as the in-memory
//! limiter, its state (one theoretical arrival time per entity) in Redis, decided by one
//! script call per request, on Redis's own clock, so replicas need not agree on time. A store
//! that does not answer within `limits.store_timeout_ms` lets the request through
//! (`limits.store_fail_open`, the default) and counts it, or refuses it with 503.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use super::rate_limit::{Limited, Policy};

/// GCRA in one step. KEYS[1]: the entity's arrival time (ms); ARGV: emission interval (ms per
/// request), burst, units. Returns 0 when allowed, else the ms to wait.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = now_parts[1] * 1000 + math.floor(now_parts[2] / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local units = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * units
local allow_at = new_tat - interval * burst
if allow_at > now then
  return math.ceil(allow_at - now)
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return 0
";

/// Why the store gave no decision.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the rate-limit store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the rate-limit store failed: {0}")]
    Redis(#[from] redis::RedisError),
}

pub struct SharedLimiter {
    connection: ConnectionManager,
    script: redis::Script,
    /// Keys carry the instance's broker prefix: instances sharing a Redis never mix.
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SharedLimiter {
    /// Connects lazily (a store that is down at start is a store that is down, not a failed
    /// start), reconnecting on demand.
    pub fn new(url: &SecretString, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            script: redis::Script::new(GCRA),
            prefix: format!("{prefix}surge:rate:"),
            timeout,
        })
    }

    /// Counts `units` requests of `entity` under `policy` (which must be on).
    pub async fn check(
        &self,
        entity: Uuid,
        units: u32,
        policy: Policy,
    ) -> Result<Result<(), Limited>, StoreError> {
        let interval_ms = (1_000.0 / f64::from(policy.per_second.max(1))).max(0.001);
        let mut connection = self.connection.clone();
        let call = async {
            self.script
                .key(format!("{}{entity}", self.prefix))
                .arg(interval_ms)
                .arg(policy.burst.max(1))
                .arg(units)
                .invoke_async::<u64>(&mut connection)
                .await
        };
        let wait_ms = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))??;
        Ok(match wait_ms {
            0 => Ok(()),
            ms => Err(Limited {
                retry_after: Duration::from_millis(ms),
                burst: policy.burst,
                per_second: policy.per_second,
            }),
        })
    }
}
