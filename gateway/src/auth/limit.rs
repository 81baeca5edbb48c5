//! Per-entity rate limits: GCRA (governor), checked once a caller is authenticated. The
//! limiter remembers one small state per entity seen recently; a sweep forgets the idle
//! ones and a hard cap bounds the rest, so a flood of distinct callers cannot grow memory.

use std::num::NonZeroU32;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;

/// `limits.*`: requests per entity.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Sustained requests per second of one entity (0 turns limiting off).
    pub per_second: u32,
    /// Requests one entity may make at once above the sustained rate.
    pub burst: u32,
    /// Entities tracked at most; past it, the idle ones are forgotten first, then all.
    pub max_tracked: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 100,
            max_tracked: 100_000,
        }
    }
}

type Keyed =
    RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock, StateInformationMiddleware>;

/// Why a request was refused: when to retry, and the policy, for the response headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub retry_after: Duration,
    pub burst: u32,
    pub per_second: u32,
}

#[derive(Debug)]
pub struct EntityLimiter {
    /// Replaced by a new, empty limiter when full of recent callers.
    limiter: Option<RwLock<Keyed>>,
    quota: Option<Quota>,
    settings: LimitSettings,
    checks: AtomicU64,
}

const CAP_CHECK_EVERY: u64 = 64;

fn keyed(quota: Quota) -> Keyed {
    RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
}

impl EntityLimiter {
    pub fn new(settings: &LimitSettings) -> Self {
        let quota = NonZeroU32::new(settings.per_second).map(|rate| {
            let burst = NonZeroU32::new(settings.burst.max(1)).unwrap_or(NonZeroU32::MIN);
            Quota::per_second(rate).allow_burst(burst)
        });
        Self {
            limiter: quota.map(|q| RwLock::new(keyed(q))),
            quota,
            settings: settings.clone(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request of `entity`.
    pub fn check(&self, entity: Uuid) -> Result<(), Limited> {
        let (Some(lock), Some(quota)) = (&self.limiter, self.quota) else {
            return Ok(());
        };
        // Counting the tracked entities visits every shard of the map: do it every so often,
        // not on every request (the cap may be overshot by at most that many entities).
        let due = self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(CAP_CHECK_EVERY);
        if due && lock.read().unwrap_or_else(|p| p.into_inner()).len() >= self.settings.max_tracked
        {
            let mut limiter = lock.write().unwrap_or_else(|p| p.into_inner());
            limiter.retain_recent();
            if limiter.len() >= self.settings.max_tracked {
                // Still full of recent callers: forget them all rather than grow.
                *limiter = keyed(quota);
            }
        }
        let limiter = lock.read().unwrap_or_else(|p| p.into_inner());
        match limiter.check_key(&entity) {
            Ok(_) => Ok(()),
            Err(not_until) => Err(self.limited(&not_until)),
        }
    }

    /// Counts `n` more units of `entity` at once (the events of a batch beyond the request
    /// itself). A batch larger than the burst can never pass: that is a bad request.
    pub fn check_more(&self, entity: Uuid, n: usize) -> Result<(), ApiError> {
        let (Some(lock), Some(n)) = (
            &self.limiter,
            NonZeroU32::new(n.try_into().unwrap_or(u32::MAX)),
        ) else {
            return Ok(());
        };
        let limiter = lock.read().unwrap_or_else(|p| p.into_inner());
        match limiter.check_key_n(&entity, n) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(not_until)) => Err(ApiError::RateLimited(self.limited(&not_until))),
            Err(_) => Err(ApiError::BadRequest(format!(
                "a batch may hold at most {} events (limits.burst)",
                self.settings.burst
            ))),
        }
    }

    fn limited(&self, not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> Limited {
        Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            burst: self.settings.burst,
            per_second: self.settings.per_second,
        }
    }

    /// Forgets entities whose state is back to full (idle); called periodically.
    pub fn sweep(&self) {
        if let Some(lock) = &self.limiter {
            let limiter = lock.read().unwrap_or_else(|p| p.into_inner());
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

impl Limited {
    /// Seconds to wait, rounded up (`Retry-After` takes whole seconds).
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limiter = EntityLimiter::new(&LimitSettings {
            per_second: 1,
            burst: 3,
            max_tracked: 10,
        });
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let limited = limiter.check(a).unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1));
        assert_eq!(limited.retry_after_secs(), 1);
        assert!(limiter.check(b).is_ok(), "per entity");
        assert!(
            limiter.check_more(b, 2).is_ok(),
            "b had 3: one used, two more"
        );
        assert!(matches!(
            limiter.check_more(b, 1),
            Err(ApiError::RateLimited(_))
        ));
        assert!(
            matches!(limiter.check_more(b, 10), Err(ApiError::BadRequest(_))),
            "past the burst"
        );
    }

    #[test]
    fn zero_per_second_turns_limiting_off() {
        let limiter = EntityLimiter::new(&LimitSettings {
            per_second: 0,
            ..Default::default()
        });
        let a = Uuid::now_v7();
        assert!((0..1000).all(|_| limiter.check(a).is_ok()));
    }

    #[test]
    fn the_tracked_set_is_bounded() {
        let limiter = EntityLimiter::new(&LimitSettings {
            per_second: 1,
            burst: 1,
            max_tracked: 5,
        });
        for _ in 0..500 {
            let _ = limiter.check(Uuid::now_v7());
        }
        let tracked = limiter.limiter.as_ref().unwrap().read().unwrap().len();
        assert!(tracked <= 5 + CAP_CHECK_EVERY as usize, "{tracked}");
    }
}
